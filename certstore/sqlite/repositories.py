"""The SQL of each part of the trust state: one repository per table, all on the
connection of one transaction (see :mod:`certstore.repositories` for the contract).

The statements are written in the SQL both engines understand (``RETURNING`` rather
than ``lastrowid``, ``ON CONFLICT``): the PostgreSQL backend reuses these classes over
a connection that only changes the parameter marks, and overrides the few statements
where the dialects differ (:mod:`certstore.postgres.repositories`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Protocol

from certstore.errors import StorageError, ValidationError
from certstore.model import (
    Actor,
    AuditEvent,
    Certificate,
    Pin,
    PinMatch,
    RejectedChain,
    Settings,
    TrustEntry,
    TrustKind,
    TrustSource,
)
from certstore.recording import Recorded, chain_key
from certstore.repositories import RevocationRow
from certstore.revocation import RevocationSource, SourceKind
from certstore.sqlite.codecs import (
    PIN_COLUMNS,
    REJECTED_COLUMNS,
    TRUST_COLUMNS,
    RowCodec,
    dt,
    pack_chain,
    reasons_text,
    seen_by_of,
    seen_by_text,
    ts,
    unpack_chain,
)
from certstore.store import DeviceIdentity, PendingCsr, PinRequest
from certstore.validation import SETTING_NAMES, apply_settings_changes

_INSERT_PIN = (
    "INSERT INTO pins (decision, match, fingerprint, scope, expires_at, note, created_at, "
    "created_by, certificate_der) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "RETURNING id, decision, match, fingerprint, scope, expires_at, note, created_at, created_by"
)
_INSERT_REJECTED = (
    "INSERT INTO rejected (chain_key, chain, leaf_fingerprint, leaf_spki_fingerprint, "
    "reasons, peer_host, peer_port, peer_transport, peer_sni, first_seen, last_seen, "
    "count, overridden, previous_der, address, seen_by) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_TRUST = (
    "INSERT INTO trust (fingerprint, der, spki_fingerprint, kind, source, added_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
# Fingerprints asked for in one IN (...) list: below SQLite's limit on parameters.
_CHUNK = 500


class SqlCursor(Protocol):
    """What the repositories read from a statement's cursor (sqlite3's and psycopg's)."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class SqlConnection(Protocol):
    """The connection of one transaction, with ``?`` parameter marks."""

    def execute(self, sql: str, parameters: Any = ..., /) -> SqlCursor: ...
    def executemany(self, sql: str, parameters: Any, /) -> SqlCursor: ...


class _Table:
    def __init__(self, conn: SqlConnection, codec: RowCodec) -> None:
        self.conn = conn
        self.codec = codec


class SqliteMeta(_Table):
    def generation(self) -> int:
        row = self.conn.execute("SELECT generation FROM meta WHERE id = 1").fetchone()
        if row is None:
            raise StorageError(f"{self.codec.where} has lost its meta row.")
        return int(row[0])

    def bump(self) -> None:
        self.conn.execute("UPDATE meta SET generation = generation + 1 WHERE id = 1")


class SqliteSettings(_Table):
    def get(self) -> Settings:
        values: dict[str, object] = {}
        for key, value in self.conn.execute("SELECT key, value FROM settings"):
            if key in SETTING_NAMES:
                values[key] = json.loads(value)
        try:
            settings, _ = apply_settings_changes(Settings(), values)
        except ValidationError as exc:
            raise StorageError(f"The stored settings are damaged: {exc}") from exc
        return settings

    def put(self, settings: Settings, names: Iterable[str]) -> None:
        self.conn.executemany(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(name, json.dumps(getattr(settings, name))) for name in names],
        )


