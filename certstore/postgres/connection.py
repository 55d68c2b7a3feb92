"""The PostgreSQL backend: a connection pool, transactions, the schema's migrations.

Concurrency
    Every write transaction first locks the single ``meta`` row (``SELECT ... FOR
    UPDATE``), then runs at READ COMMITTED: writers from every gateway, admin endpoint
    and CLI of the fleet queue on that lock the way SQLite writers queue on
    ``BEGIN IMMEDIATE``, and each statement after the lock sees every commit before
    it, so a read-modify-write (a rejected chain's count, the settings, first-use pins)
    never loses an update. A serialization failure or a deadlock reported by the server
    is retried a bounded number of times; what still fails is a :class:`StorageError`.
    Reads run in one REPEATABLE READ, READ ONLY transaction: a snapshot is built from
    one consistent view.

Threads
    The facade is synchronous and called from the event loop (``generation()``) and
    from worker threads; a :class:`psycopg_pool.ConnectionPool` gives each call its own
    connection, checked before use so a server restart costs one failed call at most.

Change notification
    Every write transaction sends ``NOTIFY sipsgate_store`` (delivered on commit). A
    listener thread holds one more connection with ``LISTEN sipsgate_store`` and runs
    the ``on_change`` callbacks on each notification: the store rebuilds its snapshot
    there, so the next handshake finds it ready instead of rebuilding it itself. When
    the listening connection drops it reconnects with a bounded backoff and runs the
    callbacks once more, so a change made while it was away is not missed.
    :meth:`PostgresBackend.generation` still reads the database on every call (one
    single-row query): a change committed anywhere is seen by the very next
    handshake, with or without a listener.

Fail static
    A listening backend that loses the server (the listener cannot connect again after
    its connection dropped, or a call finds it unreachable) is *unreachable* until the
    listener connects again:
    meanwhile every call fails at once with :class:`StoreUnreachable` instead of
    waiting for a pooled connection, and the store decides on its last snapshot (see
    :class:`certstore.postgres.PostgresStore`). ``store.database.unreachable`` and
    ``store.database.recovered`` are logged once per outage.

Schema
    The version is in ``schema_version``; creating or upgrading runs in one transaction
    under an advisory lock, so gateways starting together migrate once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import structlog
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from certstore.certcache import CertificateCache
from certstore.errors import StorageError, StoreUnreachable
from certstore.postgres import schema
from certstore.postgres.repositories import PostgresRepositories
from certstore.repositories import SchemaHooks
from certstore.sqlite.codecs import RowCodec, ts

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0  # seconds to open a connection or wait for one from the pool
# Seconds generation() waits for a pooled connection: it runs before every handshake,
# on the event loop, so an unreachable server must cost little there.
GENERATION_WAIT = 2.0
# libpq options of every connection: a server that went silent (a network partition,
# not a refused connection) is given up within seconds instead of TCP's minutes.
_LIBPQ: dict[str, Any] = {
    "connect_timeout": int(CONNECT_TIMEOUT),
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}
ATTEMPTS = 5  # tries of a transaction the server aborted as a serialization conflict
# Connections each store holds open, all made when it opens (a fixed pool never
# connects on a handshake's path); the listener holds one more.
POOL_SIZE = 4
CHANNEL = "sipsgate_store"  # the NOTIFY channel every write transaction signals
LISTEN_POLL = 0.5  # seconds the listener waits for a notification before checking for close
LISTEN_RETRY_MAX = 5.0  # ceiling of the listener's reconnect backoff, seconds
_log = structlog.get_logger("certstore.postgres")
# Any constant: the key of the advisory lock held while the schema is created or upgraded.
MIGRATION_LOCK = 0x5195_6A7E


def redacted(url: str) -> str:
    """The connection string as messages may show it: no password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unreadable PostgreSQL URL)"
    user = params.get("user")
    host = params.get("host") or "localhost"
    port = params.get("port")
    dbname = params.get("dbname") or ""
    return f"postgresql://{f'{user}@' if user else ''}{host}{f':{port}' if port else ''}/{dbname}"


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected)


