"""The embedded store: the whole trust state in one SQLite file in the data directory.

Durability and concurrency
    The file is in WAL mode with ``synchronous=FULL``: a commit is on disk when the call
    returns (``NORMAL`` may lose the last commits on power loss). Every mutation runs
    in one ``BEGIN IMMEDIATE`` transaction that also writes its audit event and, when
    the change affects the handshake view, bumps ``meta.generation``; a crash or
    ``kill -9`` at any moment leaves the previous or the next state. ``BEGIN IMMEDIATE``
    takes the write lock up front, so two writers (the gateway and the CLI, two
    processes) queue on SQLite's busy handler instead of failing half-way; a writer
    that still finds the lock held after ``busy_timeout`` retries within a bound,
    then raises :class:`StorageError`.

Threads
    One connection per thread (``threading.local``). The gateway calls the store from
    the event loop (``snapshot()``) and from ``asyncio.to_thread`` workers (writes).
    With a shared connection behind a lock, a handshake on the event loop would wait
    for a worker that is itself waiting for another process's write lock; with a
    connection per thread, WAL readers never wait for writers, and SQLite does the
    serialising. Connections of threads that have ended are closed when the next
    thread opens one; :meth:`SqliteStore.close` closes them all. The in-memory caches
    (the snapshot, parsed certificates) are shared and guarded by locks held only for
    dictionary operations, never across I/O.

The handshake view
    :meth:`SqliteStore.snapshot` reads ``meta.generation`` (one single-row query) and
    returns the cached :class:`TrustSnapshot` when it is unchanged. Otherwise it
    rebuilds inside one read transaction, so the generation and the rows it caches
    match. Certificates are reused from the previous snapshot and from a bounded
    cache keyed by fingerprint; only new DER is fetched and parsed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import sqlite3
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from certstore import backup
from certstore.builtin import builtin_certificates
from certstore.errors import (
    CertStoreError,
    Conflict,
    InputError,
    NotFound,
    StorageError,
    ValidationError,
)
from certstore.model import (
    FIRST_USE_ACTOR,
    Actor,
    AddResult,
    AuditEvent,
    Certificate,
    CertStatus,
    Peer,
    Pin,
    PinDecision,
    PinMatch,
    Reason,
    RejectedChain,
    Rule,
    Settings,
    Transport,
    TrustEntry,
    TrustKind,
    TrustSource,
    Verdict,
)
from certstore.revocation import (
    EMPTY_FACTS,
    CachedSource,
    Crl,
    OcspResponse,
    RevocationFacts,
    RevocationSource,
    SourceKind,
    describe_source,
    read_source,
)
from certstore.snapshot import TrustSnapshot
from certstore.store import (
    DeviceIdentity,
    ExpiringItem,
    PendingCsr,
    PinOrigin,
    PinRequest,
    ProvisionOutcome,
    RestoreSummary,
)
from certstore.validation import (
    MAX_RECORDED_CHAIN_BYTES,
    MAX_RECORDED_CHAIN_CERTS,
    MAX_REJECTED_COUNT,
    SETTING_NAMES,
    apply_settings_changes,
    normalize_fingerprint,
    normalize_scope,
    validate_aware,
    validate_note,
)
from certstore.x509 import parse_der

T = TypeVar("T")

SCHEMA_VERSION = 3
# Cached revocation information (fetched CRLs and OCSP answers, uploaded CRLs): at most
# this many sources; the one fetched longest ago goes first (uploaded ones last).
MAX_REVOCATION_SOURCES = 256
DEFAULT_REJECTED_LIMIT = 1000
DEFAULT_AUDIT_LIMIT = 100_000
DEFAULT_BUSY_TIMEOUT = 5.0  # seconds SQLite's busy handler waits for a lock, per attempt
BUSY_ATTEMPTS = 3
WAL_SIZE_LIMIT = 8 * 1024 * 1024
MAX_PEER_TEXT = 255
MAX_AUDIT_DETAILS = 16 * 1024
# Parsed certificates kept beyond those of the current trust list (rejected chains,
# pins, the device chain).
CERT_CACHE_SIZE = 4096
DEVICE_KINDS = ("standard", "installed")
SYSTEM_ACTOR = Actor(name="sipsgate", interface="store")
FIRST_USE_AUDIT_ACTOR = Actor(name=FIRST_USE_ACTOR, interface="gateway")
# Who records a handshake when the caller does not say (the running gateway).
GATEWAY_AUDIT_ACTOR = Actor(name="gateway", interface="gateway")

_ACTION_RE = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)+$")

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_PERM = 3
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26

# Ordered migrations: entry n brings a store from user_version n to n + 1. Each runs
# in the open transaction (never executescript, which commits on its own).
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE meta (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            generation INTEGER NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE trust (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            fingerprint TEXT NOT NULL UNIQUE,
            der BLOB NOT NULL,
            spki_fingerprint TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('ca', 'server')),
            source TEXT NOT NULL,
            added_at TEXT NOT NULL
        )""",
        "CREATE INDEX trust_spki ON trust (spki_fingerprint)",
        """CREATE TABLE pins (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            decision TEXT NOT NULL CHECK (decision IN ('accept', 'reject')),
            match TEXT NOT NULL CHECK (match IN ('certificate', 'public-key')),
            fingerprint TEXT NOT NULL,
            scope TEXT,
            expires_at TEXT,
            note TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            certificate_der BLOB
        )""",
        "CREATE INDEX pins_fingerprint ON pins (fingerprint)",
        "CREATE INDEX pins_scope ON pins (scope, created_by)",
        """CREATE TABLE rejected (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            chain_key TEXT NOT NULL UNIQUE,
            chain BLOB NOT NULL,
            leaf_fingerprint TEXT NOT NULL,
            leaf_spki_fingerprint TEXT NOT NULL,
            reasons TEXT NOT NULL,
            peer_host TEXT NOT NULL,
            peer_port INTEGER NOT NULL,
            peer_transport TEXT NOT NULL,
            peer_sni TEXT,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            count INTEGER NOT NULL,
            overridden INTEGER NOT NULL,
            previous_der BLOB
        )""",
        "CREATE INDEX rejected_last_seen ON rejected (last_seen, id)",
        "CREATE INDEX rejected_leaf ON rejected (leaf_fingerprint)",
        "CREATE INDEX rejected_leaf_spki ON rejected (leaf_spki_fingerprint)",
        """CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE device_identity (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            kind TEXT NOT NULL,
            chain BLOB NOT NULL,
            private_key_pem BLOB NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE pending_csr (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            csr_pem BLOB NOT NULL,
            private_key_pem BLOB NOT NULL,
            key_spec TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            interface TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            details TEXT NOT NULL
        )""",
    ),
    # 2: the address a rejected chain was dialled at, beside the identity checked.
    ("ALTER TABLE rejected ADD COLUMN address TEXT",),
    (
        # Version 3: revocation information, keyed by where it came from.
        """CREATE TABLE revocation (
            key TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            source TEXT NOT NULL,
            url TEXT,
            der BLOB NOT NULL,
            fingerprint TEXT NOT NULL,
            fetched_at TEXT NOT NULL
        )""",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION

_PIN_COLUMNS = "id, decision, match, fingerprint, scope, expires_at, note, created_at, created_by"
_INSERT_PIN = (
    "INSERT INTO pins (decision, match, fingerprint, scope, expires_at, note, created_at, "
    "created_by, certificate_der) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "RETURNING id, decision, match, fingerprint, scope, expires_at, note, created_at, created_by"
)
_REJECTED_COLUMNS = (
    "id, chain, reasons, peer_host, peer_port, peer_transport, peer_sni, "
    "first_seen, last_seen, count, overridden, previous_der, address"
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _ts(value: datetime) -> str:
    return backup.timestamp(value)


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def pack_chain(ders: Iterable[bytes]) -> bytes:
    """Several DER certificates in one blob: each as a 4-byte big-endian length + DER."""
    return b"".join(struct.pack(">I", len(der)) + der for der in ders)


def unpack_chain(blob: bytes) -> list[bytes]:
    """The inverse of :func:`pack_chain`; raises ValueError on a damaged blob."""
    out: list[bytes] = []
    pos = 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise ValueError("truncated length")
        (length,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if length == 0 or pos + length > len(blob):
            raise ValueError("truncated certificate")
        out.append(bytes(blob[pos : pos + length]))
        pos += length
    if not out:
        raise ValueError("empty chain")
    return out


def _bounded_chain(chain: Sequence[Certificate]) -> tuple[Certificate, ...]:
    kept = [chain[0]]
    total = len(chain[0].der)
    for cert in chain[1:]:
        if (
            len(kept) >= MAX_RECORDED_CHAIN_CERTS
            or total + len(cert.der) > MAX_RECORDED_CHAIN_BYTES
        ):
            break
        kept.append(cert)
        total += len(cert.der)
    return tuple(kept)


def _public_key_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _private_key_matches(pem: bytes, public_key_der: bytes, *, field: str) -> None:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:
        raise ValidationError(
            field, "The private key is encrypted; the store keeps unencrypted PKCS#8 keys."
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValidationError(field, "The private key is not a readable PEM private key.") from exc
    if _public_key_der(key.public_key()) != public_key_der:
        raise ValidationError(
            field, "The private key does not belong to the certificate (the public keys differ)."
        )


@dataclass(frozen=True, slots=True)
class _Cached:
    """The cached snapshot and the trust table marks it was built from.

    Trust rows are never updated in place and their ids (AUTOINCREMENT) are never
    reused, so (row count, highest id) changes whenever the trust list does: a new row
    raises the highest id, a removal without addition lowers the count.
    """

    snapshot: TrustSnapshot
    trust_count: int
    trust_max_id: int


class SqliteStore:
    """The trust state in one SQLite file; implements :class:`certstore.store.CertStore`.

    ``path`` is the database file; its directory is created (mode 0700) if missing,
    and the file is created with mode 0600 (it holds private keys). A new store is
    seeded with the builtin CA certificates and the default settings in one
    transaction. ``rejected_limit`` bounds the rejected list (oldest ``last_seen``
    evicted first), ``audit_limit`` the audit log (oldest rows dropped). ``clock``
    stamps changes (``added_at``, ``created_at``, audit times) and computes statuses.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rejected_limit: int = DEFAULT_REJECTED_LIMIT,
        clock: Callable[[], datetime] = _utc_now,
        audit_limit: int = DEFAULT_AUDIT_LIMIT,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        if rejected_limit < 1:
            raise ValidationError("rejected_limit", "The rejected list limit must be at least 1.")
        if audit_limit < 1:
            raise ValidationError("audit_limit", "The audit log limit must be at least 1.")
        self._path = Path(path)
        self._rejected_limit = rejected_limit
        self._audit_limit = audit_limit
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self._cache: OrderedDict[str, Certificate] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cached: _Cached | None = None
        self._rebuild_lock = threading.Lock()
        # Parsed revocation sources by fingerprint: a snapshot rebuild re-reads only new ones.
        self._revocation_cache: dict[str, Crl | OcspResponse] = {}
        try:
            self._prepare_files()
            self._initialize()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SqliteStore({str(self._path)!r})"

    @property
    def path(self) -> Path:
        return self._path

    # -- files, connections, transactions -----------------------------------------------

    def _prepare_files(self) -> None:
        parent = self._path.parent
        try:
            parent.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StorageError(
                f"The data directory {parent} could not be created ({exc.strerror}); "
                "check the path and its permissions."
            ) from exc
        else:
            os.chmod(parent, 0o700)
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StorageError(
                f"The certificate store {self._path} could not be created ({exc.strerror}); "
                "check that the data directory is writable."
            ) from exc
        else:
            os.close(fd)
        # SQLite gives the -wal and -shm files the mode of the database file. Tighten
        # files left too open (e.g. copied in by hand): they hold private keys.
        for name in (self._path, Path(f"{self._path}-wal"), Path(f"{self._path}-shm")):
            with contextlib.suppress(FileNotFoundError):
                if os.stat(name).st_mode & 0o077:
                    try:
                        os.chmod(name, 0o600)
                    except OSError as exc:
                        raise StorageError(
                            f"The certificate store file {name} is readable by others and "
                            f"its mode could not be set to 0600 ({exc.strerror})."
                        ) from exc

    def _open_connection(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE / COMMIT
                check_same_thread=False,  # close() may run on another thread
            )
        except sqlite3.Error as exc:
            raise self._storage_error(exc, "opening the store") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
            # Give the disk back after a big transaction (a restore) has been checkpointed.
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        except sqlite3.Error as exc:
            conn.close()
            raise self._storage_error(exc, "opening the store") from exc
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StorageError(f"The certificate store {self._path} was closed; open it again.")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._conns_lock:
            if self._closed:
                raise StorageError(f"The certificate store {self._path} was closed; open it again.")
            alive = []
            for thread, other in self._conns:
                if thread.is_alive():
                    alive.append((thread, other))
                else:
                    other.close()
            conn = self._open_connection()
            alive.append((threading.current_thread(), conn))
            self._conns = alive
        self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close every connection. Later calls raise :class:`StorageError`."""
        with self._conns_lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for _, conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _storage_error(self, exc: sqlite3.Error, what: str) -> StorageError:
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        where = f"The certificate store {self._path}"
        if primary == _SQLITE_FULL:
            message = (
                f"The disk holding the certificate store {self._path} is full: {what} was "
                "not saved and the store is unchanged. Free some disk space and try again."
            )
        elif primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
            message = (
                f"{where} stayed locked by another process: {what} did not happen. Try "
                "again; if this persists, look for a hung sipsgate process."
            )
        elif primary in (_SQLITE_READONLY, _SQLITE_PERM):
            message = (
                f"{where} is read-only: {what} did not happen. Check the owner and "
                "permissions of the file and of its data directory."
            )
        elif primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            message = (
                f"{where} is damaged or not a sipsgate store ({exc}): {what} failed. "
                "Restore the data directory from a backup."
            )
        elif primary == _SQLITE_CANTOPEN:
            message = (
                f"{where} could not be opened: check that the data directory exists and "
                "is writable by the sipsgate user."
            )
        elif primary == _SQLITE_IOERR:
            message = (
                f"A disk error occurred in {where} ({exc}): {what} did not happen. "
                "Check the disk and the system log."
            )
        else:
            message = f"{where} failed while {what}: {exc}."
        error = StorageError(message)
        error.sqlite_code = code  # type: ignore[attr-defined]
        return error

    @staticmethod
    def _is_busy(exc: sqlite3.Error) -> bool:
        code = getattr(exc, "sqlite_errorcode", None)
        return isinstance(code, int) and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)

    def _transaction(self, what: str, body: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """Run ``body`` in one transaction (``BEGIN IMMEDIATE`` for writes).

        A busy database is retried (SQLite's busy handler already waited
        ``busy_timeout`` each time). Any error rolls back; sqlite errors become
        :class:`StorageError` with a sentence, store errors pass through unchanged.
        """
        conn = self._connection()
        attempt = 0
        while True:
            attempt += 1
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = body(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
                return result
            except sqlite3.Error as exc:
                if self._is_busy(exc) and attempt < BUSY_ATTEMPTS:
                    time.sleep(random.uniform(0.01, 0.05))
                    continue
                raise self._storage_error(exc, what) from exc

    def _write(self, what: str, body: Callable[[sqlite3.Connection], T]) -> T:
        return self._transaction(what, body, write=True)

    def _read(self, what: str, body: Callable[[sqlite3.Connection], T]) -> T:
        return self._transaction(what, body, write=False)

    def _initialize(self) -> None:
        conn = self._connection()
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as exc:
            raise self._storage_error(exc, "opening the store") from exc
        self._refuse_newer(version)
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            try:
                (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
                break
            except sqlite3.Error as exc:
                if self._is_busy(exc) and attempt < BUSY_ATTEMPTS:
                    time.sleep(random.uniform(0.01, 0.05))
                    continue
                raise self._storage_error(exc, "opening the store") from exc
        if str(mode).lower() != "wal":
            raise StorageError(
                f"The certificate store {self._path} could not be switched to WAL mode "
                f"(it is in {mode} mode); put the data directory on a local file system."
            )
        if 0 < version < SCHEMA_VERSION:
            self._copy_before_upgrade(conn, version)
        self._write("preparing the store", self._migrate)

    def _copy_before_upgrade(self, conn: sqlite3.Connection, version: int) -> Path:
        """A complete copy of an older store (keys and secrets included, mode 0600) next to
        it, made before its schema is migrated: the way back if an upgrade goes wrong."""
        stamp = self._now().strftime("%Y%m%dT%H%M%SZ")
        target = self._path.with_name(f"{self._path.name}.schema-v{version}-{stamp}.bak")
        created = False
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            os.close(fd)
            created = True
            copy = sqlite3.connect(target)
            try:
                conn.backup(copy)
            finally:
                copy.close()
        except (OSError, sqlite3.Error) as exc:
            if created:
                with contextlib.suppress(OSError):
                    target.unlink()
            raise StorageError(
                f"Before upgrading the certificate store from schema version {version}, a "
                f"copy could not be written to {target} ({exc}); nothing was changed. Free "
                "some disk space and start again."
            ) from exc
        return target

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"The certificate store {self._path} has schema version {version}, written "
                f"by a newer sipsgate; this one understands version {SCHEMA_VERSION}. "
                "Upgrade sipsgate, or restore a backup made by this version."
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        self._refuse_newer(version)
        if version == SCHEMA_VERSION:
            return
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        if version == 0:
            self._seed(conn)
        else:
            self._audit(
                conn,
                SYSTEM_ACTOR,
                "store.migrate",
                str(self._path.name),
                {"from_version": version, "to_version": SCHEMA_VERSION},
                self._now(),
            )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _seed(self, conn: sqlite3.Connection) -> None:
        now = self._now()
        conn.execute("INSERT INTO meta (id, generation, created_at) VALUES (1, 1, ?)", (_ts(now),))
        defaults = Settings()
        conn.executemany(
            "INSERT INTO settings (key, value) VALUES (?, ?)",
            [(name, json.dumps(getattr(defaults, name))) for name in SETTING_NAMES],
        )
        builtins = builtin_certificates()
        self._insert_trust(conn, builtins, TrustSource.BUILTIN, None, now)
        self._audit(
            conn,
            SYSTEM_ACTOR,
            "store.create",
            str(self._path.name),
            {"schema_version": SCHEMA_VERSION, "builtin_certificates": len(builtins)},
            now,
        )

    # -- shared helpers -----------------------------------------------------------------

    def _now(self) -> datetime:
        return validate_aware(self._clock(), field="clock")

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET generation = generation + 1 WHERE id = 1")

    def _audit(
        self,
        conn: sqlite3.Connection,
        actor: Actor,
        action: str,
        target: str,
        details: Mapping[str, object],
        at: datetime | None = None,
    ) -> None:
        text = json.dumps(details, sort_keys=True, separators=(",", ":"), default=str)
        cursor = conn.execute(
            "INSERT INTO audit (at, actor, interface, action, target, details) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (_ts(at or self._now()), actor.name, actor.interface, action, target, text),
        )
        last = cursor.lastrowid or 0
        if last > self._audit_limit:
            conn.execute("DELETE FROM audit WHERE id <= ?", (last - self._audit_limit,))

    def _certificate(self, der: bytes, fingerprint: str | None = None) -> Certificate:
        """The parsed certificate for ``der``, from the cache when it was seen before."""
        key = fingerprint or hashlib.sha256(der).hexdigest()
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        try:
            cert = parse_der(bytes(der))
        except CertStoreError as exc:
            raise StorageError(
                f"The certificate store {self._path} holds an unreadable certificate "
                f"({key[:16]}...): {exc} Restore the data directory from a backup."
            ) from exc
        if cert.fingerprint != key:
            raise StorageError(
                f"The certificate store {self._path} is damaged: the certificate stored "
                f"as {key} has fingerprint {cert.fingerprint}."
            )
        self._remember(cert)
        return cert

    def _remember(self, *certs: Certificate) -> None:
        with self._cache_lock:
            for cert in certs:
                self._cache[cert.fingerprint] = cert
                self._cache.move_to_end(cert.fingerprint)
            while len(self._cache) > CERT_CACHE_SIZE:
                self._cache.popitem(last=False)

    def _chain(self, blob: bytes) -> tuple[Certificate, ...]:
        try:
            ders = unpack_chain(blob)
        except ValueError as exc:
            raise StorageError(
                f"The certificate store {self._path} holds a damaged certificate chain "
                f"({exc}); restore the data directory from a backup."
            ) from exc
        return tuple(self._certificate(der) for der in ders)

    @staticmethod
    def _check_actor(actor: Actor) -> Actor:
        if not isinstance(actor, Actor):
            raise ValidationError("actor", "Every change needs an actor (who and through what).")
        return actor

    # -- the handshake view ---------------------------------------------------------------

    def generation(self) -> int:
        """The change counter of the handshake view (trust list, pins, settings)."""
        conn = self._connection()
        try:
            row = conn.execute("SELECT generation FROM meta WHERE id = 1").fetchone()
        except sqlite3.Error as exc:
            if not self._is_busy(exc):
                raise self._storage_error(exc, "reading the store") from exc
            row = self._read(
                "reading the store",
                lambda c: c.execute("SELECT generation FROM meta WHERE id = 1").fetchone(),
            )
        if row is None:
            raise StorageError(f"The certificate store {self._path} has lost its meta row.")
        return int(row[0])

    def snapshot(self) -> TrustSnapshot:
        cached = self._cached
        if cached is not None and cached.snapshot.generation == self.generation():
            return cached.snapshot
        with self._rebuild_lock:
            fresh = self._read("reading the trust state", self._build_snapshot)
            if (
                self._cached is None
                or fresh.snapshot.generation >= self._cached.snapshot.generation
            ):
                self._cached = fresh
            return fresh.snapshot

    def _build_snapshot(self, conn: sqlite3.Connection) -> _Cached:
        """The current snapshot, built from the previous one where possible.

        Settings and pins are read whole (they are small). The trust list, which may
        hold 10,000 entries, is only read whole the first time: afterwards new rows are
        read by id, removals found by fingerprint, and the indexes of the previous
        snapshot are copied and patched instead of rebuilt.
        """
        (generation,) = conn.execute("SELECT generation FROM meta WHERE id = 1").fetchone()
        cached = self._cached
        if cached is not None and cached.snapshot.generation == generation:
            return cached
        count, max_id = conn.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM trust").fetchone()
        settings = self._read_settings(conn)
        pins = self._read_pins(conn)
        revocation = self._read_revocation_facts(conn)
        if cached is None or max_id < cached.trust_max_id:
            previous = cached.snapshot if cached is not None else None
            snap = TrustSnapshot.build(
                generation=generation,
                settings=settings,
                trust=self._read_trust(conn, previous),
                pins=pins,
                revocation=revocation,
            )
            return _Cached(snapshot=snap, trust_count=count, trust_max_id=max_id)
        # Pins and their indexes, built the one way TrustSnapshot builds them.
        pin_part = TrustSnapshot.build(
            generation=generation, settings=settings, trust=(), pins=pins
        )
        trust_fields: dict[str, Any] = {}
        if (count, max_id) != (cached.trust_count, cached.trust_max_id):
            trust_fields = self._patched_trust(conn, cached, count)
        snap = replace(
            cached.snapshot,
            generation=generation,
            settings=settings,
            pins=pin_part.pins,
            pins_by_fingerprint=pin_part.pins_by_fingerprint,
            first_use_scopes=pin_part.first_use_scopes,
            revocation=revocation,
            **trust_fields,
        )
        return _Cached(snapshot=snap, trust_count=count, trust_max_id=max_id)

    def _patched_trust(
        self, conn: sqlite3.Connection, cached: _Cached, count: int
    ) -> dict[str, Any]:
        """The trust fields of a snapshot: the previous ones with new rows appended and
        removed rows taken out, in id order like a full build."""
        previous = cached.snapshot
        added = [
            self._trust_entry(row)
            for row in conn.execute(
                "SELECT fingerprint, der, kind, source, added_at FROM trust WHERE id > ? "
                "ORDER BY id",
                (cached.trust_max_id,),
            )
        ]
        entries = dict(previous.trust_by_fingerprint)
        added_fps = {e.certificate.fingerprint for e in added}
        removed = [entries[fp] for fp in added_fps if fp in entries]  # removed, then re-added
        if cached.trust_count + len(added) - len(removed) != count:
            present = {fp for (fp,) in conn.execute("SELECT fingerprint FROM trust")}
            removed.extend(e for fp, e in entries.items() if fp not in present)
        anchors = dict(previous.anchors_by_subject)
        for entry in removed:
            del entries[entry.certificate.fingerprint]
            subject = entry.certificate.subject_der
            group = tuple(e for e in anchors[subject] if e is not entry)
            if group:
                anchors[subject] = group
            else:
                del anchors[subject]
        for entry in added:
            entries[entry.certificate.fingerprint] = entry
            subject = entry.certificate.subject_der
            anchors[subject] = (*anchors.get(subject, ()), entry)
        return {
            "trust": tuple(entries.values()),
            "trust_by_fingerprint": MappingProxyType(entries),
            "anchors_by_subject": MappingProxyType(anchors),
        }

    def _read_trust(
        self, conn: sqlite3.Connection, previous: TrustSnapshot | None = None
    ) -> list[TrustEntry]:
        """The whole trust list in id (insertion) order, reusing parsed certificates."""
        rows = conn.execute(
            "SELECT fingerprint, kind, source, added_at FROM trust ORDER BY id"
        ).fetchall()
        known: Mapping[str, TrustEntry] = previous.trust_by_fingerprint if previous else {}
        certs: dict[str, Certificate] = {}
        missing: list[str] = []
        with self._cache_lock:
            for fp, *_ in rows:
                old = known.get(fp)
                cert = old.certificate if old is not None else self._cache.get(fp)
                if cert is None:
                    missing.append(fp)
                else:
                    certs[fp] = cert
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for fp, der in conn.execute(
                f"SELECT fingerprint, der FROM trust WHERE fingerprint IN ({marks})",  # noqa: S608
                chunk,
            ):
                certs[fp] = self._certificate(der, fp)
        return [
            TrustEntry(
                certificate=certs[fp],
                kind=TrustKind(kind),
                source=TrustSource(source),
                added_at=_dt(added_at),
            )
            for fp, kind, source, added_at in rows
        ]

    @staticmethod
    def _pin(row: Sequence[Any]) -> Pin:
        pin_id, decision, match, fingerprint, scope, expires_at, note, created_at, created_by = row
        return Pin(
            id=int(pin_id),
            decision=PinDecision(decision),
            match=PinMatch(match),
            fingerprint=str(fingerprint),
            scope=None if scope is None else str(scope),
            expires_at=None if expires_at is None else _dt(str(expires_at)),
            note=str(note),
            created_at=_dt(str(created_at)),
            created_by=str(created_by),
        )

    def _read_pins(self, conn: sqlite3.Connection) -> list[Pin]:
        return [
            self._pin(row)
            for row in conn.execute(f"SELECT {_PIN_COLUMNS} FROM pins ORDER BY id")  # noqa: S608
        ]

    @staticmethod
    def _read_settings(conn: sqlite3.Connection) -> Settings:
        values: dict[str, object] = {}
        for key, value in conn.execute("SELECT key, value FROM settings"):
            if key in SETTING_NAMES:
                values[key] = json.loads(value)
        try:
            settings, _ = apply_settings_changes(Settings(), values)
        except ValidationError as exc:
            raise StorageError(f"The stored settings are damaged: {exc}") from exc
        return settings

    def record_handshake(
        self,
        verdict: Verdict,
        chain: Sequence[Certificate],
        peer: Peer,
        now: datetime,
        *,
        actor: Actor | None = None,
        address: str | None = None,
    ) -> RejectedChain | Pin | None:
        """Record an untrusted or overridden chain, or create the first-use pin.

        A repeat of a recorded chain (same certificates) bumps ``count`` and
        ``last_seen`` and updates the reasons, the peer and ``overridden``; only a new
        entry is audited. When the list grows beyond ``rejected_limit`` the entries
        seen longest ago are evicted in the same transaction. At most
        ``MAX_RECORDED_CHAIN_CERTS`` certificates (``MAX_RECORDED_CHAIN_BYTES``) of a
        chain are kept, the leaf always. A first-use verdict for a destination that
        already has a first-use pin (two handshakes raced) returns that pin.
        """
        now = validate_aware(now, field="now")
        actor = actor or GATEWAY_AUDIT_ACTOR
        if not chain:
            return None
        if verdict.rule is Rule.FIRST_USE:
            leaf = chain[0]
            destination = normalize_scope(peer.destination)
            # The pin's name marks it as a first-use pin; the interface says who connected.
            pin_actor = Actor(name=FIRST_USE_ACTOR, interface=actor.interface)
            return self._write(
                "recording a first-use pin",
                lambda conn: self._first_use_pin(conn, leaf, destination, now, pin_actor),
            )
        if not verdict.should_record:
            return None
        recorded = _bounded_chain(chain)
        self._remember(*recorded)
        key = backup.chain_key([c.fingerprint for c in recorded])
        reasons = verdict.reasons
        short_peer = Peer(
            host=peer.host[:MAX_PEER_TEXT],
            port=peer.port,
            transport=Transport(peer.transport),
            sni=None if peer.sni is None else peer.sni[:MAX_PEER_TEXT],
        )
        destination = peer.destination
        overridden = verdict.overridden
        dialled = None if address is None else address[:MAX_PEER_TEXT]

        def body(conn: sqlite3.Connection) -> RejectedChain:
            previous = verdict.previous
            if previous is None and Reason.KEY_CHANGED in reasons:
                previous = self._first_use_certificate(conn, destination)
            reasons_json = json.dumps([r.value for r in reasons])
            row = conn.execute(
                "SELECT id, first_seen, count, previous_der, address FROM rejected "
                "WHERE chain_key = ?",
                (key,),
            ).fetchone()
            if row is not None:
                entry_id, first_seen, count, previous_der, old_address = row
                # The latest address dialled; kept when this recorder does not know it.
                dialled_now = dialled if dialled is not None else old_address
                if previous is None and previous_der is not None:
                    previous = self._certificate(previous_der)
                (last_seen,) = conn.execute(
                    "UPDATE rejected SET count = MIN(count + 1, ?), last_seen = MAX(last_seen, ?), "
                    "reasons = ?, overridden = ?, peer_host = ?, peer_port = ?, "
                    "peer_transport = ?, peer_sni = ?, previous_der = ?, address = ? "
                    "WHERE id = ? RETURNING last_seen",
                    (
                        MAX_REJECTED_COUNT,  # saturates: a backup of it always restores
                        _ts(now),
                        reasons_json,
                        int(overridden),
                        short_peer.host,
                        short_peer.port,
                        short_peer.transport.value,
                        short_peer.sni,
                        previous.der if previous else None,
                        dialled_now,
                        entry_id,
                    ),
                ).fetchone()
                return RejectedChain(
                    id=entry_id,
                    chain=recorded,
                    reasons=reasons,
                    peer=short_peer,
                    first_seen=_dt(first_seen),
                    last_seen=_dt(last_seen),
                    count=min(count + 1, MAX_REJECTED_COUNT),
                    overridden=overridden,
                    previous=previous,
                    address=dialled_now,
                )
            cursor = conn.execute(
                "INSERT INTO rejected (chain_key, chain, leaf_fingerprint, "
                "leaf_spki_fingerprint, reasons, peer_host, peer_port, peer_transport, "
                "peer_sni, first_seen, last_seen, count, overridden, previous_der, address) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                (
                    key,
                    pack_chain(c.der for c in recorded),
                    recorded[0].fingerprint,
                    recorded[0].spki_fingerprint,
                    reasons_json,
                    short_peer.host,
                    short_peer.port,
                    short_peer.transport.value,
                    short_peer.sni,
                    _ts(now),
                    _ts(now),
                    int(overridden),
                    previous.der if previous else None,
                    dialled,
                ),
            )
            entry_id = int(cursor.lastrowid or 0)
            evicted = self._evict_rejected(conn)
            self._audit(
                conn,
                actor,
                "rejected.record",
                str(entry_id),
                {
                    "leaf": recorded[0].fingerprint,
                    "subject": recorded[0].subject,
                    "peer": destination,
                    "reasons": [r.value for r in reasons],
                    "overridden": overridden,
                    "evicted": evicted,
                    "address": dialled,
                },
                now,
            )
            return RejectedChain(
                id=entry_id,
                chain=recorded,
                reasons=reasons,
                peer=short_peer,
                first_seen=now,
                last_seen=now,
                count=1,
                overridden=overridden,
                previous=previous,
                address=dialled,
            )

        return self._write("recording a rejected certificate chain", body)

    def _evict_rejected(self, conn: sqlite3.Connection) -> int:
        (count,) = conn.execute("SELECT COUNT(*) FROM rejected").fetchone()
        excess = int(count) - self._rejected_limit
        if excess <= 0:
            return 0
        conn.execute(
            "DELETE FROM rejected WHERE id IN "
            "(SELECT id FROM rejected ORDER BY last_seen, id LIMIT ?)",
            (excess,),
        )
        return excess

    def _first_use_certificate(
        self, conn: sqlite3.Connection, destination: str
    ) -> Certificate | None:
        row = conn.execute(
            "SELECT certificate_der FROM pins WHERE scope = ? AND created_by = ? "
            "AND certificate_der IS NOT NULL ORDER BY id DESC LIMIT 1",
            (destination, FIRST_USE_ACTOR),
        ).fetchone()
        return None if row is None else self._certificate(row[0])

    def _first_use_pin(
        self,
        conn: sqlite3.Connection,
        leaf: Certificate,
        destination: str | None,
        now: datetime,
        actor: Actor = FIRST_USE_AUDIT_ACTOR,
    ) -> Pin:
        row = conn.execute(
            f"SELECT {_PIN_COLUMNS} FROM pins WHERE scope = ? AND created_by = ? "  # noqa: S608
            "ORDER BY id LIMIT 1",
            (destination, FIRST_USE_ACTOR),
        ).fetchone()
        if row is not None:
            return self._pin(row)
        request = PinRequest(
            decision=PinDecision.ACCEPT,
            match=PinMatch.PUBLIC_KEY,
            fingerprint=leaf.spki_fingerprint,
            scope=destination,
            certificate=leaf,
        )
        return self._insert_pin(conn, request, actor, now, action="pin.add")

    # -- trust list -----------------------------------------------------------------------

    def _trust_entry(self, row: Sequence[Any]) -> TrustEntry:
        fingerprint, der, kind, source, added_at = row
        return TrustEntry(
            certificate=self._certificate(der, str(fingerprint)),
            kind=TrustKind(kind),
            source=TrustSource(source),
            added_at=_dt(str(added_at)),
        )

    def list_trust(
        self, *, kind: TrustKind | None = None, status: CertStatus | None = None
    ) -> tuple[TrustEntry, ...]:
        """The trust list, oldest first; expired certificates stay until removed.

        ``status`` filters by the status at the store's clock (``expired`` and
        ``not-yet-valid`` entries make the "invalid" view).
        """
        entries = self.snapshot().trust
        if kind is not None:
            entries = tuple(e for e in entries if e.kind is TrustKind(kind))
        if status is not None:
            now = self._now()
            entries = tuple(
                e for e in entries if e.certificate.status_at(now) is CertStatus(status)
            )
        return entries

    def status_of(self, certificate: Certificate) -> CertStatus:
        """A certificate's status at the store's clock."""
        return certificate.status_at(self._now())

    def get_trust(self, fingerprint: str) -> TrustEntry:
        fp = normalize_fingerprint(fingerprint)
        row = self._read(
            "reading the trust list",
            lambda conn: conn.execute(
                "SELECT fingerprint, der, kind, source, added_at FROM trust WHERE fingerprint = ?",
                (fp,),
            ).fetchone(),
        )
        if row is None:
            raise NotFound("trusted certificate", fp)
        return self._trust_entry(row)

    def _insert_trust(
        self,
        conn: sqlite3.Connection,
        certificates: Sequence[Certificate],
        source: TrustSource,
        kind: TrustKind | None,
        now: datetime,
    ) -> AddResult:
        added: list[Certificate] = []
        present: list[Certificate] = []
        for cert in dict.fromkeys(certificates):
            entry_kind = kind or (TrustKind.CA if cert.is_ca else TrustKind.SERVER)
            cursor = conn.execute(
                "INSERT OR IGNORE INTO trust "
                "(fingerprint, der, spki_fingerprint, kind, source, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    cert.fingerprint,
                    cert.der,
                    cert.spki_fingerprint,
                    entry_kind.value,
                    source.value,
                    _ts(now),
                ),
            )
            (added if cursor.rowcount else present).append(cert)
        self._remember(*added)
        return AddResult(added=tuple(added), already_present=tuple(present))

    def _add_trust(
        self,
        certificates: Sequence[Certificate],
        source: TrustSource,
        actor: Actor,
        kind: TrustKind | None,
        action: str,
    ) -> AddResult:
        for cert in certificates:
            if not isinstance(cert, Certificate):
                raise ValidationError("certificates", "Only parsed certificates can be trusted.")
        source = TrustSource(source)
        kind = None if kind is None else TrustKind(kind)

        def body(conn: sqlite3.Connection) -> AddResult:
            now = self._now()
            result = self._insert_trust(conn, certificates, source, kind, now)
            if result.added:
                self._bump(conn)
                self._audit(
                    conn,
                    actor,
                    action,
                    result.added[0].fingerprint
                    if len(result.added) == 1
                    else f"{len(result.added)} certificates",
                    {
                        "source": source.value,
                        "added": [c.fingerprint for c in result.added],
                        "already_present": len(result.already_present),
                    },
                    now,
                )
            return result

        return self._write("adding certificates to the trust list", body)

    def add_trust(
        self,
        certificates: Sequence[Certificate],
        *,
        source: TrustSource,
        actor: Actor,
        kind: TrustKind | None = None,
    ) -> AddResult:
        """Add certificates; ``kind`` defaults to ``ca`` for CA certificates, else ``server``.

        Certificates already trusted keep their kind and source and are reported in
        ``already_present``; when nothing is new, nothing is written or audited.
        """
        return self._add_trust(certificates, source, self._check_actor(actor), kind, "trust.add")

    def restore_defaults(self, *, actor: Actor) -> AddResult:
        """Re-add every builtin CA certificate that is missing from the trust list."""
        return self._add_trust(
            builtin_certificates(),
            TrustSource.BUILTIN,
            self._check_actor(actor),
            None,
            "trust.restore-defaults",
        )

    def remove_trust(self, fingerprint: str, *, actor: Actor) -> TrustEntry:
        fp = normalize_fingerprint(fingerprint)
        self._check_actor(actor)

        def body(conn: sqlite3.Connection) -> TrustEntry:
            row = conn.execute(
                "DELETE FROM trust WHERE fingerprint = ? "
                "RETURNING fingerprint, der, kind, source, added_at",
                (fp,),
            ).fetchone()
            if row is None:
                raise NotFound("trusted certificate", fp)
            entry = self._trust_entry(row)
            self._bump(conn)
            self._audit(
                conn,
                actor,
                "trust.remove",
                fp,
                {"subject": entry.certificate.subject, "source": entry.source.value},
            )
            return entry

        return self._write("removing a certificate from the trust list", body)

    def clear_trust(self, *, actor: Actor) -> int:
        self._check_actor(actor)

        def body(conn: sqlite3.Connection) -> int:
            removed = conn.execute("DELETE FROM trust").rowcount
            if removed:
                self._bump(conn)
                self._audit(conn, actor, "trust.clear", "trust", {"removed": removed})
            return removed

        return self._write("clearing the trust list", body)

    # -- pins -------------------------------------------------------------------------------

    def list_pins(self) -> tuple[Pin, ...]:
        return self.snapshot().pins

    def get_pin(self, pin_id: int) -> Pin:
        row = self._read(
            "reading a pin",
            lambda conn: conn.execute(
                f"SELECT {_PIN_COLUMNS} FROM pins WHERE id = ?",  # noqa: S608
                (self._check_id(pin_id, "pin"),),
            ).fetchone(),
        )
        if row is None:
            raise NotFound("pin", pin_id)
        return self._pin(row)

    def pin_certificate(self, pin_id: int) -> Certificate | None:
        """The certificate a pin was made from, when the store knows it."""
        pin = self.get_pin(pin_id)
        return self._read("reading a pin", lambda conn: self._known_pin_certificate(conn, pin))

    def pin_origins(self) -> dict[int, PinOrigin]:
        def body(conn: sqlite3.Connection) -> dict[int, PinOrigin]:
            # The audit log says through which interface each pin was made (the pin
            # itself keeps only the actor's name); a later event for an id wins.
            interfaces: dict[int, str] = {}
            for target, interface in conn.execute(
                "SELECT target, interface FROM audit WHERE action = 'pin.add' ORDER BY id"
            ):
                if str(target).isdigit():
                    interfaces[int(target)] = str(interface)
            for pin_id, interface in conn.execute(
                "SELECT json_extract(details, '$.pin'), interface FROM audit "
                "WHERE action IN ('rejected.accept', 'rejected.reject') ORDER BY id"
            ):
                if isinstance(pin_id, int):
                    interfaces[pin_id] = str(interface)
            return {
                pin.id: PinOrigin(
                    certificate=self._known_pin_certificate(conn, pin),
                    interface=interfaces.get(pin.id),
                )
                for pin in self._read_pins(conn)
            }

        return self._read("reading where the pins came from", body)

    @staticmethod
    def _check_id(value: object, what: str) -> int:
        if type(value) is not int or value < 1:
            raise NotFound(what, str(value))
        return value

    def _validated_pin(self, request: PinRequest) -> PinRequest:
        if not isinstance(request, PinRequest):
            raise ValidationError("pin", "A pin must be given as a PinRequest.")
        try:
            decision = PinDecision(request.decision)
        except ValueError as exc:
            raise ValidationError("decision", "The decision must be accept or reject.") from exc
        try:
            match = PinMatch(request.match)
        except ValueError as exc:
            raise ValidationError("match", "The match must be certificate or public-key.") from exc
        fingerprint = normalize_fingerprint(request.fingerprint)
        expires_at = None
        if request.expires_at is not None:
            expires_at = validate_aware(request.expires_at, field="expires_at")
            if expires_at <= self._now():
                raise ValidationError(
                    "expires_at",
                    f"The expiry {expires_at.isoformat()} is in the past; a pin must end "
                    "in the future.",
                )
        cert = request.certificate
        if cert is not None:
            expected = cert.fingerprint if match is PinMatch.CERTIFICATE else cert.spki_fingerprint
            if expected != fingerprint:
                raise ValidationError(
                    "certificate",
                    f"The certificate does not have the {match.value} fingerprint {fingerprint}.",
                )
        return PinRequest(
            decision=decision,
            match=match,
            fingerprint=fingerprint,
            scope=normalize_scope(request.scope),
            expires_at=expires_at,
            note=validate_note(request.note),
            certificate=cert,
        )

    def _insert_pin(
        self,
        conn: sqlite3.Connection,
        request: PinRequest,
        actor: Actor,
        now: datetime,
        *,
        action: str | None,
    ) -> Pin:
        """Insert a validated pin, or return the identical one that exists (no audit)."""
        expires = _ts(request.expires_at) if request.expires_at else None
        row = conn.execute(
            f"SELECT {_PIN_COLUMNS} FROM pins WHERE decision = ? AND match = ? "  # noqa: S608
            "AND fingerprint = ? AND scope IS ? AND expires_at IS ? ORDER BY id LIMIT 1",
            (
                request.decision.value,
                request.match.value,
                request.fingerprint,
                request.scope,
                expires,
            ),
        ).fetchone()
        if row is not None:
            return self._pin(row)
        der = request.certificate.der if request.certificate else None
        if der is None:
            der = self._lookup_der(conn, request.match, request.fingerprint)
        row = conn.execute(
            _INSERT_PIN,
            (
                request.decision.value,
                request.match.value,
                request.fingerprint,
                request.scope,
                expires,
                request.note,
                _ts(now),
                actor.name,
                der,
            ),
        ).fetchone()
        pin = self._pin(row)
        self._bump(conn)
        if action is not None:
            self._audit(conn, actor, action, str(pin.id), self._pin_details(pin), now)
        return pin

    @staticmethod
    def _pin_details(pin: Pin) -> dict[str, object]:
        return {
            "decision": pin.decision.value,
            "match": pin.match.value,
            "fingerprint": pin.fingerprint,
            "scope": pin.scope,
            "expires_at": pin.expires_at.isoformat() if pin.expires_at else None,
        }

    def _lookup_der(
        self, conn: sqlite3.Connection, match: PinMatch, fingerprint: str
    ) -> bytes | None:
        """DER of a certificate with this fingerprint (or public key) the store knows."""
        if match is PinMatch.CERTIFICATE:
            row = conn.execute(
                "SELECT der FROM trust WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            column = "leaf_fingerprint"
        else:
            row = conn.execute(
                "SELECT der FROM trust WHERE spki_fingerprint = ? LIMIT 1", (fingerprint,)
            ).fetchone()
            column = "leaf_spki_fingerprint"
        if row is not None:
            return bytes(row[0])
        row = conn.execute(
            f"SELECT chain FROM rejected WHERE {column} = ? LIMIT 1",  # noqa: S608
            (fingerprint,),
        ).fetchone()
        if row is not None:
            with contextlib.suppress(ValueError):
                return unpack_chain(row[0])[0]
        return None

    def _known_pin_certificate(self, conn: sqlite3.Connection, pin: Pin) -> Certificate | None:
        row = conn.execute("SELECT certificate_der FROM pins WHERE id = ?", (pin.id,)).fetchone()
        der = row[0] if row is not None and row[0] is not None else None
        if der is None:
            der = self._lookup_der(conn, pin.match, pin.fingerprint)
        return None if der is None else self._certificate(der)

    def add_pin(self, request: PinRequest, *, actor: Actor) -> Pin:
        """Create a pin. An identical pin (same decision, match, fingerprint, scope and
        expiry) is returned as it is, without a second row or audit event."""
        self._check_actor(actor)
        valid = self._validated_pin(request)
        return self._write(
            "adding a pin",
            lambda conn: self._insert_pin(conn, valid, actor, self._now(), action="pin.add"),
        )

    def remove_pin(self, pin_id: int, *, actor: Actor) -> Pin:
        self._check_actor(actor)

        def body(conn: sqlite3.Connection) -> Pin:
            row = conn.execute(
                f"DELETE FROM pins WHERE id = ? RETURNING {_PIN_COLUMNS}",  # noqa: S608
                (self._check_id(pin_id, "pin"),),
            ).fetchone()
            if row is None:
                raise NotFound("pin", pin_id)
            pin = self._pin(row)
            self._bump(conn)
            self._audit(conn, actor, "pin.remove", str(pin.id), self._pin_details(pin))
            return pin

        return self._write("removing a pin", body)

    # -- rejected chains ----------------------------------------------------------------------

    def _rejected(self, row: Sequence[Any]) -> RejectedChain:
        (
            entry_id,
            chain,
            reasons,
            host,
            port,
            transport,
            sni,
            first_seen,
            last_seen,
            count,
            overridden,
            previous_der,
            address,
        ) = row
        return RejectedChain(
            id=int(entry_id),
            chain=self._chain(chain),
            reasons=tuple(Reason(r) for r in json.loads(str(reasons))),
            peer=Peer(
                host=str(host),
                port=int(port),
                transport=Transport(transport),
                sni=None if sni is None else str(sni),
            ),
            first_seen=_dt(str(first_seen)),
            last_seen=_dt(str(last_seen)),
            count=int(count),
            overridden=bool(overridden),
            previous=None if previous_der is None else self._certificate(previous_der),
            address=None if address is None else str(address),
        )

    def list_rejected(self) -> tuple[RejectedChain, ...]:
        """Newest ``last_seen`` first."""
        rows = self._read(
            "reading the rejected list",
            lambda conn: conn.execute(
                f"SELECT {_REJECTED_COLUMNS} FROM rejected "  # noqa: S608
                "ORDER BY last_seen DESC, id DESC"
            ).fetchall(),
        )
        return tuple(self._rejected(row) for row in rows)

    def _load_rejected(self, conn: sqlite3.Connection, rejected_id: int) -> RejectedChain:
        row = conn.execute(
            f"SELECT {_REJECTED_COLUMNS} FROM rejected WHERE id = ?",  # noqa: S608
            (self._check_id(rejected_id, "rejected chain"),),
        ).fetchone()
        if row is None:
            raise NotFound("rejected chain", rejected_id)
        return self._rejected(row)

    def get_rejected(self, rejected_id: int) -> RejectedChain:
        return self._read(
            "reading the rejected list", lambda conn: self._load_rejected(conn, rejected_id)
        )

    def trust_rejected(
        self, rejected_id: int, fingerprints: Sequence[str], *, actor: Actor
    ) -> AddResult:
        """Trust the chosen certificates of the chain (source ``trusted-from-rejected``)
        and drop the chain from the list (innovaphone's "Trust")."""
        self._check_actor(actor)
        if isinstance(fingerprints, str) or not fingerprints:
            raise ValidationError(
                "fingerprints", "Choose at least one certificate of the chain to trust."
            )
        chosen = [normalize_fingerprint(f, field="fingerprints") for f in fingerprints]

        def body(conn: sqlite3.Connection) -> AddResult:
            entry = self._load_rejected(conn, rejected_id)
            in_chain = {c.fingerprint: c for c in entry.chain}
            strangers = [fp for fp in chosen if fp not in in_chain]
            if strangers:
                raise ValidationError(
                    "fingerprints",
                    f"The certificate {strangers[0]} is not part of rejected chain "
                    f"{entry.id}; choose certificates of that chain.",
                )
            certs = [c for c in entry.chain if c.fingerprint in set(chosen)]
            now = self._now()
            result = self._insert_trust(conn, certs, TrustSource.TRUSTED_FROM_REJECTED, None, now)
            conn.execute("DELETE FROM rejected WHERE id = ?", (entry.id,))
            self._bump(conn)
            self._audit(
                conn,
                actor,
                "rejected.trust",
                str(entry.id),
                {
                    "leaf": entry.leaf.fingerprint,
                    "added": [c.fingerprint for c in result.added],
                    "already_present": [c.fingerprint for c in result.already_present],
                },
                now,
            )
            return result

        return self._write("trusting certificates of a rejected chain", body)

    def pin_rejected(
        self,
        rejected_id: int,
        decision: PinDecision,
        *,
        actor: Actor,
        match: PinMatch = PinMatch.CERTIFICATE,
        scope: str | None = None,
        expires_at: datetime | None = None,
        note: str = "",
    ) -> Pin:
        """Pin the chain's leaf ``accept`` or ``reject`` (Gigaset) and drop the entry.

        Both decisions take the chain off the rejected list: from then on the pin
        decides for this certificate, so the chain is not recorded again. An accepted
        certificate shows with its pin (the server/CA view); a rejected one is refused
        at the handshake without being recorded.
        """
        self._check_actor(actor)
        try:
            decision = PinDecision(decision)
            match = PinMatch(match)
        except ValueError as exc:
            raise ValidationError("decision", f"{exc}.") from exc
        # Check everything but the fingerprint before opening the transaction.
        template = self._validated_pin(
            PinRequest(
                decision=decision,
                match=match,
                fingerprint="0" * 64,
                scope=scope,
                expires_at=expires_at,
                note=note,
            )
        )

        def body(conn: sqlite3.Connection) -> Pin:
            entry = self._load_rejected(conn, rejected_id)
            leaf = entry.leaf
            request = PinRequest(
                decision=template.decision,
                match=template.match,
                fingerprint=leaf.fingerprint
                if template.match is PinMatch.CERTIFICATE
                else leaf.spki_fingerprint,
                scope=template.scope,
                expires_at=template.expires_at,
                note=template.note,
                certificate=leaf,
            )
            now = self._now()
            pin = self._insert_pin(conn, request, actor, now, action=None)
            conn.execute("DELETE FROM rejected WHERE id = ?", (entry.id,))
            self._bump(conn)
            self._audit(
                conn,
                actor,
                f"rejected.{decision.value}",
                str(entry.id),
                {"leaf": leaf.fingerprint, "pin": pin.id, **self._pin_details(pin)},
                now,
            )
            return pin

        return self._write(f"pinning a rejected certificate ({decision.value})", body)

    def remove_rejected(self, rejected_id: int, *, actor: Actor) -> None:
        self._check_actor(actor)

        def body(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "DELETE FROM rejected WHERE id = ? RETURNING leaf_fingerprint",
                (self._check_id(rejected_id, "rejected chain"),),
            ).fetchone()
            if row is None:
                raise NotFound("rejected chain", rejected_id)
            self._audit(conn, actor, "rejected.remove", str(rejected_id), {"leaf": row[0]})

        self._write("removing a rejected chain", body)

    def clear_rejected(self, *, actor: Actor) -> int:
        self._check_actor(actor)

        def body(conn: sqlite3.Connection) -> int:
            removed = conn.execute("DELETE FROM rejected").rowcount
            if removed:
                self._audit(conn, actor, "rejected.clear", "rejected", {"removed": removed})
            return removed

        return self._write("clearing the rejected list", body)

    # -- revocation information ---------------------------------------------------------

    def _read_revocation_facts(self, conn: sqlite3.Connection) -> RevocationFacts:
        rows = conn.execute("SELECT key, kind, source, url, fingerprint FROM revocation").fetchall()
        if not rows:
            self._revocation_cache.clear()
            return EMPTY_FACTS
        cache = self._revocation_cache
        parsed: list[Crl | OcspResponse] = []
        for key, kind, source, url, fingerprint in rows:
            item = cache.get(fingerprint)
            if item is None:
                (der,) = conn.execute("SELECT der FROM revocation WHERE key = ?", (key,)).fetchone()
                try:
                    item = read_source(
                        bytes(der), kind=SourceKind(kind), source=RevocationSource(source), url=url
                    )
                except (InputError, ValueError):
                    continue  # checked when stored; unreadable now means no information
            parsed.append(item)
        self._revocation_cache = {p.fingerprint: p for p in parsed}
        return RevocationFacts.build(
            crls=[p for p in parsed if isinstance(p, Crl)],
            ocsp=[p for p in parsed if isinstance(p, OcspResponse)],
        )

    def put_revocation(
        self,
        der: bytes,
        *,
        kind: SourceKind,
        source: RevocationSource,
        url: str | None,
        actor: Actor | None = None,
    ) -> CachedSource:
        """Store (or replace) one piece of revocation information; the next snapshot uses it.

        A fetched CRL is keyed by its URL, a fetched OCSP answer by its URL and the
        serial it answers for; an uploaded CRL by its issuer, so a newer upload replaces
        the older one. Unreadable or oversized data raises
        (:class:`ParseError`, :class:`InputTooLarge`) and changes nothing. Uploads
        (``actor`` given) are audited; the gateway's own fetches are not.
        """
        parsed = read_source(der, kind=kind, source=source, url=url)
        if isinstance(parsed, Crl) and source is RevocationSource.UPLOADED:
            key = f"uploaded:{parsed.issuer}"
        elif isinstance(parsed, OcspResponse) and url and parsed.singles:
            # One responder answers for many certificates: each keeps its own answer.
            key = f"{url}#{parsed.singles[0].serial:x}"
        elif url:
            key = url
        else:
            raise ValidationError("url", "Fetched revocation information needs its URL.")
        now = self._now()

        def body(conn: sqlite3.Connection) -> CachedSource:
            row = conn.execute(
                "SELECT fingerprint FROM revocation WHERE key = ?", (key,)
            ).fetchone()
            if row is None or row[0] != parsed.fingerprint:
                conn.execute(
                    "INSERT INTO revocation (key, kind, source, url, der, fingerprint, fetched_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                    "kind = excluded.kind, source = excluded.source, url = excluded.url, "
                    "der = excluded.der, fingerprint = excluded.fingerprint, "
                    "fetched_at = excluded.fetched_at",
                    (key, kind.value, source.value, url, parsed.der, parsed.fingerprint, _ts(now)),
                )
                self._bump(conn)
            else:  # the same bytes again: only the time they were last fetched changes
                conn.execute("UPDATE revocation SET fetched_at = ? WHERE key = ?", (_ts(now), key))
            (count,) = conn.execute("SELECT COUNT(*) FROM revocation").fetchone()
            if count > MAX_REVOCATION_SOURCES:
                conn.execute(
                    "DELETE FROM revocation WHERE key IN (SELECT key FROM revocation "
                    "ORDER BY source = 'uploaded', fetched_at LIMIT ?)",
                    (count - MAX_REVOCATION_SOURCES,),
                )
            if actor is not None:
                self._audit(
                    conn,
                    actor,
                    "revocation.add",
                    key,
                    {"kind": kind.value, "fingerprint": parsed.fingerprint},
                    now,
                )
            return describe_source(parsed, key=key, fetched_at=now)

        return self._write("storing revocation information", body)

    def list_revocation(self) -> tuple[CachedSource, ...]:
        """Every cached revocation source, soonest next update first."""

        def body(conn: sqlite3.Connection) -> tuple[CachedSource, ...]:
            out: list[CachedSource] = []
            for key, kind, source, url, der, fetched_at in conn.execute(
                "SELECT key, kind, source, url, der, fetched_at FROM revocation"
            ):
                try:
                    parsed = read_source(
                        bytes(der), kind=SourceKind(kind), source=RevocationSource(source), url=url
                    )
                except (InputError, ValueError):
                    continue
                out.append(describe_source(parsed, key=key, fetched_at=_dt(fetched_at)))
            far = datetime.max.replace(tzinfo=UTC)
            return tuple(sorted(out, key=lambda s: (s.next_update or far, s.key)))

        return self._read("listing revocation information", body)

    def remove_uploaded_crl(self, fingerprint: str, *, actor: Actor) -> CachedSource:
        """Remove the uploaded CRL with this SHA-256 fingerprint; audited. Its issuer's
        certificates are then judged without it (fetched information still counts)."""
        self._check_actor(actor)
        fp = normalize_fingerprint(fingerprint)

        def body(conn: sqlite3.Connection) -> CachedSource:
            row = conn.execute(
                "SELECT key, kind, source, url, der, fetched_at FROM revocation "
                "WHERE source = ? AND fingerprint = ?",
                (RevocationSource.UPLOADED.value, fp),
            ).fetchone()
            if row is None:
                raise NotFound("uploaded CRL", fp)
            key, kind, source, url, der, fetched_at = row
            removed = describe_source(
                read_source(
                    bytes(der), kind=SourceKind(kind), source=RevocationSource(source), url=url
                ),
                key=key,
                fetched_at=_dt(fetched_at),
            )
            conn.execute("DELETE FROM revocation WHERE key = ?", (key,))
            self._bump(conn)
            self._audit(
                conn,
                actor,
                "revocation.remove",
                key,
                {"kind": kind, "fingerprint": fp},
                self._now(),
            )
            return removed

        return self._write("removing an uploaded CRL", body)

    def remove_revocation(self, key: str, *, actor: Actor) -> None:
        """Remove one cached or uploaded source; audited."""

        def body(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM revocation WHERE key = ?", (key,)).rowcount == 0:
                raise NotFound("revocation source", key)
            self._bump(conn)
            self._audit(conn, actor, "revocation.remove", key, {}, self._now())

        self._write("removing revocation information", body)

    # -- settings ---------------------------------------------------------------------------

    def get_settings(self) -> Settings:
        return self._read("reading the settings", self._read_settings)

    def update_settings(self, changes: Mapping[str, object], *, actor: Actor) -> Settings:
        """Change some settings. Unknown names, wrong types, credentials longer than 74
        characters or with control characters raise ValidationError naming the field,
        and nothing changes. A change to what is already set writes nothing. The audit
        event names the changed settings and, for the password, says only "changed"."""
        self._check_actor(actor)
        if not isinstance(changes, Mapping):
            raise ValidationError("settings", "The settings must be given as names and values.")
        apply_settings_changes(Settings(), changes)  # refuse bad input before locking

        def body(conn: sqlite3.Connection) -> Settings:
            current = self._read_settings(conn)
            updated, diff = apply_settings_changes(current, changes)
            if not diff:
                return current
            conn.executemany(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [(name, json.dumps(getattr(updated, name))) for name in diff],
            )
            self._bump(conn)
            self._audit(conn, actor, "settings.update", ",".join(sorted(diff)), {"changed": diff})
            return updated

        return self._write("changing the settings", body)

    def provision(
        self,
        changes: Mapping[str, object],
        certificates: Sequence[Certificate],
        *,
        actor: Actor,
        source: TrustSource = TrustSource.PROVISIONED,
    ) -> ProvisionOutcome:
        """Change settings and trust certificates in one transaction.

        Everything is checked before the write lock is taken; a crash or an error
        leaves the store as it was. Settings already at the asked value and
        certificates already trusted write nothing; when nothing changes, nothing is
        audited and the handshake view's generation stays put. The audit events are the
        usual ``settings.update`` (the password only as "changed") and ``trust.add``.
        """
        self._check_actor(actor)
        if not isinstance(changes, Mapping):
            raise ValidationError("settings", "The settings must be given as names and values.")
        apply_settings_changes(Settings(), changes)
        for cert in certificates:
            if not isinstance(cert, Certificate):
                raise ValidationError("certificates", "Only parsed certificates can be trusted.")
        source = TrustSource(source)

        def body(conn: sqlite3.Connection) -> ProvisionOutcome:
            now = self._now()
            current = self._read_settings(conn)
            updated, diff = apply_settings_changes(current, changes)
            if diff:
                conn.executemany(
                    "INSERT INTO settings (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [(name, json.dumps(getattr(updated, name))) for name in diff],
                )
                self._audit(
                    conn, actor, "settings.update", ",".join(sorted(diff)), {"changed": diff}, now
                )
            added = self._insert_trust(conn, certificates, source, None, now)
            if added.added:
                self._audit(
                    conn,
                    actor,
                    "trust.add",
                    added.added[0].fingerprint
                    if len(added.added) == 1
                    else f"{len(added.added)} certificates",
                    {
                        "source": source.value,
                        "added": [c.fingerprint for c in added.added],
                        "already_present": len(added.already_present),
                    },
                    now,
                )
            if diff or added.added:
                self._bump(conn)
            return ProvisionOutcome(
                settings_before=current,
                settings=updated,
                changed=tuple(sorted(diff)),
                trust=added,
            )

        return self._write("applying a provisioning document", body)

    # -- device identity ----------------------------------------------------------------------

    def device_identity(self) -> DeviceIdentity | None:
        row = self._read(
            "reading the device identity",
            lambda conn: conn.execute(
                "SELECT kind, chain, private_key_pem, created_at FROM device_identity WHERE id = 1"
            ).fetchone(),
        )
        if row is None:
            return None
        kind, chain, key_pem, created_at = row
        return DeviceIdentity(
            kind=kind,
            chain=self._chain(chain),
            private_key_pem=bytes(key_pem),
            created_at=_dt(created_at),
        )

    def set_device_identity(self, identity: DeviceIdentity, *, actor: Actor, action: str) -> None:
        """Replace the identity (chain and key together, in one transaction).

        ``action`` names what happened for the audit log (``create``, ``renew``,
        ``install``, ``clear``...; written as ``device.<action>``). The key must belong
        to the chain's first certificate.
        """
        self._check_actor(actor)
        if not isinstance(identity, DeviceIdentity):
            raise ValidationError("identity", "The device identity must be a DeviceIdentity.")
        if identity.kind not in DEVICE_KINDS:
            raise ValidationError(
                "kind",
                f"The device identity kind must be standard or installed, not {identity.kind!r}.",
            )
        if not identity.chain:
            raise ValidationError("chain", "The device identity needs at least one certificate.")
        _private_key_matches(
            identity.private_key_pem,
            _public_key_der(identity.certificate.x509.public_key()),
            field="private_key",
        )
        audit_action = self._audit_action(
            action if action.startswith("device.") else f"device.{action}"
        )
        created_at = validate_aware(identity.created_at, field="created_at")
        self._remember(*identity.chain)

        def body(conn: sqlite3.Connection) -> None:
            replaced = conn.execute("SELECT 1 FROM device_identity WHERE id = 1").fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO device_identity "
                "(id, kind, chain, private_key_pem, created_at) VALUES (1, ?, ?, ?, ?)",
                (
                    identity.kind,
                    pack_chain(c.der for c in identity.chain),
                    identity.private_key_pem,
                    _ts(created_at),
                ),
            )
            self._audit(
                conn,
                actor,
                audit_action,
                identity.certificate.fingerprint,
                {
                    "kind": identity.kind,
                    "subject": identity.certificate.subject,
                    "chain": [c.fingerprint for c in identity.chain],
                    "replaced": replaced is not None,
                },
            )

        self._write("saving the device identity", body)

    def pending_csr(self) -> PendingCsr | None:
        row = self._read(
            "reading the signing request",
            lambda conn: conn.execute(
                "SELECT csr_pem, private_key_pem, key_spec, created_at FROM pending_csr "
                "WHERE id = 1"
            ).fetchone(),
        )
        if row is None:
            return None
        csr_pem, key_pem, key_spec, created_at = row
        return PendingCsr(
            csr_pem=bytes(csr_pem),
            private_key_pem=bytes(key_pem),
            key_spec=key_spec,
            created_at=_dt(created_at),
        )

    def set_pending_csr(self, csr: PendingCsr | None, *, actor: Actor) -> None:
        """Store the pending signing request (replacing one that exists) or, with
        ``None``, discard it and its key; discarding when none is pending raises
        :class:`Conflict`."""
        self._check_actor(actor)
        if csr is None:

            def remove(conn: sqlite3.Connection) -> None:
                if not conn.execute("DELETE FROM pending_csr WHERE id = 1").rowcount:
                    raise Conflict("There is no pending signing request to remove.")
                self._audit(conn, actor, "csr.remove", "csr", {})

            self._write("removing the signing request", remove)
            return
        if not isinstance(csr, PendingCsr):
            raise ValidationError("csr", "The signing request must be a PendingCsr.")
        try:
            request = x509.load_pem_x509_csr(csr.csr_pem)
            request_key = request.public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ValidationError(
                "csr_pem", "The signing request is not a readable PEM CSR."
            ) from exc
        _private_key_matches(csr.private_key_pem, _public_key_der(request_key), field="private_key")
        created_at = validate_aware(csr.created_at, field="created_at")
        subject = request.subject.rfc4514_string()

        def store(conn: sqlite3.Connection) -> None:
            replaced = conn.execute("SELECT 1 FROM pending_csr WHERE id = 1").fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO pending_csr "
                "(id, csr_pem, private_key_pem, key_spec, created_at) VALUES (1, ?, ?, ?, ?)",
                (csr.csr_pem, csr.private_key_pem, csr.key_spec, _ts(created_at)),
            )
            self._audit(
                conn,
                actor,
                "csr.create",
                "csr",
                {"subject": subject, "key_spec": csr.key_spec, "replaced": replaced is not None},
            )

        self._write("saving the signing request", store)

    # -- audit, expiry ------------------------------------------------------------------------

    def audit(self, *, limit: int = 50, before_id: int | None = None) -> tuple[AuditEvent, ...]:
        """Newest first; page with ``before_id`` = the last id of the previous page."""
        if type(limit) is not int or not 1 <= limit <= 1000:
            raise ValidationError("limit", "The page size must be from 1 to 1000.")
        if before_id is not None and type(before_id) is not int:
            raise ValidationError("before_id", "before_id must be an event id.")
        rows = self._read(
            "reading the audit log",
            lambda conn: conn.execute(
                "SELECT id, at, actor, interface, action, target, details FROM audit "
                "WHERE id < ? ORDER BY id DESC LIMIT ?",
                (before_id if before_id is not None else 2**63 - 1, limit),
            ).fetchall(),
        )
        return tuple(
            AuditEvent(
                id=r[0],
                at=_dt(r[1]),
                actor=r[2],
                interface=r[3],
                action=r[4],
                target=r[5],
                details=r[6],
            )
            for r in rows
        )

    @staticmethod
    def _audit_action(action: str) -> str:
        if not isinstance(action, str) or not _ACTION_RE.fullmatch(action) or len(action) > 100:
            raise ValidationError(
                "action",
                f"The audit action {action!r} must look like area.verb (e.g. device.export).",
            )
        return action

    def log_event(
        self, *, actor: Actor, action: str, target: str, details: Mapping[str, object]
    ) -> None:
        """Audit something that is not a store change (e.g. a private key export).

        ``details`` must be JSON-serialisable and must not hold secrets."""
        self._check_actor(actor)
        self._audit_action(action)
        if not isinstance(target, str) or len(target) > 500:
            raise ValidationError(
                "target", "The audit target must be text of at most 500 characters."
            )
        try:
            text = json.dumps(dict(details), sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                "details", f"The audit details are not JSON data: {exc}."
            ) from exc
        if len(text) > MAX_AUDIT_DETAILS:
            raise ValidationError(
                "details",
                f"The audit details are {len(text)} characters; at most {MAX_AUDIT_DETAILS}.",
            )
        self._write(
            "writing the audit log",
            lambda conn: self._audit(conn, actor, action, target, json.loads(text)),
        )

    def expiring(self, *, now: datetime, days: int) -> tuple[ExpiringItem, ...]:
        """Trust anchors, pinned certificates (of active pins, where the certificate is
        known) and the device certificate whose ``not_after`` falls within ``days`` of
        ``now`` and is not yet past. Already-expired trusted certificates are not
        listed here: ``list_trust(status=expired)`` is the invalid view. Soonest first."""
        now = validate_aware(now, field="now")
        if type(days) is not int or not 0 <= days <= 36500:
            raise ValidationError(
                "days", "The window must be a whole number of days from 0 to 36500."
            )
        horizon = now + timedelta(days=days)
        items: list[ExpiringItem] = []

        def add(role: str, cert: Certificate, ref: str) -> None:
            if now <= cert.not_after <= horizon:
                left = int((cert.not_after - now).total_seconds() // 86400)
                items.append(
                    ExpiringItem(
                        role=role,
                        certificate=cert,
                        not_after=cert.not_after,
                        days_left=left,
                        ref=ref,
                    )
                )

        snap = self.snapshot()
        for entry in snap.trust:
            add("trust-anchor", entry.certificate, entry.certificate.fingerprint)
        active = [p for p in snap.pins if p.is_active(now)]

        def pin_certs(conn: sqlite3.Connection) -> list[tuple[Pin, Certificate | None]]:
            return [(p, self._known_pin_certificate(conn, p)) for p in active]

        for pin, cert in self._read("reading the pins", pin_certs):
            if cert is not None:
                add("pin", cert, str(pin.id))
        identity = self.device_identity()
        if identity is not None:
            add("device", identity.certificate, "device")
        return tuple(sorted(items, key=lambda i: (i.not_after, i.role, i.ref)))

    # -- backup and restore ---------------------------------------------------------------------

    def export_backup(self, *, now: datetime, include_secrets: bool = False) -> bytes:
        """The whole trust state (trust list, pins, rejected list, settings) as one
        versioned JSON document with a checksum. The HTTP password is included only
        with ``include_secrets``. The device identity and the pending signing request
        are not part of a backup."""
        now = validate_aware(now, field="now")

        def body(conn: sqlite3.Connection) -> backup.BackupContents:
            cached = self._cached
            trust = self._read_trust(conn, cached.snapshot if cached else None)
            pins = self._read_pins(conn)
            certs: dict[int, Certificate] = {}
            for pin_id, der in conn.execute(
                "SELECT id, certificate_der FROM pins WHERE certificate_der IS NOT NULL"
            ):
                certs[pin_id] = self._certificate(der)
            rejected = [
                self._rejected(row)
                for row in conn.execute(
                    f"SELECT {_REJECTED_COLUMNS} FROM rejected ORDER BY id"  # noqa: S608
                )
            ]
            return backup.BackupContents(
                created_at=now,
                trust=tuple(trust),
                pins=tuple(pins),
                pin_certificates=certs,
                rejected=tuple(rejected),
                settings=self._read_settings(conn),
                includes_secrets=include_secrets,
            )

        contents = self._read("exporting a backup", body)
        return backup.export_document(contents)

    def import_backup(self, document: bytes, *, actor: Actor) -> RestoreSummary:
        """Replace the trust list, the pins, the rejected list and the settings with a
        backup's, all or nothing.

        The whole document is checked first (format, version, checksum, every
        certificate and value); a document that fails any check raises
        :class:`BackupError` and changes nothing. The replacement is one transaction.
        A backup without secrets keeps this store's HTTP password. The device identity
        and the pending signing request are not touched. Rejected entries beyond
        ``rejected_limit`` are dropped, oldest ``last_seen`` first.
        """
        self._check_actor(actor)
        contents = backup.parse_document(document, parse=self._parse_untrusted)
        rejected = sorted(contents.rejected, key=lambda r: (r.last_seen, r.id))
        rejected = rejected[max(0, len(rejected) - self._rejected_limit) :]

        def body(conn: sqlite3.Connection) -> RestoreSummary:
            settings = contents.settings
            if not contents.includes_secrets:
                current = self._read_settings(conn)
                settings, _ = apply_settings_changes(
                    settings, {"http_auth_password": current.http_auth_password}
                )
            conn.execute("DELETE FROM trust")
            conn.execute("DELETE FROM pins")
            conn.execute("DELETE FROM rejected")
            conn.executemany(
                "INSERT INTO trust (fingerprint, der, spki_fingerprint, kind, source, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.certificate.fingerprint,
                        e.certificate.der,
                        e.certificate.spki_fingerprint,
                        e.kind.value,
                        e.source.value,
                        _ts(e.added_at),
                    )
                    for e in contents.trust
                ],
            )
            conn.executemany(
                "INSERT INTO pins (id, decision, match, fingerprint, scope, expires_at, note, "
                "created_at, created_by, certificate_der) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        p.id,
                        p.decision.value,
                        p.match.value,
                        p.fingerprint,
                        p.scope,
                        _ts(p.expires_at) if p.expires_at else None,
                        p.note,
                        _ts(p.created_at),
                        p.created_by,
                        contents.pin_certificates[p.id].der
                        if p.id in contents.pin_certificates
                        else None,
                    )
                    for p in contents.pins
                ],
            )
            conn.executemany(
                "INSERT INTO rejected (id, chain_key, chain, leaf_fingerprint, "
                "leaf_spki_fingerprint, reasons, peer_host, peer_port, peer_transport, "
                "peer_sni, first_seen, last_seen, count, overridden, previous_der, address) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.id,
                        backup.chain_key([c.fingerprint for c in r.chain]),
                        pack_chain(c.der for c in r.chain),
                        r.leaf.fingerprint,
                        r.leaf.spki_fingerprint,
                        json.dumps([x.value for x in r.reasons]),
                        r.peer.host,
                        r.peer.port,
                        r.peer.transport.value,
                        r.peer.sni,
                        _ts(r.first_seen),
                        _ts(r.last_seen),
                        r.count,
                        int(r.overridden),
                        r.previous.der if r.previous else None,
                        r.address,
                    )
                    for r in rejected
                ],
            )
            conn.executemany(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [(name, json.dumps(getattr(settings, name))) for name in SETTING_NAMES],
            )
            self._bump(conn)
            summary = RestoreSummary(
                trust=len(contents.trust),
                pins=len(contents.pins),
                rejected=len(rejected),
                settings_restored=True,
                secrets_restored=contents.includes_secrets,
            )
            self._audit(
                conn,
                actor,
                "backup.restore",
                "backup",
                {
                    "created_at": contents.created_at.isoformat(),
                    "trust": summary.trust,
                    "pins": summary.pins,
                    "rejected": summary.rejected,
                    "secrets_restored": summary.secrets_restored,
                },
            )
            return summary

        return self._write("restoring a backup", body)

    def _parse_untrusted(self, der: bytes) -> Certificate:
        """Parse outside input, reusing a cached certificate with the same DER."""
        fp = hashlib.sha256(der).hexdigest()
        with self._cache_lock:
            cached = self._cache.get(fp)
        if cached is not None:
            return cached
        cert = parse_der(der)
        self._remember(cert)
        return cert

    # -- checks -------------------------------------------------------------------------------

    def verify(self) -> dict[str, int]:
        """Check the file and every row: SQLite's integrity check, then every
        certificate, pin, rejected entry, setting, identity and audit event must read
        back. Returns row counts; raises :class:`StorageError` naming the first fault."""

        def body(conn: sqlite3.Connection) -> dict[str, int]:
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise StorageError(
                    f"The certificate store {self._path} failed its integrity check: "
                    + "; ".join(problems[:5])
                )
            trust = conn.execute(
                "SELECT fingerprint, der, kind, source, added_at FROM trust"
            ).fetchall()
            for row in trust:
                with self._cache_lock:
                    self._cache.pop(row[0], None)  # parse from disk, not from memory
                entry = self._trust_entry(row)
                if (
                    entry.certificate.spki_fingerprint
                    != conn.execute(
                        "SELECT spki_fingerprint FROM trust WHERE fingerprint = ?", (row[0],)
                    ).fetchone()[0]
                ):
                    raise StorageError(f"Trust entry {row[0]} has a wrong public key fingerprint.")
            pins = self._read_pins(conn)
            for pin in pins:
                self._known_pin_certificate(conn, pin)
            rejected = conn.execute(f"SELECT {_REJECTED_COLUMNS} FROM rejected").fetchall()  # noqa: S608
            for row in rejected:
                self._rejected(row)
            self._read_settings(conn)
            audit = conn.execute("SELECT details FROM audit").fetchall()
            for (details,) in audit:
                json.loads(details)
            return {
                "trust": len(trust),
                "pins": len(pins),
                "rejected": len(rejected),
                "audit": len(audit),
            }

        try:
            counts = self._read("checking the store", body)
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(
                f"The certificate store {self._path} holds a damaged row: {exc}."
            ) from exc
        self.device_identity()
        self.pending_csr()
        return counts