class SqliteTrust(_Table):
    def marks(self) -> tuple[int, int]:
        count, max_id = self.conn.execute(
            "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM trust"
        ).fetchone()
        return int(count), int(max_id)

    def entries(self, known: Callable[[str], Certificate | None]) -> list[TrustEntry]:
        rows = self.conn.execute(
            "SELECT fingerprint, kind, source, added_at FROM trust ORDER BY id"
        ).fetchall()
        certs: dict[str, Certificate] = {}
        missing: list[str] = []
        for fp, *_ in rows:
            cert = known(fp)
            if cert is None:
                missing.append(fp)
            else:
                certs[fp] = cert
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for fp, der in self.conn.execute(
                f"SELECT fingerprint, der FROM trust WHERE fingerprint IN ({marks})",  # noqa: S608
                chunk,
            ):
                certs[fp] = self.codec.certs.stored(der, fp)
        return [
            TrustEntry(
                certificate=certs[fp],
                kind=TrustKind(kind),
                source=TrustSource(source),
                added_at=dt(added_at),
            )
            for fp, kind, source, added_at in rows
        ]

    def entries_after(self, row_id: int) -> list[TrustEntry]:
        return [
            self.codec.trust_entry(row)
            for row in self.conn.execute(
                f"SELECT {TRUST_COLUMNS} FROM trust WHERE id > ? ORDER BY id",  # noqa: S608
                (row_id,),
            )
        ]

    def fingerprints(self) -> set[str]:
        return {fp for (fp,) in self.conn.execute("SELECT fingerprint FROM trust")}

    def get(self, fingerprint: str) -> TrustEntry | None:
        row = self.conn.execute(
            f"SELECT {TRUST_COLUMNS} FROM trust WHERE fingerprint = ?",  # noqa: S608
            (fingerprint,),
        ).fetchone()
        return None if row is None else self.codec.trust_entry(row)

    def insert(
        self, cert: Certificate, *, kind: TrustKind, source: TrustSource, at: datetime
    ) -> bool:
        cursor = self.conn.execute(
            "INSERT OR IGNORE INTO trust "
            "(fingerprint, der, spki_fingerprint, kind, source, added_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (cert.fingerprint, cert.der, cert.spki_fingerprint, kind.value, source.value, ts(at)),
        )
        return bool(cursor.rowcount)

    def delete(self, fingerprint: str) -> TrustEntry | None:
        row = self.conn.execute(
            f"DELETE FROM trust WHERE fingerprint = ? RETURNING {TRUST_COLUMNS}",  # noqa: S608
            (fingerprint,),
        ).fetchone()
        return None if row is None else self.codec.trust_entry(row)

    def clear(self) -> int:
        return int(self.conn.execute("DELETE FROM trust").rowcount)

    def der_of(self, match: PinMatch, fingerprint: str) -> bytes | None:
        if match is PinMatch.CERTIFICATE:
            query = "SELECT der FROM trust WHERE fingerprint = ?"
        else:
            query = "SELECT der FROM trust WHERE spki_fingerprint = ? ORDER BY id LIMIT 1"
        row = self.conn.execute(query, (fingerprint,)).fetchone()
        return None if row is None else bytes(row[0])

    def insert_all(self, entries: Sequence[TrustEntry]) -> None:
        self.conn.executemany(
            _INSERT_TRUST,
            [
                (
                    e.certificate.fingerprint,
                    e.certificate.der,
                    e.certificate.spki_fingerprint,
                    e.kind.value,
                    e.source.value,
                    ts(e.added_at),
                )
                for e in entries
            ],
        )


