"""The fleet store: the trust state in a PostgreSQL database shared by several gateways.

:class:`PostgresStore` is the backend-free :class:`RepositoryStore` over a
:class:`PostgresBackend`. Shared by every gateway of the database: the trust list,
pins, settings, rejected chains, cached revocation information and the audit log. Each
gateway's own: its device identity and pending signing request (keyed by
``gateway``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from certstore.certcache import CertificateCache
from certstore.facade import (
    DEFAULT_AUDIT_LIMIT,
    DEFAULT_REJECTED_LIMIT,
    RepositoryStore,
    check_limits,
    utc_now,
)
from certstore.postgres.connection import PostgresBackend, redacted


class PostgresStore(RepositoryStore):
    """The trust state in the PostgreSQL database at ``url``; implements
    :class:`certstore.store.CertStore`. A new database is given the schema and seeded
    (builtin CA certificates, default settings) in one transaction. With ``listen``, a
    change committed anywhere rebuilds this store's snapshot within moments (see
    :mod:`certstore.postgres.connection`)."""

    def __init__(
        self,
        url: str,
        *,
        gateway: str,
        rejected_limit: int = DEFAULT_REJECTED_LIMIT,
        clock: Callable[[], datetime] = utc_now,
        audit_limit: int = DEFAULT_AUDIT_LIMIT,
        listen: bool = True,
    ) -> None:
        check_limits(rejected_limit=rejected_limit, audit_limit=audit_limit)
        self._url = url
        certificates = CertificateCache(f"The certificate store {redacted(url)}")
        self._postgres = PostgresBackend(
            url, certificates=certificates, gateway=gateway, listen=listen
        )
        super().__init__(
            self._postgres,
            certificates=certificates,
            rejected_limit=rejected_limit,
            clock=clock,
            audit_limit=audit_limit,
            gateway=gateway,
        )

        # A notification rebuilds the snapshot on the listener's thread: the next
        # handshake finds it ready instead of rebuilding it itself.
        self._postgres.on_change(self.snapshot)

    def __repr__(self) -> str:
        return f"PostgresStore({redacted(self._url)!r})"

    @property
    def url(self) -> str:
        return self._url

    @property
    def backend(self) -> PostgresBackend:
        return self._postgres
