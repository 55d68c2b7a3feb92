"""The production trust policy: the certificate store and the pure decision.

``StoreTrustPolicy`` turns what the engine hands over (DER bytes, a ``TlsTarget``)
into certstore values, asks ``decide`` against the store's snapshot, and records
through ``store.record_handshake``. Parsed certificates are cached by their DER, so a
peer seen again costs a dictionary look-up instead of a parse.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from certstore import notation
from certstore.errors import InputError
from certstore.model import Actor, Certificate, Peer, Rule, Transport, Verdict
from certstore.revocation import OcspResponse, RevocationSource, parse_ocsp
from certstore.snapshot import TrustSnapshot
from certstore.store import DeviceIdentity
from certstore.x509 import parse_der
from gateway.tls.policy import ClientIdentity, TlsTarget, TrustCheck

DecideFn = Callable[..., Verdict]  # certstore.decision.decide's signature
IdentitySource = Callable[[], DeviceIdentity | None]


class HandshakeStore(Protocol):
    """The part of ``certstore.store.CertStore`` the connector uses."""

    def snapshot(self) -> TrustSnapshot: ...

    def record_handshake(
        self,
        verdict: Verdict,
        chain: Sequence[Certificate],
        peer: Peer,
        now: datetime,
        *,
        actor: Actor | None = None,
        address: str | None = None,
    ) -> object: ...


def peer_for(target: TlsTarget) -> Peer:
    """The certstore ``Peer`` of a connector target (the identity, not the dialled address)."""
    return Peer(
        host=target.host, port=target.port, transport=Transport(target.scheme), sni=target.sni
    )


def client_identity_of(identity: DeviceIdentity | None) -> ClientIdentity | None:
    if identity is None:
        return None
    return ClientIdentity(
        chain_der=tuple(c.der for c in identity.chain), private_key_pem=identity.private_key_pem
    )


class StoreTrustPolicy:
    """Decides with ``decide`` against ``store.snapshot()``; records into the store."""

    def __init__(
        self,
        store: HandshakeStore,
        *,
        decide: DecideFn,
        identity: IdentitySource | None = None,
        cache_size: int = 512,
        actor: Actor | None = None,
    ) -> None:
        self.store = store
        self._actor = actor  # who the audit log credits with recorded handshakes
        self._decide = decide
        self._identity = identity
        self._cache: OrderedDict[bytes, Certificate] = OrderedDict()
        self._cache_size = cache_size
        self._client: tuple[DeviceIdentity | None, ClientIdentity | None] = (None, None)

    def snapshot(self) -> TrustSnapshot:
        return self.store.snapshot()

    def parse(self, der: bytes) -> Certificate:
        cert = self._cache.get(der)
        if cert is None:
            cert = parse_der(der)
            self._cache[der] = cert
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(der)
        return cert

    def decide(
        self,
        chain_der: Sequence[bytes],
        target: TlsTarget,
        now: datetime,
        snapshot: TrustSnapshot,
        *,
        stapled: bytes | None = None,
    ) -> TrustCheck:
        chain = tuple(self.parse(der) for der in chain_der)
        peer = peer_for(target)
        response = self.parse_stapled(stapled) if stapled else None
        if response is None:
            verdict = self._decide(chain, peer, now, snapshot)
        else:
            verdict = self._decide(chain, peer, now, snapshot, stapled=response)
        record = verdict.should_record or verdict.rule is Rule.FIRST_USE
        return TrustCheck(
            verdict=verdict,
            chain=chain,
            peer=peer,
            record=record,
            address=notation.host_port(*target.address),
        )

    def parse_stapled(self, der: bytes) -> OcspResponse | None:
        """The stapled OCSP response, or None when it cannot be read: unreadable
        information is no information (soft-fail accepts, hard-fail reports unknown)."""
        try:
            return parse_ocsp(der, source=RevocationSource.STAPLED)
        except InputError:
            return None

    def record(self, check: TrustCheck, now: datetime) -> None:
        verdict = check.verdict
        assert isinstance(verdict, Verdict)
        self.store.record_handshake(
            verdict, check.chain, check.peer, now, actor=self._actor, address=check.address
        )

    def client_identity(self) -> ClientIdentity | None:
        if self._identity is None:
            return None
        device = self._identity()
        cached_device, cached = self._client
        if device is cached_device:
            return cached
        client = client_identity_of(device)
        self._client = (device, client)
        return client

    def close_flows_on_revoke(self, snapshot: TrustSnapshot) -> bool:
        return snapshot.settings.close_flows_on_revoke