class SqlitePins(_Table):
    def all(self) -> list[Pin]:
        return [
            self.codec.pin(row)
            for row in self.conn.execute(f"SELECT {PIN_COLUMNS} FROM pins ORDER BY id")  # noqa: S608
        ]

    def get(self, pin_id: int) -> Pin | None:
        row = self.conn.execute(
            f"SELECT {PIN_COLUMNS} FROM pins WHERE id = ?",  # noqa: S608
            (pin_id,),
        ).fetchone()
        return None if row is None else self.codec.pin(row)

    def identical(self, request: PinRequest) -> Pin | None:
        row = self.conn.execute(
            f"SELECT {PIN_COLUMNS} FROM pins WHERE decision = ? AND match = ? "  # noqa: S608
            "AND fingerprint = ? AND scope IS ? AND expires_at IS ? ORDER BY id LIMIT 1",
            (
                request.decision.value,
                request.match.value,
                request.fingerprint,
                request.scope,
                ts(request.expires_at) if request.expires_at else None,
            ),
        ).fetchone()
        return None if row is None else self.codec.pin(row)

    def insert(
        self, request: PinRequest, *, created_by: str, at: datetime, der: bytes | None
    ) -> Pin:
        row = self.conn.execute(
            _INSERT_PIN,
            (
                request.decision.value,
                request.match.value,
                request.fingerprint,
                request.scope,
                ts(request.expires_at) if request.expires_at else None,
                request.note,
                ts(at),
                created_by,
                der,
            ),
        ).fetchone()
        return self.codec.pin(row)

    def delete(self, pin_id: int) -> Pin | None:
        row = self.conn.execute(
            f"DELETE FROM pins WHERE id = ? RETURNING {PIN_COLUMNS}",  # noqa: S608
            (pin_id,),
        ).fetchone()
        return None if row is None else self.codec.pin(row)

    def oldest(self, *, scope: str | None, created_by: str) -> Pin | None:
        row = self.conn.execute(
            f"SELECT {PIN_COLUMNS} FROM pins WHERE scope = ? AND created_by = ? "  # noqa: S608
            "ORDER BY id LIMIT 1",
            (scope, created_by),
        ).fetchone()
        return None if row is None else self.codec.pin(row)

    def newest_certificate(self, *, scope: str, created_by: str) -> bytes | None:
        row = self.conn.execute(
            "SELECT certificate_der FROM pins WHERE scope = ? AND created_by = ? "
            "AND certificate_der IS NOT NULL ORDER BY id DESC LIMIT 1",
            (scope, created_by),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def certificate_der(self, pin_id: int) -> bytes | None:
        row = self.conn.execute(
            "SELECT certificate_der FROM pins WHERE id = ?", (pin_id,)
        ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def certificates(self) -> dict[int, bytes]:
        return {
            int(pin_id): bytes(der)
            for pin_id, der in self.conn.execute(
                "SELECT id, certificate_der FROM pins WHERE certificate_der IS NOT NULL"
            )
        }

    def insert_all(self, pins: Sequence[Pin], certificates: Mapping[int, Certificate]) -> None:
        self.conn.executemany(
            "INSERT INTO pins (id, decision, match, fingerprint, scope, expires_at, note, "
            "created_at, created_by, certificate_der) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    p.id,
                    p.decision.value,
                    p.match.value,
                    p.fingerprint,
                    p.scope,
                    ts(p.expires_at) if p.expires_at else None,
                    p.note,
                    ts(p.created_at),
                    p.created_by,
                    certificates[p.id].der if p.id in certificates else None,
                )
                for p in pins
            ],
        )


