"""The SQLite backend: the store file, its connections, transactions and migrations.

Durability and concurrency
    The file is in WAL mode with ``synchronous=FULL``: a commit is on disk when the call
    returns (``NORMAL`` may lose the last commits on power loss). Every write runs in
    one ``BEGIN IMMEDIATE`` transaction; a crash or ``kill -9`` at any moment leaves the
    previous or the next state. ``BEGIN IMMEDIATE`` takes the write lock up front, so
    two writers (the gateway and the CLI, two processes) queue on SQLite's busy handler
    instead of failing half-way; a writer that still finds the lock held after
    ``busy_timeout`` retries within a bound, then raises :class:`StorageError`.

Threads
    One connection per thread (``threading.local``). The gateway calls the store from
    the event loop (``snapshot()``) and from ``asyncio.to_thread`` workers (writes).
    With a shared connection behind a lock, a handshake on the event loop would wait
    for a worker that is itself waiting for another process's write lock; with a
    connection per thread, WAL readers never wait for writers, and SQLite does the
    serialising. Connections of threads that have ended are closed when the next
    thread opens one; :meth:`SqliteBackend.close` closes them all.

Files
    The data directory is created with mode 0700, the file with mode 0600 (it holds
    private keys); files left too open are tightened. Before an older schema is
    migrated, a complete copy of the file is written next to it.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from certstore.certcache import CertificateCache
from certstore.errors import StorageError
from certstore.repositories import SchemaHooks
from certstore.sqlite import schema
from certstore.sqlite.codecs import RowCodec, ts
from certstore.sqlite.repositories import SqliteRepositories

T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT = 5.0  # seconds SQLite's busy handler waits for a lock, per attempt
BUSY_ATTEMPTS = 3
WAL_SIZE_LIMIT = 8 * 1024 * 1024

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


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


class SqliteBackend:
    """One SQLite store file; implements :class:`certstore.repositories.Backend`."""

    def __init__(
        self,
        path: Path,
        *,
        certificates: CertificateCache,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self.codec = RowCodec(certificates, self.where)
        self._local = threading.local()
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        self._closed = False

    @property
    def where(self) -> str:
        return f"The certificate store {self.path}"

    # -- files and connections ------------------------------------------------------------

    def _prepare_files(self) -> None:
        parent = self.path.parent
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
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StorageError(
                f"The certificate store {self.path} could not be created ({exc.strerror}); "
                "check that the data directory is writable."
            ) from exc
        else:
            os.close(fd)
        # SQLite gives the -wal and -shm files the mode of the database file. Tighten
        # files left too open (e.g. copied in by hand): they hold private keys.
        for name in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
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
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE / COMMIT
                check_same_thread=False,  # close() may run on another thread
            )
        except sqlite3.Error as exc:
            raise self.storage_error(exc, "opening the store") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
            # Give the disk back after a big transaction (a restore) has been checkpointed.
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        except sqlite3.Error as exc:
            conn.close()
            raise self.storage_error(exc, "opening the store") from exc
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        if self._closed:
            raise StorageError(f"The certificate store {self.path} was closed; open it again.")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._conns_lock:
            if self._closed:
                raise StorageError(f"The certificate store {self.path} was closed; open it again.")
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

    def storage_error(self, exc: sqlite3.Error, what: str) -> StorageError:
        """An SQLite error as a sentence the operator can act on."""
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        where = self.where
        if primary == _SQLITE_FULL:
            message = (
                f"The disk holding the certificate store {self.path} is full: {what} was "
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

    # -- transactions ---------------------------------------------------------------------

    def transaction(self, what: str, body: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """Run ``body`` in one transaction (``BEGIN IMMEDIATE`` for writes).

        A busy database is retried (SQLite's busy handler already waited
        ``busy_timeout`` each time). Any error rolls back; sqlite errors become
        :class:`StorageError` with a sentence, store errors pass through unchanged.
        """
        conn = self.connection()
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
                if is_busy(exc) and attempt < BUSY_ATTEMPTS:
                    time.sleep(random.uniform(0.01, 0.05))
                    continue
                raise self.storage_error(exc, what) from exc

    def repositories(self, conn: sqlite3.Connection) -> SqliteRepositories:
        return SqliteRepositories(conn, self.codec)

    def read(self, what: str, body: Callable[[SqliteRepositories], T]) -> T:
        return self.transaction(what, lambda conn: body(self.repositories(conn)), write=False)

    def write(self, what: str, body: Callable[[SqliteRepositories], T]) -> T:
        return self.transaction(what, lambda conn: body(self.repositories(conn)), write=True)

    def generation(self) -> int:
        """``meta.generation`` in one single-row query outside a transaction (a WAL
        reader never waits), or in a read transaction when the file was busy."""
        query = "SELECT generation FROM meta WHERE id = 1"
        conn = self.connection()
        try:
            row = conn.execute(query).fetchone()
        except sqlite3.Error as exc:
            if not is_busy(exc):
                raise self.storage_error(exc, "reading the store") from exc
            row = self.transaction(
                "reading the store", lambda c: c.execute(query).fetchone(), write=False
            )
        if row is None:
            raise StorageError(f"The certificate store {self.path} has lost its meta row.")
        return int(row[0])

    # -- schema ---------------------------------------------------------------------------

    def open(self, hooks: SchemaHooks, now: Callable[[], datetime]) -> None:
        """Create the files, switch to WAL, and bring the schema to
        :data:`schema.SCHEMA_VERSION` (copying an older store first)."""
        self._prepare_files()
        conn = self.connection()
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as exc:
            raise self.storage_error(exc, "opening the store") from exc
        self._refuse_newer(version)
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            try:
                (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
                break
            except sqlite3.Error as exc:
                if is_busy(exc) and attempt < BUSY_ATTEMPTS:
                    time.sleep(random.uniform(0.01, 0.05))
                    continue
                raise self.storage_error(exc, "opening the store") from exc
        if str(mode).lower() != "wal":
            raise StorageError(
                f"The certificate store {self.path} could not be switched to WAL mode "
                f"(it is in {mode} mode); put the data directory on a local file system."
            )
        if 0 < version < schema.SCHEMA_VERSION:
            self._copy_before_upgrade(conn, version, now())
        self.transaction("preparing the store", lambda c: self._migrate(c, hooks, now), write=True)

    def _copy_before_upgrade(self, conn: sqlite3.Connection, version: int, now: datetime) -> Path:
        """A complete copy of an older store (keys and secrets included, mode 0600) next to
        it, made before its schema is migrated: the way back if an upgrade goes wrong."""
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.schema-v{version}-{stamp}.bak")
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
        if version > schema.SCHEMA_VERSION:
            raise StorageError(
                f"The certificate store {self.path} has schema version {version}, written "
                f"by a newer sipsgate; this one understands version {schema.SCHEMA_VERSION}. "
                "Upgrade sipsgate, or restore a backup made by this version."
            )

    def _migrate(
        self, conn: sqlite3.Connection, hooks: SchemaHooks, now: Callable[[], datetime]
    ) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        self._refuse_newer(version)
        current = schema.SCHEMA_VERSION
        if version == current:
            return
        for statements in schema.MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        at = now()
        repos = self.repositories(conn)
        if version == 0:
            conn.execute(
                "INSERT INTO meta (id, generation, created_at) VALUES (1, 1, ?)", (ts(at),)
            )
            hooks.created(repos, schema_version=current, target=self.path.name, at=at)
        else:
            hooks.upgraded(
                repos, from_version=version, to_version=current, target=self.path.name, at=at
            )
        conn.execute(f"PRAGMA user_version = {current}")
