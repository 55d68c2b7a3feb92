"""The embedded store: the whole trust state in one SQLite file in the data directory.

:class:`SqliteStore` is the backend-free :class:`RepositoryStore` over a
:class:`SqliteBackend`; what only a file can do (its path, SQLite's integrity check) is
added here.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from certstore.certcache import CertificateCache
from certstore.errors import StorageError
from certstore.facade import (
    DEFAULT_AUDIT_LIMIT,
    DEFAULT_REJECTED_LIMIT,
    RepositoryStore,
    check_limits,
    utc_now,
)
from certstore.sqlite.codecs import REJECTED_COLUMNS, TRUST_COLUMNS
from certstore.sqlite.connection import DEFAULT_BUSY_TIMEOUT, SqliteBackend


class SqliteStore(RepositoryStore):
    """The trust state in one SQLite file; implements :class:`certstore.store.CertStore`.

    ``path`` is the database file; its directory is created (mode 0700) if missing,
    and the file is created with mode 0600 (it holds private keys). A new store is
    seeded with the builtin CA certificates and the default settings in one
    transaction. ``rejected_limit`` bounds the rejected list (oldest ``last_seen``
    evicted first), ``audit_limit`` the audit log (oldest rows dropped). ``clock``
    stamps changes (``added_at``, ``created_at``, audit times) and computes statuses.
    ``gateway`` names the gateway using it (kept on audit events and rejected chains).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rejected_limit: int = DEFAULT_REJECTED_LIMIT,
        clock: Callable[[], datetime] = utc_now,
        audit_limit: int = DEFAULT_AUDIT_LIMIT,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        gateway: str | None = None,
    ) -> None:
        check_limits(rejected_limit=rejected_limit, audit_limit=audit_limit)
        self._path = Path(path)
        certificates = CertificateCache(f"The certificate store {self._path}")
        self._sqlite = SqliteBackend(
            self._path, certificates=certificates, busy_timeout=busy_timeout
        )
        super().__init__(
            self._sqlite,
            certificates=certificates,
            rejected_limit=rejected_limit,
            clock=clock,
            audit_limit=audit_limit,
            gateway=gateway,
        )

    def __repr__(self) -> str:
        return f"SqliteStore({str(self._path)!r})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def backend(self) -> SqliteBackend:
        return self._sqlite

    def verify(self) -> dict[str, int]:
        """Check the file and every row: SQLite's integrity check, then every
        certificate, pin, rejected entry, setting, identity and audit event must read
        back. Returns row counts; raises :class:`StorageError` naming the first fault."""
        backend = self._sqlite

        def body(conn: sqlite3.Connection) -> dict[str, int]:
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise StorageError(
                    f"The certificate store {self._path} failed its integrity check: "
                    + "; ".join(problems[:5])
                )
            repos = backend.repositories(conn)
            trust = conn.execute(
                f"SELECT {TRUST_COLUMNS}, spki_fingerprint FROM trust"  # noqa: S608
            ).fetchall()
            for row in trust:
                self._certs.forget(row[0])  # parse from disk, not from memory
                entry = backend.codec.trust_entry(row[:5])
                if entry.certificate.spki_fingerprint != row[5]:
                    raise StorageError(f"Trust entry {row[0]} has a wrong public key fingerprint.")
            pins = repos.pins.all()
            for pin in pins:
                self._known_pin_certificate(repos, pin)
            rejected = conn.execute(f"SELECT {REJECTED_COLUMNS} FROM rejected").fetchall()  # noqa: S608
            for row in rejected:
                backend.codec.rejected(row)
            repos.settings.get()
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
            counts = backend.transaction("checking the store", body, write=False)
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(
                f"The certificate store {self._path} holds a damaged row: {exc}."
            ) from exc
        self.device_identity()
        self.pending_csr()
        return counts
