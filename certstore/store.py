"""The store interface: what the gateway, the admin endpoint and the CLI may ask of the
persisted trust state. :class:`certstore.facade.RepositoryStore` implements it once over
the repositories of a backend (:mod:`certstore.repositories`); the embedded one is
:class:`certstore.sqlite.SqliteStore`. A server-backed backend is another set of
repositories behind the same facade.

Every mutating call is one transaction and writes one audit event; a call that raises
changes nothing. All calls are synchronous: asyncio code runs them through
``asyncio.to_thread`` (the connector only reads :meth:`CertStore.snapshot`, which is
served from memory).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from certstore.model import (
    Actor,
    AddResult,
    AuditEvent,
    Certificate,
    Peer,
    Pin,
    PinDecision,
    PinMatch,
    RejectedChain,
    Settings,
    TrustEntry,
    TrustKind,
    TrustSource,
    Verdict,
)
from certstore.revocation import CachedSource, RevocationSource, SourceKind
from certstore.snapshot import TrustSnapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class PinRequest:
    """A pin to create. ``scope`` is None (any peer), ``host`` or ``host:port``."""

    decision: PinDecision
    match: PinMatch
    fingerprint: str
    scope: str | None = None
    expires_at: datetime | None = None
    note: str = ""
    # The certificate the pin was made from, when known (an upload, a rejected chain):
    # kept beside the pin so it can be shown and its expiry watched.
    certificate: Certificate | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceIdentity:
    """The device's own certificate chain (leaf first) and its private key."""

    kind: str  # "standard" (generated) or "installed" (uploaded by an admin)
    chain: tuple[Certificate, ...]
    private_key_pem: bytes = field(repr=False)  # PKCS#8 PEM, unencrypted; never logged
    created_at: datetime

    @property
    def certificate(self) -> Certificate:
        return self.chain[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingCsr:
    """The one pending signing request and the private key it was made for."""

    csr_pem: bytes
    private_key_pem: bytes = field(repr=False)
    key_spec: str  # e.g. "ec-p256", "rsa-2048", "reuse"
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiringItem:
    """A certificate that expires within the asked window (expiry watch)."""

    role: str  # "trust-anchor", "pin", "device"
    certificate: Certificate
    not_after: datetime
    days_left: int
    ref: str  # fingerprint, pin id, or "device"


@dataclass(frozen=True, slots=True, kw_only=True)
class PinOrigin:
    """Where a pin came from, as far as the store still knows it."""

    certificate: Certificate | None  # the certificate it was made from, when known
    interface: str | None  # of the audit event that created it, while still logged


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreSummary:
    trust: int
    pins: int
    rejected: int
    settings_restored: bool
    secrets_restored: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvisionOutcome:
    """What :meth:`CertStore.provision` changed: the settings before and after (``changed``
    names the settings that differ) and the certificates added or already trusted."""

    settings_before: Settings
    settings: Settings
    changed: tuple[str, ...]
    trust: AddResult

    @property
    def changed_anything(self) -> bool:
        return bool(self.changed or self.trust.added)


class CertStore(Protocol):
    """The trust state, persisted. Implementations must be safe for several processes."""

    # -- the view every handshake decides against ---------------------------------
    def snapshot(self) -> TrustSnapshot:
        """The current state; rebuilt only when something changed since the last call
        (in this process or another one). Cheap when nothing changed."""
        ...

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
        """Apply a verdict's side effects: record an untrusted or overridden chain in the
        rejected list (returns it), or create the trust-on-first-use pin (returns it).
        ``actor`` is who made the connection (default: the gateway), for the audit log;
        ``address`` the ``host:port`` dialled, kept beside the identity ``peer``."""
        ...

    # -- trust list ------------------------------------------------------------------
    def list_trust(self) -> tuple[TrustEntry, ...]: ...
    def get_trust(self, fingerprint: str) -> TrustEntry: ...
    def add_trust(
        self,
        certificates: Sequence[Certificate],
        *,
        source: TrustSource,
        actor: Actor,
        kind: TrustKind | None = None,
    ) -> AddResult:
        """Add certificates; ``kind`` defaults to ``ca`` for CA certificates, else ``server``."""
        ...

    def remove_trust(self, fingerprint: str, *, actor: Actor) -> TrustEntry: ...
    def clear_trust(self, *, actor: Actor) -> int: ...
    def restore_defaults(self, *, actor: Actor) -> AddResult: ...

    # -- pins ------------------------------------------------------------------------
    def list_pins(self) -> tuple[Pin, ...]: ...
    def get_pin(self, pin_id: int) -> Pin: ...
    def add_pin(self, request: PinRequest, *, actor: Actor) -> Pin: ...
    def remove_pin(self, pin_id: int, *, actor: Actor) -> Pin: ...
    def pin_origins(self) -> Mapping[int, PinOrigin]:
        """Every pin's certificate and creating interface, by pin id (for display)."""
        ...

    # -- rejected chains ---------------------------------------------------------------
    def list_rejected(self) -> tuple[RejectedChain, ...]:
        """Newest ``last_seen`` first."""
        ...

    def get_rejected(self, rejected_id: int) -> RejectedChain: ...
    def trust_rejected(
        self, rejected_id: int, fingerprints: Sequence[str], *, actor: Actor
    ) -> AddResult:
        """Trust the chosen certificates of the chain and drop the chain (innovaphone)."""
        ...

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
        """Accept or reject the chain's leaf (Gigaset); an accepted chain leaves the list."""
        ...

    def remove_rejected(self, rejected_id: int, *, actor: Actor) -> None: ...
    def clear_rejected(self, *, actor: Actor) -> int: ...

    # -- settings --------------------------------------------------------------------
    def get_settings(self) -> Settings: ...
    def update_settings(self, changes: Mapping[str, object], *, actor: Actor) -> Settings:
        """Change some settings; unknown names and wrong types raise ValidationError
        naming the field, and nothing changes."""
        ...

    def provision(
        self,
        changes: Mapping[str, object],
        certificates: Sequence[Certificate],
        *,
        actor: Actor,
        source: TrustSource = TrustSource.PROVISIONED,
    ) -> ProvisionOutcome:
        """Change settings and trust certificates in one transaction (a provisioning
        document): bad input raises ValidationError and nothing changes; what is already
        so writes nothing and audits nothing."""
        ...

    # -- device identity ---------------------------------------------------------------
    def device_identity(self) -> DeviceIdentity | None: ...
    def set_device_identity(self, identity: DeviceIdentity, *, actor: Actor, action: str) -> None:
        """Replace the identity (certificate chain and key together, atomically)."""
        ...

    def pending_csr(self) -> PendingCsr | None: ...
    def set_pending_csr(self, csr: PendingCsr | None, *, actor: Actor) -> None: ...

    # -- audit, expiry, backup -------------------------------------------------------------
    def audit(self, *, limit: int = 50, before_id: int | None = None) -> tuple[AuditEvent, ...]:
        """Newest first; page with ``before_id`` = the last id of the previous page."""
        ...

    def log_event(
        self, *, actor: Actor, action: str, target: str, details: Mapping[str, object]
    ) -> None:
        """Audit something that is not a store change (e.g. a private key export)."""
        ...

    # -- revocation information (fetched or uploaded CRLs, OCSP answers) --
    def put_revocation(
        self,
        der: bytes,
        *,
        kind: SourceKind,
        source: RevocationSource,
        url: str | None,
        actor: Actor | None = None,
    ) -> CachedSource: ...
    def list_revocation(self) -> tuple[CachedSource, ...]: ...
    def remove_revocation(self, key: str, *, actor: Actor) -> None: ...
    def remove_uploaded_crl(self, fingerprint: str, *, actor: Actor) -> CachedSource: ...

    def expiring(self, *, now: datetime, days: int) -> tuple[ExpiringItem, ...]: ...
    def export_backup(self, *, now: datetime, include_secrets: bool = False) -> bytes: ...
    def import_backup(self, document: bytes, *, actor: Actor) -> RestoreSummary:
        """All or nothing: a document that fails its checksum or any check changes nothing."""
        ...

    def close(self) -> None: ...
