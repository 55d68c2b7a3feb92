"""A real store with the production trust policy and a connector over both (tests only)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from certstore.decision import decide
from certstore.model import Actor, PinDecision, PinMatch, RejectedChain, TrustKind, TrustSource
from certstore.sqlite import SqliteStore
from certstore.store import DeviceIdentity, PinRequest
from certstore.x509 import parse_der
from gateway.tls import TlsConnector
from gateway.tls.trust import StoreTrustPolicy
from tests.pki import Issued

ADMIN = Actor(name="admin", interface="cli")


@dataclass
class Env:
    """A store, the production policy over it, and a connector using both."""

    store: SqliteStore
    policy: StoreTrustPolicy
    connector: TlsConnector
    identity: list[DeviceIdentity | None] = field(default_factory=lambda: [None])

    def trust(self, *certs: Issued, kind: TrustKind | None = None) -> None:
        self.store.add_trust(
            [parse_der(c.der) for c in certs], source=TrustSource.UPLOADED, actor=ADMIN, kind=kind
        )

    def pin(
        self,
        cert: Issued,
        decision: PinDecision,
        *,
        match: PinMatch = PinMatch.CERTIFICATE,
        scope: str | None = None,
        expires_at: dt.datetime | None = None,
    ) -> None:
        fingerprint = cert.fingerprint if match is PinMatch.CERTIFICATE else cert.spki_fingerprint
        self.store.add_pin(
            PinRequest(
                decision=decision,
                match=match,
                fingerprint=fingerprint,
                scope=scope,
                expires_at=expires_at,
            ),
            actor=ADMIN,
        )

    def settings(self, **changes: object) -> None:
        self.store.update_settings(changes, actor=ADMIN)

    def rejected(self) -> tuple[RejectedChain, ...]:
        return self.store.list_rejected()


def make_env(path: Path) -> Env:
    store = SqliteStore(path)
    holder: list[DeviceIdentity | None] = [None]
    policy = StoreTrustPolicy(store, decide=decide, identity=lambda: holder[0])
    return Env(store, policy, TlsConnector(policy), holder)