class SqliteRejected(_Table):
    def find(self, chain_key: str) -> Recorded | None:
        row = self.conn.execute(
            "SELECT id, first_seen, last_seen, count, previous_der, address, seen_by "
            "FROM rejected WHERE chain_key = ?",
            (chain_key,),
        ).fetchone()
        if row is None:
            return None
        entry_id, first_seen, last_seen, count, previous_der, address, seen_by = row
        return Recorded(
            id=int(entry_id),
            first_seen=dt(first_seen),
            last_seen=dt(last_seen),
            count=int(count),
            previous=self.codec.certificate(previous_der),
            address=None if address is None else str(address),
            seen_by=seen_by_of(seen_by),
        )

    @staticmethod
    def _values(chain_key: str, entry: RejectedChain) -> tuple[object, ...]:
        return (
            chain_key,
            pack_chain(c.der for c in entry.chain),
            entry.leaf.fingerprint,
            entry.leaf.spki_fingerprint,
            reasons_text(entry.reasons),
            entry.peer.host,
            entry.peer.port,
            entry.peer.transport.value,
            entry.peer.sni,
            ts(entry.first_seen),
            ts(entry.last_seen),
            entry.count,
            int(entry.overridden),
            entry.previous.der if entry.previous else None,
            entry.address,
            seen_by_text(entry.seen_by),
        )

    def insert(self, chain_key: str, entry: RejectedChain) -> int:
        row = self.conn.execute(
            _INSERT_REJECTED + " RETURNING id", self._values(chain_key, entry)
        ).fetchone()
        return int(row[0])

    def update(self, entry: RejectedChain) -> None:
        self.conn.execute(
            "UPDATE rejected SET count = ?, last_seen = ?, reasons = ?, overridden = ?, "
            "peer_host = ?, peer_port = ?, peer_transport = ?, peer_sni = ?, "
            "previous_der = ?, address = ?, seen_by = ? WHERE id = ?",
            (
                entry.count,
                ts(entry.last_seen),
                reasons_text(entry.reasons),
                int(entry.overridden),
                entry.peer.host,
                entry.peer.port,
                entry.peer.transport.value,
                entry.peer.sni,
                entry.previous.der if entry.previous else None,
                entry.address,
                seen_by_text(entry.seen_by),
                entry.id,
            ),
        )

    def count(self) -> int:
        (count,) = self.conn.execute("SELECT COUNT(*) FROM rejected").fetchone()
        return int(count)

    def evict_oldest(self, count: int) -> None:
        self.conn.execute(
            "DELETE FROM rejected WHERE id IN "
            "(SELECT id FROM rejected ORDER BY last_seen, id LIMIT ?)",
            (count,),
        )

    def newest_first(self) -> list[RejectedChain]:
        return [
            self.codec.rejected(row)
            for row in self.conn.execute(
                f"SELECT {REJECTED_COLUMNS} FROM rejected "  # noqa: S608
                "ORDER BY last_seen DESC, id DESC"
            ).fetchall()
        ]

    def all_by_id(self) -> list[RejectedChain]:
        return [
            self.codec.rejected(row)
            for row in self.conn.execute(
                f"SELECT {REJECTED_COLUMNS} FROM rejected ORDER BY id"  # noqa: S608
            ).fetchall()
        ]

    def get(self, rejected_id: int) -> RejectedChain | None:
        row = self.conn.execute(
            f"SELECT {REJECTED_COLUMNS} FROM rejected WHERE id = ?",  # noqa: S608
            (rejected_id,),
        ).fetchone()
        return None if row is None else self.codec.rejected(row)

    def delete(self, rejected_id: int) -> str | None:
        row = self.conn.execute(
            "DELETE FROM rejected WHERE id = ? RETURNING leaf_fingerprint", (rejected_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def clear(self) -> int:
        return int(self.conn.execute("DELETE FROM rejected").rowcount)

    def leaf_der(self, match: PinMatch, fingerprint: str) -> bytes | None:
        column = "leaf_fingerprint" if match is PinMatch.CERTIFICATE else "leaf_spki_fingerprint"
        row = self.conn.execute(
            f"SELECT chain FROM rejected WHERE {column} = ? ORDER BY id LIMIT 1",  # noqa: S608
            (fingerprint,),
        ).fetchone()
        if row is not None:
            with contextlib.suppress(ValueError):
                return unpack_chain(row[0])[0]
        return None

    def insert_all(self, rejected: Sequence[RejectedChain]) -> None:
        self.conn.executemany(
            "INSERT INTO rejected (id, chain_key, chain, leaf_fingerprint, "
            "leaf_spki_fingerprint, reasons, peer_host, peer_port, peer_transport, "
            "peer_sni, first_seen, last_seen, count, overridden, previous_der, address, "
            "seen_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (r.id, *self._values(chain_key([c.fingerprint for c in r.chain]), r))
                for r in rejected
            ],
        )


class SqliteDevice(_Table):
    """The device identity and signing request: one row each, found by ``KEY`` =
    ``key`` (SQLite: the single row ``id = 1``; PostgreSQL: this gateway's name)."""

    KEY: ClassVar[str] = "id"
    key: object = 1

    def identity(self) -> DeviceIdentity | None:
        row = self.conn.execute(
            "SELECT kind, chain, private_key_pem, created_at FROM device_identity "  # noqa: S608
            f"WHERE {self.KEY} = ?",
            (self.key,),
        ).fetchone()
        if row is None:
            return None
        kind, chain, key_pem, created_at = row
        return DeviceIdentity(
            kind=kind,
            chain=self.codec.chain(chain),
            private_key_pem=bytes(key_pem),
            created_at=dt(created_at),
        )

    def _upsert(self, table: str, values: dict[str, object]) -> bool:
        """Insert or replace this key's row of ``table``; True when it replaced one."""
        replaced = self.conn.execute(
            f"SELECT 1 FROM {table} WHERE {self.KEY} = ?",  # noqa: S608
            (self.key,),
        ).fetchone()
        columns = [self.KEY, *values]
        self.conn.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT ({self.KEY}) DO UPDATE SET "
            + ", ".join(f"{name} = excluded.{name}" for name in values),
            (self.key, *values.values()),
        )
        return replaced is not None

    def put_identity(self, identity: DeviceIdentity) -> bool:
        return self._upsert(
            "device_identity",
            {
                "kind": identity.kind,
                "chain": pack_chain(c.der for c in identity.chain),
                "private_key_pem": identity.private_key_pem,
                "created_at": ts(identity.created_at),
            },
        )

    def csr(self) -> PendingCsr | None:
        row = self.conn.execute(
            "SELECT csr_pem, private_key_pem, key_spec, created_at FROM pending_csr "  # noqa: S608
            f"WHERE {self.KEY} = ?",
            (self.key,),
        ).fetchone()
        if row is None:
            return None
        csr_pem, key_pem, key_spec, created_at = row
        return PendingCsr(
            csr_pem=bytes(csr_pem),
            private_key_pem=bytes(key_pem),
            key_spec=key_spec,
            created_at=dt(created_at),
        )

    def put_csr(self, csr: PendingCsr) -> bool:
        return self._upsert(
            "pending_csr",
            {
                "csr_pem": csr.csr_pem,
                "private_key_pem": csr.private_key_pem,
                "key_spec": csr.key_spec,
                "created_at": ts(csr.created_at),
            },
        )

    def delete_csr(self) -> bool:
        return bool(
            self.conn.execute(
                f"DELETE FROM pending_csr WHERE {self.KEY} = ?",  # noqa: S608
                (self.key,),
            ).rowcount
        )