class PostgresBackend:
    """One PostgreSQL database; implements :class:`certstore.repositories.Backend`.

    ``gateway`` names this gateway: its device identity and signing request are its
    own rows in the shared database. ``listen`` starts the change listener (a
    long-running gateway wants it; a one-shot command does not)."""

    def __init__(
        self,
        url: str,
        *,
        certificates: CertificateCache,
        gateway: str,
        pool_size: int = POOL_SIZE,
        listen: bool = True,
    ) -> None:
        self.url = url
        self._listen = listen
        self.gateway = gateway
        self.codec = RowCodec(certificates, self.where)
        self._pool_size = pool_size
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._closed = False
        self._listening = False
        self._listener: threading.Thread | None = None
        self._callbacks: list[Callable[[], object]] = []
        # Fail static: when the server was found unreachable (None: reachable), and the
        # last time a call reached it.
        self._unreachable_since: datetime | None = None
        self._last_contact: datetime | None = None
        self._state_lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"The certificate store {redacted(self.url)}"

    # -- connections ------------------------------------------------------------------------

    def connect(self) -> None:
        try:
            conninfo_to_dict(self.url)
        except psycopg.ProgrammingError as exc:
            raise StorageError(
                f"The store URL is not a valid PostgreSQL connection string ({exc}); "
                "write it as postgresql://user@host/database."
            ) from exc
        # One direct connection first: the pool would retry a refused connection until
        # its timeout and then say only that it timed out.
        try:
            psycopg.connect(self.url, **_LIBPQ).close()
        except psycopg.Error as exc:
            raise StorageError(
                f"{self.where} could not be reached ({str(exc).strip()}): check that "
                "PostgreSQL is running, the URL (host, port, user, database) and that "
                "this host may connect (pg_hba.conf)."
            ) from exc
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self.url,
            min_size=self._pool_size,
            max_size=self._pool_size,
            kwargs={"autocommit": True, **_LIBPQ},
            check=ConnectionPool.check_connection,
            timeout=CONNECT_TIMEOUT,
            name="certstore",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout as exc:
            pool.close()
            raise StorageError(
                f"{self.where} could not be reached within {CONNECT_TIMEOUT:g} s: check that "
                "PostgreSQL is running, the URL (host, port, user, database) and that "
                "this host may connect (pg_hba.conf)."
            ) from exc
        self._pool = pool

    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        if self._closed or self._pool is None:
            raise StorageError(f"{self.where} was closed; open it again.")
        return self._pool

    def close(self) -> None:
        # The listener sees the flag within LISTEN_POLL and closes its own connection;
        # it is not waited for, so closing a store stays immediate.
        self._closed = True
        self._listener = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # -- fail static ------------------------------------------------------------------------

    @property
    def unreachable_since(self) -> datetime | None:
        """When the server was found unreachable; None while it is reachable."""
        return self._unreachable_since

    @property
    def last_contact(self) -> datetime | None:
        """When a call last reached the server."""
        return self._last_contact

    def _reached(self) -> None:
        self._last_contact = datetime.now(UTC)
        if self._unreachable_since is None:
            return
        with self._state_lock:
            since, self._unreachable_since = self._unreachable_since, None
        if since is not None:
            _log.info(
                "store.database.recovered",
                store=redacted(self.url),
                unreachable_since=since.isoformat(),
            )

    def _lost(self, error: str) -> None:
        # Only a listening backend has someone (the listener) to notice the return.
        if not self._listen or self._closed:
            return
        with self._state_lock:
            if self._unreachable_since is not None:
                return
            self._unreachable_since = datetime.now(UTC)
        _log.warning(
            "store.database.unreachable",
            store=redacted(self.url),
            error=error,
            last_contact=self._last_contact.isoformat() if self._last_contact else None,
        )

    def _check_reachable(self, what: str) -> None:
        since = self._unreachable_since
        if since is not None:
            raise StoreUnreachable(
                f"{self.where} cannot be reached since {since.isoformat(timespec='seconds')}: "
                f"{what} did not happen and nothing was changed. Try again once "
                "PostgreSQL is back."
            )

    # -- change notification --------------------------------------------------------------

    def on_change(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (on the listener thread) after a change notification and
        after the listener reconnected."""
        self._callbacks.append(callback)

    @property
    def listening(self) -> bool:
        return self._listening

    def _start_listener(self) -> None:
        self._listener = threading.Thread(
            target=self._listen_forever, name="certstore-listen", daemon=True
        )
        self._listener.start()

    def _listen_forever(self) -> None:
        delay = 0.1
        while not self._closed:
            connected = False
            try:
                with psycopg.connect(self.url, autocommit=True, **_LIBPQ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    connected = True
                    self._listening = True
                    self._reached()
                    _log.info("store.listener.started", store=redacted(self.url))
                    delay = 0.1
                    self._notify_callbacks()  # anything may have changed while away
                    while not self._closed:
                        if any(True for _ in conn.notifies(timeout=LISTEN_POLL)):
                            self._notify_callbacks()
                        elif self._unreachable_since is not None:
                            # A call failed while this connection stayed up: the
                            # server is there, so refresh and decide on fresh state.
                            self._reached()
                            self._notify_callbacks()
            except psycopg.Error as exc:
                if self._closed:
                    break
                _log.warning(
                    "store.listener.lost", store=redacted(self.url), error=str(exc).strip()
                )
                # A listening connection that ends (the server restarting, or an admin
                # or an idle timeout ending that one session) says nothing yet: the
                # server is unreachable only when connecting to it fails.
                if not connected:
                    self._lost(str(exc).strip())
            finally:
                self._listening = False
            if not self._closed:
                time.sleep(delay)
                delay = 0.1 if connected else min(delay * 2, LISTEN_RETRY_MAX)

    def _notify_callbacks(self) -> None:
        for callback in self._callbacks:
            if self._closed:
                return
            try:
                callback()
            except Exception as exc:  # a refresh that failed is retried on the next change
                if not self._closed:  # closing while a refresh ran is no failure
                    _log.warning("store.refresh.failed", store=redacted(self.url), error=str(exc))

    def storage_error(self, exc: BaseException, what: str) -> StorageError:
        """A database error as a sentence the operator can act on."""
        where = self.where
        if isinstance(exc, psycopg.errors.UniqueViolation):
            message = (
                f"{where} refused {what}: it conflicts with an existing entry "
                f"({exc.diag.message_detail or exc}); nothing was changed."
            )
        elif _retryable(exc):
            message = (
                f"{where} kept conflicting with other writers: {what} did not happen. Try again."
            )
        elif isinstance(exc, psycopg.errors.InsufficientPrivilege):
            message = (
                f"{where} refused {what}: the database user lacks a privilege ({exc}). "
                "Grant it the ownership of the sipsgate database."
            )
        elif isinstance(exc, psycopg.errors.DiskFull):
            message = (
                f"The disk of the database server holding {redacted(self.url)} is full: "
                f"{what} was not saved and the store is unchanged."
            )
        elif isinstance(exc, PoolTimeout | psycopg.OperationalError):
            self._lost(str(exc).strip())
            return StoreUnreachable(
                f"{where} could not be reached: {what} did not happen and nothing was "
                f"changed ({str(exc).strip()}). Check that PostgreSQL is running and "
                "reachable, then try again."
            )
        else:
            message = f"{where} failed while {what}: {exc}."
        return StorageError(message)

    # -- transactions -----------------------------------------------------------------------

    def transaction(
        self,
        what: str,
        body: Callable[[psycopg.Connection[Any]], T],
        *,
        write: bool,
        lock: str | None = "SELECT 1 FROM meta WHERE id = 1 FOR UPDATE",
    ) -> T:
        """Run ``body`` in one transaction; a write first runs ``lock``.

        Server-side conflicts are retried; any error rolls back; database errors become
        :class:`StorageError` with a sentence, store errors pass through unchanged."""
        begin = (
            "BEGIN ISOLATION LEVEL READ COMMITTED"
            if write
            else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        )
        self._check_reachable(what)
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.pool().connection() as conn:
                    conn.execute(begin)
                    try:
                        if write and lock:
                            conn.execute(lock)
                        result = body(conn)
                        if write:
                            # Delivered to every listener when (and only if) this commits.
                            conn.execute(f"NOTIFY {CHANNEL}")
                        conn.execute("COMMIT")
                        self._reached()
                    except BaseException:
                        if not conn.closed and not conn.broken:
                            try:
                                conn.execute("ROLLBACK")
                            except psycopg.Error:
                                conn.close()
                        raise
                return result
            except (psycopg.Error, PoolTimeout) as exc:
                if _retryable(exc) and attempt < ATTEMPTS:
                    time.sleep(random.uniform(0.005, 0.05) * attempt)
                    continue
                raise self.storage_error(exc, what) from exc

    def repositories(self, conn: psycopg.Connection[Any]) -> PostgresRepositories:
        return PostgresRepositories(conn, self.codec, self.gateway)

    def read(self, what: str, body: Callable[[PostgresRepositories], T]) -> T:
        return self.transaction(what, lambda conn: body(self.repositories(conn)), write=False)

    def write(self, what: str, body: Callable[[PostgresRepositories], T]) -> T:
        return self.transaction(what, lambda conn: body(self.repositories(conn)), write=True)

    def generation(self) -> int:
        """``meta.generation`` in one single-row query (no transaction)."""
        self._check_reachable("reading the store")
        try:
            with self.pool().connection(timeout=GENERATION_WAIT) as conn:
                row = conn.execute("SELECT generation FROM meta WHERE id = 1").fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            raise self.storage_error(exc, "reading the store") from exc
        self._reached()
        if row is None:
            raise StorageError(f"{self.where} has lost its meta row.")
        return int(row[0])

    # -- schema -----------------------------------------------------------------------------

    def open(self, hooks: SchemaHooks, now: Callable[[], datetime]) -> None:
        """Connect, and create or upgrade the schema to :data:`schema.SCHEMA_VERSION`."""
        self.connect()
        self.transaction(
            "preparing the store",
            lambda conn: self._migrate(conn, hooks, now),
            write=True,
            lock=f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})",
        )
        if self._listen:
            self._start_listener()

    @staticmethod
    def version(conn: psycopg.Connection[Any]) -> int:
        """The schema version of the database (0: no sipsgate store)."""
        exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return 0
        row = conn.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
        return 0 if row is None else int(row[0])

    def _migrate(
        self, conn: psycopg.Connection[Any], hooks: SchemaHooks, now: Callable[[], datetime]
    ) -> None:
        version = self.version(conn)
        current = schema.SCHEMA_VERSION
        if version > current:
            raise StorageError(
                f"{self.where} has schema version {version}, written by a newer sipsgate; "
                f"this one understands version {current}. Upgrade sipsgate on every "
                "gateway of the fleet."
            )
        if version == current:
            return
        if version == 0 and conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]:  # type: ignore[index]
            raise StorageError(
                f"{self.where} already holds tables that are not a sipsgate store; give "
                "sipsgate a database of its own."
            )
        for statements in schema.MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        at = now()
        repos = self.repositories(conn)
        if version == 0:
            conn.execute(
                "INSERT INTO meta (id, generation, created_at) VALUES (1, 1, %s)", (ts(at),)
            )
            conn.execute("INSERT INTO schema_version (id, version) VALUES (1, %s)", (current,))
            hooks.created(repos, schema_version=current, target=redacted(self.url), at=at)
        else:
            conn.execute("UPDATE schema_version SET version = %s WHERE id = 1", (current,))
            hooks.upgraded(
                repos,
                from_version=version,
                to_version=current,
                target=redacted(self.url),
                at=at,
            )
