"""The fleet store: the trust state in a PostgreSQL database shared by several gateways.

:class:`PostgresStore` is the backend-free :class:`RepositoryStore` over a
:class:`PostgresBackend`. Shared by every gateway of the database: the trust list,
pins, settings, rejected chains, cached revocation information and the audit log. Each
gateway's own: its device identity and pending signing request (keyed by
``gateway``).

Fail static: while the database cannot be reached, :meth:`PostgresStore.snapshot`
answers the last snapshot it built and :meth:`PostgresStore.device_identity` the last
identity it read, at once, so handshakes go on deciding; writes raise
:class:`StoreUnreachable`. :meth:`PostgresStore.unreachable_note` says so in a sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from certstore.certcache import CertificateCache
from certstore.errors import StoreUnreachable
from certstore.facade import (
    DEFAULT_AUDIT_LIMIT,
    DEFAULT_REJECTED_LIMIT,
    RepositoryStore,
    check_limits,
    utc_now,
)
from certstore.postgres.connection import PostgresBackend, redacted
from certstore.snapshot import TrustSnapshot
from certstore.store import DeviceIdentity

_UNREAD = object()  # no device identity read yet


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

        self._identity: object = _UNREAD
        # A notification rebuilds the snapshot on the listener's thread: the next
        # handshake finds it ready instead of rebuilding it itself.
        self._postgres.on_change(self.snapshot)

    def __repr__(self) -> str:
        return f"PostgresStore({redacted(self._url)!r})"

    def snapshot(self) -> TrustSnapshot:
        """The handshake view; the last one built while the database is unreachable."""
        try:
            return super().snapshot()
        except StoreUnreachable:
            cached = self._cached
            if cached is None or self._postgres.unreachable_since is None:
                raise
            return cached.snapshot

    def device_identity(self) -> DeviceIdentity | None:
        """This gateway's identity; the last one read while the database is unreachable."""
        try:
            identity = super().device_identity()
        except StoreUnreachable:
            known = self._identity
            if known is _UNREAD or self._postgres.unreachable_since is None:
                raise
            assert known is None or isinstance(known, DeviceIdentity)
            return known
        self._identity = identity
        return identity

    def unreachable_note(self) -> str | None:
        """While the database cannot be reached: a sentence saying so and which trust
        state decisions use; None while it is reachable."""
        since = self._postgres.unreachable_since
        if since is None:
            return None
        cached = self._cached
        contact = self._postgres.last_contact
        if cached is None:
            state = "no trust state has been read yet, so handshakes cannot be decided"
        else:
            read = f" last confirmed at {contact.isoformat(timespec='seconds')}" if contact else ""
            state = f"decisions use the snapshot of generation {cached.snapshot.generation}{read}"
        return (
            f"The store {redacted(self._url)} cannot be reached since "
            f"{since.isoformat(timespec='seconds')}: {state}; changes are refused until "
            "it is back."
        )

    @property
    def url(self) -> str:
        return self._url

    @property
    def backend(self) -> PostgresBackend:
        return self._postgres