class SqliteAudit(_Table):
    # The integer "pin" of an event's JSON details (NULL when absent or not an integer).
    PIN_OF_DETAILS: ClassVar[str] = "json_extract(details, '$.pin')"

    def append(
        self,
        *,
        at: datetime,
        actor: Actor,
        action: str,
        target: str,
        details: str,
        gateway: str | None = None,
    ) -> int:
        row = self.conn.execute(
            "INSERT INTO audit (at, actor, interface, action, target, details, gateway) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (ts(at), actor.name, actor.interface, action, target, details, gateway),
        ).fetchone()
        return int(row[0])

    def drop_through(self, event_id: int) -> None:
        self.conn.execute("DELETE FROM audit WHERE id <= ?", (event_id,))

    def page(self, *, before_id: int, limit: int) -> list[AuditEvent]:
        return [
            AuditEvent(
                id=r[0],
                at=dt(r[1]),
                actor=r[2],
                interface=r[3],
                action=r[4],
                target=r[5],
                details=r[6],
                gateway=r[7],
            )
            for r in self.conn.execute(
                "SELECT id, at, actor, interface, action, target, details, gateway FROM audit "
                "WHERE id < ? ORDER BY id DESC LIMIT ?",
                (before_id, limit),
            ).fetchall()
        ]

    def pin_interfaces(self) -> dict[int, str]:
        # The pin keeps only the actor's name; the audit log says through which
        # interface each pin was made.
        interfaces: dict[int, str] = {}
        for target, interface in self.conn.execute(
            "SELECT target, interface FROM audit WHERE action = 'pin.add' ORDER BY id"
        ):
            if str(target).isdigit():
                interfaces[int(target)] = str(interface)
        for pin_id, interface in self.conn.execute(
            f"SELECT {self.PIN_OF_DETAILS}, interface FROM audit "  # noqa: S608
            "WHERE action IN ('rejected.accept', 'rejected.reject') ORDER BY id"
        ):
            if isinstance(pin_id, int):
                interfaces[pin_id] = str(interface)
        return interfaces


