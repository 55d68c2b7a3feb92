"""The x509-limbo testcases (tests/fixtures/limbo-core.json.gz) as sipsgate decides them.

Each SERVER testcase becomes a call of :func:`certstore.decision.decide`: the trusted
certificates are the trust list (kind ``ca`` or ``server`` as the store would file
them), the leaf and the untrusted intermediates are the chain the peer sends, accept-all
and trust on first use are off, wildcards are on (limbo's peer names follow RFC 6125),
and the transport is HTTPS. A certificate sipsgate cannot read ends the handshake, so a
testcase with one is decided as a rejection. A testcase's CRLs are read as uploaded
revocation facts and the ``revocation`` setting is ``hard-fail``: limbo, like every
strict validator given CRLs, expects a CRL that cannot be used (no CRL number, an
issuer without cRLSign) to make the status unknown, and that to fail validation.

Testcases whose extra constraints sipsgate has no way to express are skipped by the
rules of :func:`unsupported`, never by listing ids; the reviewed divergences live in
``tests/fixtures/limbo-divergences.toml``.
"""

from __future__ import annotations

import functools
import gzip
import json
import tomllib
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certstore.decision import decide
from certstore.errors import CertStoreError
from certstore.model import (
    Certificate,
    Peer,
    RevocationMode,
    Settings,
    Transport,
    TrustEntry,
    TrustKind,
    TrustSource,
    Verdict,
)
from certstore.revocation import RevocationFacts, RevocationSource, parse_crl
from certstore.snapshot import TrustSnapshot
from certstore.x509 import parse_der

FIXTURES = Path(__file__).parent / "fixtures"
LIMBO = FIXTURES / "limbo-core.json.gz"
DIVERGENCES = FIXTURES / "limbo-divergences.toml"
MAX_DIVERGENCES = 5


@functools.cache
def testcases() -> tuple[dict[str, Any], ...]:
    with gzip.open(LIMBO, "rt", encoding="utf-8") as f:
        return tuple(json.load(f)["testcases"])


def unsupported(case: dict[str, Any]) -> str:
    """Why sipsgate cannot run ``case`` as limbo means it; "" when it can."""
    if case["validation_kind"] != "SERVER":
        return "a CLIENT testcase: sipsgate decides as a TLS client about servers only"
    if case.get("max_chain_depth") is not None:
        return "sipsgate has one fixed path length limit, not one per validation"
    if case.get("signature_algorithms"):
        return "sipsgate has one set of signature algorithms, not one per validation"
    if case.get("key_usage"):
        return "sipsgate asks no key usage of a server certificate beyond its extended key usage"
    if case.get("extended_key_usage") not in ([], ["serverAuth"]):
        return "sipsgate always asks for serverAuth, and nothing else"
    name = case.get("expected_peer_name")
    if name is None or name["kind"] not in ("DNS", "IP") or case.get("expected_peer_names"):
        return "sipsgate always checks one peer identity, a DNS name or an IP address"
    return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How sipsgate decided one testcase."""

    accepted: bool
    verdict: Verdict | None  # None when a certificate could not be read
    unreadable: str = ""


def _load(pem: str) -> Certificate:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # limbo's negative serials, on purpose
        cert = x509.load_pem_x509_certificate(pem.encode())
    return parse_der(cert.public_bytes(Encoding.DER))


def validation_time(case: dict[str, Any]) -> datetime:
    if case["validation_time"]:
        return datetime.fromisoformat(case["validation_time"])
    return datetime.now(UTC)


def inputs(case: dict[str, Any]) -> tuple[tuple[Certificate, ...], Peer, datetime, TrustSnapshot]:
    """The arguments of ``decide`` for ``case``; raises CertStoreError like a handshake."""
    now = validation_time(case)
    trusted = [_load(p) for p in case["trusted_certs"]]
    chain = (_load(case["peer_certificate"]), *(_load(p) for p in case["untrusted_intermediates"]))
    crls = [parse_crl(p.encode(), source=RevocationSource.UPLOADED) for p in case.get("crls") or ()]
    mode = RevocationMode.HARD_FAIL if crls else RevocationMode.SOFT_FAIL
    snapshot = TrustSnapshot.build(
        generation=1,
        settings=Settings(allow_wildcards=True, revocation=mode),
        revocation=RevocationFacts.build(crls=crls),
        trust=[
            TrustEntry(
                certificate=c,
                kind=TrustKind.CA if c.is_ca else TrustKind.SERVER,
                source=TrustSource.UPLOADED,
                added_at=now,
            )
            for c in trusted
        ],
        pins=(),
    )
    name = case["expected_peer_name"]["value"]
    return chain, Peer(host=name, port=443, transport=Transport.HTTPS), now, snapshot


def run(case: dict[str, Any]) -> Outcome:
    try:
        chain, peer, now, snapshot = inputs(case)
    except (CertStoreError, ValueError) as exc:  # the handshake would be aborted
        return Outcome(accepted=False, verdict=None, unreadable=str(exc))
    verdict = decide(chain, peer, now, snapshot)
    return Outcome(accepted=verdict.accepted, verdict=verdict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Divergence:
    rule: str
    reason: str
    ids: tuple[str, ...]


@functools.cache
def divergences() -> tuple[Divergence, ...]:
    data = tomllib.loads(DIVERGENCES.read_text(encoding="utf-8"))
    return tuple(
        Divergence(rule=d["rule"], reason=d["reason"], ids=tuple(d["ids"]))
        for d in data["divergence"]
    )


def divergence_of(case_id: str) -> Divergence | None:
    for divergence in divergences():
        if case_id in divergence.ids:
            return divergence
    return None
