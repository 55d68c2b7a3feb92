"""The PostgreSQL repositories: the portable SQL of :mod:`certstore.sqlite.repositories`
over a psycopg connection, with the statements where the dialects differ overridden.

Differences: ``INSERT OR IGNORE`` / ``OR REPLACE`` become ``ON CONFLICT``; ``IS ?``
becomes ``IS NOT DISTINCT FROM``; ``json_extract`` is read in Python; ids restored with
a backup move the identity sequences past them; and the device tables are keyed by the
gateway's name, because one database serves a fleet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar

import psycopg

from certstore.model import Certificate, Pin, RejectedChain, TrustKind, TrustSource
from certstore.sqlite.codecs import PIN_COLUMNS, RowCodec, ts
from certstore.sqlite.repositories import (
    SqlConnection,
    SqlCursor,
    SqliteAudit,
    SqliteBackup,
    SqliteDevice,
    SqliteMeta,
    SqlitePins,
    SqliteRejected,
    SqliteRevocation,
    SqliteSettings,
    SqliteTrust,
)
from certstore.store import PinRequest


@lru_cache(maxsize=512)
def _marks(sql: str) -> str:
    # The shared statements use ``?`` marks and no literal ``?`` or ``%`` (not even in
    # a regular expression).
    return sql.replace("?", "%s")


class PgConnection:
    """A psycopg connection seen through :class:`SqlConnection` (``?`` marks)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Any = None, /) -> SqlCursor:
        return self.raw.execute(_marks(sql), parameters or None)

    def executemany(self, sql: str, parameters: Any, /) -> SqlCursor:
        cursor = self.raw.cursor()
        rows = list(parameters)
        if rows:
            cursor.executemany(_marks(sql), rows)
        return cursor


def _advance_sequence(conn: SqlConnection, table: str) -> None:
    """Move ``table``'s id sequence past the ids written explicitly (never backwards:
    ids are never reused)."""
    conn.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
        f"GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), "
        f"(SELECT last_value FROM {table}_id_seq)), true)"
    )


class PgTrust(SqliteTrust):
    def insert(
        self, cert: Certificate, *, kind: TrustKind, source: TrustSource, at: datetime
    ) -> bool:
        cursor = self.conn.execute(
            "INSERT INTO trust (fingerprint, der, spki_fingerprint, kind, source, added_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO NOTHING",
            (cert.fingerprint, cert.der, cert.spki_fingerprint, kind.value, source.value, ts(at)),
        )
        return bool(cursor.rowcount)


class PgPins(SqlitePins):
    def identical(self, request: PinRequest) -> Pin | None:
        row = self.conn.execute(
            f"SELECT {PIN_COLUMNS} FROM pins WHERE decision = ? AND match = ? "  # noqa: S608
            "AND fingerprint = ? AND scope IS NOT DISTINCT FROM ? "
            "AND expires_at IS NOT DISTINCT FROM ? ORDER BY id LIMIT 1",
            (
                request.decision.value,
                request.match.value,
                request.fingerprint,
                request.scope,
                ts(request.expires_at) if request.expires_at else None,
            ),
        ).fetchone()
        return None if row is None else self.codec.pin(row)

    def insert_all(self, pins: Sequence[Pin], certificates: Mapping[int, Certificate]) -> None:
        super().insert_all(pins, certificates)
        _advance_sequence(self.conn, "pins")


class PgRejected(SqliteRejected):
    def insert_all(self, rejected: Sequence[RejectedChain]) -> None:
        super().insert_all(rejected)
        _advance_sequence(self.conn, "rejected")


class PgDevice(SqliteDevice):
    """The identity and signing request of one gateway (``gateway``)."""

    KEY: ClassVar[str] = "gateway"

    def __init__(self, conn: SqlConnection, codec: RowCodec, gateway: str) -> None:
        super().__init__(conn, codec)
        self.key = gateway


class PgAudit(SqliteAudit):
    PIN_OF_DETAILS: ClassVar[str] = (
        "CASE WHEN (details::jsonb -> 'pin')::text ~ '^-{0,1}[0-9]{1,18}$' "
        "THEN (details::jsonb ->> 'pin')::bigint END"
    )


class PgBackup(SqliteBackup):
    tables: ClassVar[tuple[type[SqliteTrust], type[SqlitePins], type[SqliteRejected]]] = (
        PgTrust,
        PgPins,
        PgRejected,
    )


class PostgresRepositories:
    """The repositories of one transaction on ``conn`` for the gateway ``gateway``."""

    def __init__(self, conn: psycopg.Connection[Any], codec: RowCodec, gateway: str) -> None:
        sql = PgConnection(conn)
        self.conn = sql
        self.meta = SqliteMeta(sql, codec)
        self.settings = SqliteSettings(sql, codec)
        self.trust = PgTrust(sql, codec)
        self.pins = PgPins(sql, codec)
        self.rejected = PgRejected(sql, codec)
        self.device = PgDevice(sql, codec, gateway)
        self.audit = PgAudit(sql, codec)
        self.revocation = SqliteRevocation(sql, codec)
        self.backup = PgBackup(sql, codec)
