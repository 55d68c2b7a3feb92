"""Shared building blocks for the trust decision tests: a small PKI, snapshots, pins."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from certstore.model import (
    FIRST_USE_ACTOR,
    Certificate,
    Peer,
    Pin,
    PinDecision,
    PinMatch,
    Settings,
    Transport,
    TrustEntry,
    TrustKind,
    TrustSource,
)
from certstore.snapshot import TrustSnapshot
from tests.pki import CertFactory, Issued

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PKI = CertFactory(now=NOW, organization=None)
HOST = "sip.example.net"
PORT = 5061


def peer(host: str = HOST, port: int = PORT, transport: Transport = Transport.SIPS) -> Peer:
    return Peer(host=host, port=port, transport=transport)


def as_model(cert: Issued | Certificate) -> Certificate:
    return cert.model if isinstance(cert, Issued) else cert


def chain(*certs: Issued | Certificate) -> tuple[Certificate, ...]:
    return tuple(as_model(c) for c in certs)


def entry(cert: Issued | Certificate) -> TrustEntry:
    model = as_model(cert)
    return TrustEntry(
        certificate=model,
        kind=TrustKind.CA if model.is_ca or model.version == 1 else TrustKind.SERVER,
        source=TrustSource.UPLOADED,
        added_at=NOW,
    )


def make_pin(
    decision: PinDecision | str,
    cert: Issued | Certificate,
    *,
    match: PinMatch | str = PinMatch.CERTIFICATE,
    scope: str | None = None,
    expires_at: datetime | None = None,
    pin_id: int = 1,
    created_by: str = "admin",
    note: str = "",
) -> Pin:
    model = as_model(cert)
    match = PinMatch(match)
    return Pin(
        id=pin_id,
        decision=PinDecision(decision),
        match=match,
        fingerprint=model.fingerprint if match is PinMatch.CERTIFICATE else model.spki_fingerprint,
        scope=scope,
        expires_at=expires_at,
        note=note,
        created_at=NOW,
        created_by=created_by,
    )


def first_use_pin(cert: Issued | Certificate, scope: str, *, pin_id: int = 900) -> Pin:
    return make_pin(
        PinDecision.ACCEPT,
        cert,
        match=PinMatch.PUBLIC_KEY,
        scope=scope,
        pin_id=pin_id,
        created_by=FIRST_USE_ACTOR,
    )


def snapshot(
    *,
    trust: Iterable[Issued | Certificate] = (),
    pins: Sequence[Pin] = (),
    settings: Settings | None = None,
) -> TrustSnapshot:
    return TrustSnapshot.build(
        generation=1,
        settings=settings or Settings(),
        trust=[entry(c) for c in trust],
        pins=pins,
    )


class Pki:
    """A provider's PKI and a few strangers; every certificate is made on first use."""

    @functools.cached_property
    def root(self) -> Issued:
        return PKI.ca("Provider Root CA")

    @functools.cached_property
    def inter(self) -> Issued:
        return PKI.ca("Provider Issuing CA", issuer=self.root)

    @functools.cached_property
    def leaf(self) -> Issued:
        return PKI.leaf(self.inter, cn=HOST)

    @functools.cached_property
    def other_root(self) -> Issued:
        return PKI.ca("Other Root CA")

    @functools.cached_property
    def self_signed(self) -> Issued:
        return PKI.leaf(None, cn="pbx.example.net", dns=("pbx.example.net",))

    @functools.cached_property
    def self_signed_for_host(self) -> Issued:
        return PKI.leaf(None, cn=HOST + " self-signed", dns=(HOST,))