_REVOCATION_COLUMNS = "key, kind, source, url, fingerprint, fetched_at"


class SqliteRevocation(_Table):
    @staticmethod
    def _row(row: Sequence[object]) -> RevocationRow:
        key, kind, source, url, fingerprint, fetched_at = row
        return RevocationRow(
            key=str(key),
            kind=SourceKind(str(kind)),
            source=RevocationSource(str(source)),
            url=None if url is None else str(url),
            fingerprint=str(fingerprint),
            fetched_at=dt(str(fetched_at)),
        )

    def rows(self) -> list[RevocationRow]:
        return [
            self._row(row)
            for row in self.conn.execute(f"SELECT {_REVOCATION_COLUMNS} FROM revocation")  # noqa: S608
        ]

    def der(self, key: str) -> bytes | None:
        row = self.conn.execute("SELECT der FROM revocation WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def get(self, key: str) -> RevocationRow | None:
        row = self.conn.execute(
            f"SELECT {_REVOCATION_COLUMNS} FROM revocation WHERE key = ?",  # noqa: S608
            (key,),
        ).fetchone()
        return None if row is None else self._row(row)

    def uploaded(self, fingerprint: str) -> RevocationRow | None:
        row = self.conn.execute(
            f"SELECT {_REVOCATION_COLUMNS} FROM revocation "  # noqa: S608
            "WHERE source = ? AND fingerprint = ?",
            (RevocationSource.UPLOADED.value, fingerprint),
        ).fetchone()
        return None if row is None else self._row(row)

    def put(self, row: RevocationRow, der: bytes) -> None:
        self.conn.execute(
            "INSERT INTO revocation (key, kind, source, url, der, fingerprint, fetched_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            "kind = excluded.kind, source = excluded.source, url = excluded.url, "
            "der = excluded.der, fingerprint = excluded.fingerprint, "
            "fetched_at = excluded.fetched_at",
            (
                row.key,
                row.kind.value,
                row.source.value,
                row.url,
                der,
                row.fingerprint,
                ts(row.fetched_at),
            ),
        )

    def touch(self, key: str, at: datetime) -> None:
        self.conn.execute(
            "UPDATE revocation SET fetched_at = ? WHERE key = ?",
            (ts(at), key),
        )

    def delete(self, keys: Sequence[str]) -> int:
        removed = 0
        for key in keys:
            removed += self.conn.execute("DELETE FROM revocation WHERE key = ?", (key,)).rowcount
        return removed


class SqliteBackup(_Table):
    tables: ClassVar[tuple[type[SqliteTrust], type[SqlitePins], type[SqliteRejected]]] = (
        SqliteTrust,
        SqlitePins,
        SqliteRejected,
    )

    def replace(
        self,
        *,
        trust: Sequence[TrustEntry],
        pins: Sequence[Pin],
        pin_certificates: Mapping[int, Certificate],
        rejected: Sequence[RejectedChain],
    ) -> None:
        self.conn.execute("DELETE FROM trust")
        self.conn.execute("DELETE FROM pins")
        self.conn.execute("DELETE FROM rejected")
        trust_table, pin_table, rejected_table = self.tables
        trust_table(self.conn, self.codec).insert_all(trust)
        pin_table(self.conn, self.codec).insert_all(pins, pin_certificates)
        rejected_table(self.conn, self.codec).insert_all(rejected)


class SqliteRepositories:
    """The repositories of one transaction on ``conn``."""

    def __init__(self, conn: SqlConnection, codec: RowCodec) -> None:
        self.conn = conn
        self.meta = SqliteMeta(conn, codec)
        self.settings = SqliteSettings(conn, codec)
        self.trust = SqliteTrust(conn, codec)
        self.pins = SqlitePins(conn, codec)
        self.rejected = SqliteRejected(conn, codec)
        self.device = SqliteDevice(conn, codec)
        self.audit = SqliteAudit(conn, codec)
        self.revocation = SqliteRevocation(conn, codec)
        self.backup = SqliteBackup(conn, codec)
