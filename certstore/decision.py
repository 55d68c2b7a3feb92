"""The trust decision: may this TLS handshake go on? One pure function, :func:`decide`.

Every TLS handshake sipsgate makes (SIPS to the provider, HTTPS to the provisioning
server) ends here, with the chain the peer sent, the peer it was meant to be, the
current time and a snapshot of the trust state. The order is the product contract
(DESIGN §5):

1. a matching ``reject`` pin                → reject, rule ``pinned-reject``
2. a matching ``accept`` pin                → accept, rule ``pinned-accept``
3. ``accept_all_certificates``              → accept, rule ``accept-all`` (with the
   failures path validation would have reported, so they are recorded as overridden)
4. ``trust_on_first_use``, destination new  → accept, rule ``first-use``;
   destination seen with another key        → reject, rule ``untrusted``, ``key-changed``
5. path validation and the peer identity    → accept ``chain-valid`` / reject ``untrusted``

Revocation (setting ``revocation``; facts passed in: a stapled OCSP response and the
snapshot's cached CRLs and OCSP answers, see :mod:`certstore.revocation`) is checked for
every certificate of a valid path below its anchor: ``revoked`` rejects; with
``hard-fail`` a status that cannot be established rejects with ``revocation-unknown``.
A pinned-accept leaf, or one accepted on first use, known revoked is rejected too
(rule ``untrusted``, reason ``revoked``, the pin named): a pin says "trust this
certificate although no CA vouches for it", not "although its CA withdrew it"; an
administrator who must keep talking to a revoked peer sets ``revocation`` to ``off``.
Unknown status never rejects a pin, whatever the setting.

A pin matches when its fingerprint is the leaf's (``certificate``) or the leaf's
public key's (``public-key``), it has not expired, and its scope covers the peer. The
most specific matching pins decide: scope ``host:port`` equal to the destination beats
scope ``host``, which beats no scope (any peer); at equal specificity ``reject`` wins.

For a key change, ``Verdict.previous`` stays None: pins hold only fingerprints, so the
store, which keeps the certificates, supplies the previous one when it records the
rejection.

No I/O, no clock, no logging: ``now`` is a parameter, and equal inputs give equal
verdicts. Bounded memos (of signature checks, see
:class:`certstore.pathvalidation.SignatureCache`, and of host and scope normalisation)
make repeated work cheaper without changing any answer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime

from certstore.identity import check_identity, identity_matches, normalize_host
from certstore.model import (
    Certificate,
    Finding,
    Peer,
    Pin,
    PinDecision,
    PinMatch,
    Reason,
    RevocationMode,
    Rule,
    Settings,
    Verdict,
    VerdictKind,
)
from certstore.pathvalidation import PathResult, describe, format_time, validate_path
from certstore.revocation import (
    CertRevocation,
    OcspResponse,
    RevocationFacts,
    RevocationStatus,
    revocation_status,
)
from certstore.snapshot import TrustSnapshot

__all__ = ["decide", "parse_scope", "scope_rank"]

# Specificity of a pin's scope for a peer; -1: the pin does not apply to the peer.
SCOPE_DESTINATION = 2  # "host:port", equal to the peer's destination
SCOPE_HOST = 1  # "host", equal to the peer's host
SCOPE_ANY = 0  # no scope: any peer
OUT_OF_SCOPE = -1


def decide(
    chain: Sequence[Certificate],
    peer: Peer,
    now: datetime,
    snapshot: TrustSnapshot,
    *,
    stapled: OcspResponse | None = None,
    revocation: RevocationFacts | None = None,
) -> Verdict:
    """Decide whether to trust ``chain`` (leaf first, as sent) presented by ``peer``.

    ``stapled`` is the OCSP response the peer stapled in the handshake, if any;
    ``revocation`` the cached revocation facts, by default the snapshot's.
    """
    facts = snapshot.revocation if revocation is None else revocation
    if not chain:
        return Verdict(
            verdict=VerdictKind.REJECT,
            rule=Rule.UNTRUSTED,
            findings=(
                Finding(
                    reason=Reason.NO_CERTIFICATE,
                    message=(
                        f"The peer {peer.destination} sent no certificate; a TLS server must "
                        "present one, check its TLS configuration."
                    ),
                ),
            ),
            leaf_fingerprint=None,
        )
    leaf = chain[0]
    pin = _matching_pin(leaf, peer, now, snapshot)
    if pin is not None:
        if pin.decision is PinDecision.REJECT:
            return Verdict(
                verdict=VerdictKind.REJECT,
                rule=Rule.PINNED_REJECT,
                findings=(_pin_finding(pin, leaf),),
                leaf_fingerprint=leaf.fingerprint,
                matched_pin=pin,
            )
        known = _leaf_revocation(chain, now, snapshot, facts, stapled)
        if known is not None and known.status is RevocationStatus.REVOKED:
            return _revoked_leaf(leaf, known, pin)
        return Verdict(
            verdict=VerdictKind.ACCEPT,
            rule=Rule.PINNED_ACCEPT,
            findings=(),
            leaf_fingerprint=leaf.fingerprint,
            matched_pin=pin,
            revocation=() if known is None else (known,),
        )

    settings = snapshot.settings
    if settings.accept_all_certificates:
        result, findings = _verify(chain, peer, now, snapshot, settings)
        statuses: tuple[CertRevocation, ...] = ()
        if not findings:
            statuses, findings = _path_revocation(result.path, now, settings, facts, stapled)
        return Verdict(
            verdict=VerdictKind.ACCEPT,
            rule=Rule.ACCEPT_ALL,
            findings=findings,
            leaf_fingerprint=leaf.fingerprint,
            anchor=result.anchor if not findings else None,
            path=result.path if not findings else (),
            revocation=statuses,
        )

    if settings.trust_on_first_use:
        if not _seen_before(peer, snapshot.first_use_scopes):
            known = _leaf_revocation(chain, now, snapshot, facts, stapled)
            if known is not None and known.status is RevocationStatus.REVOKED:
                return _revoked_leaf(leaf, known, None)
            return Verdict(
                verdict=VerdictKind.ACCEPT,
                rule=Rule.FIRST_USE,
                findings=(),
                leaf_fingerprint=leaf.fingerprint,
                revocation=() if known is None else (known,),
            )
        _, findings = _verify(chain, peer, now, snapshot, settings)
        changed = Finding(
            reason=Reason.KEY_CHANGED,
            message=(
                f"The server certificate {describe(leaf)} of {peer.destination} has a "
                f"different public key (SHA-256 {leaf.spki_fingerprint}) from the one "
                "trust on first use recorded for this destination. If the peer's key was "
                "renewed on purpose, accept the new certificate or remove the old "
                "first-use pin; otherwise someone may be intercepting the connection."
            ),
            depth=0,
            fingerprint=leaf.fingerprint,
        )
        return Verdict(
            verdict=VerdictKind.REJECT,
            rule=Rule.UNTRUSTED,
            findings=(changed, *findings),
            leaf_fingerprint=leaf.fingerprint,
        )

    result, findings = _verify(chain, peer, now, snapshot, settings)
    statuses = ()
    if not findings:
        statuses, findings = _path_revocation(result.path, now, settings, facts, stapled)
    if not findings:
        return Verdict(
            verdict=VerdictKind.ACCEPT,
            rule=Rule.CHAIN_VALID,
            findings=(),
            leaf_fingerprint=leaf.fingerprint,
            anchor=result.anchor,
            path=result.path,
            revocation=statuses,
        )
    return Verdict(
        verdict=VerdictKind.REJECT,
        rule=Rule.UNTRUSTED,
        findings=findings,
        leaf_fingerprint=leaf.fingerprint,
        revocation=statuses,
    )


def _path_revocation(
    path: Sequence[Certificate],
    now: datetime,
    settings: Settings,
    facts: RevocationFacts,
    stapled: OcspResponse | None,
) -> tuple[tuple[CertRevocation, ...], tuple[Finding, ...]]:
    """The status of every certificate of a valid path below its anchor, and the
    findings they give under the ``revocation`` setting."""
    mode = settings.revocation
    if mode is RevocationMode.OFF or len(path) < 2:
        return (), ()
    statuses = tuple(
        revocation_status(path[i], path[i + 1], i, now, facts, stapled)
        for i in range(len(path) - 1)
    )
    findings: list[Finding] = []
    for status in statuses:
        cert = path[status.depth]
        if status.status is RevocationStatus.REVOKED:
            findings.append(revoked_finding(cert, status))
        elif status.status is RevocationStatus.UNKNOWN and mode is RevocationMode.HARD_FAIL:
            findings.append(
                Finding(
                    reason=Reason.REVOCATION_UNKNOWN,
                    message=(
                        f"The revocation status of {_role(status.depth)} {describe(cert)} "
                        f"cannot be established ({'; '.join(status.notes)}), and the "
                        "revocation setting is hard-fail."
                    ),
                    depth=status.depth,
                    fingerprint=cert.fingerprint,
                )
            )
    return statuses, tuple(findings)


def _role(depth: int) -> str:
    return "the server certificate" if depth == 0 else "the CA certificate"


def revoked_finding(cert: Certificate, status: CertRevocation) -> Finding:
    """The ``revoked`` finding: when, why, and where that was learned."""
    entry = status.revoked
    when = f" on {format_time(entry.revoked_at)}" if entry is not None else ""
    why = f" (reason: {entry.reason})" if entry is not None and entry.reason else ""
    source = status.source.value if status.source is not None else "unknown"
    where = f"{source} {status.url}" if status.url else source
    dated = f", dated {format_time(status.this_update)}" if status.this_update else ""
    return Finding(
        reason=Reason.REVOKED,
        message=(
            f"{_role(status.depth).capitalize()} {describe(cert)} was revoked by its "
            f"issuer{when}{why}, according to {where}{dated}. The peer must install a "
            "new certificate."
        ),
        depth=status.depth,
        fingerprint=cert.fingerprint,
    )


def _leaf_revocation(
    chain: Sequence[Certificate],
    now: datetime,
    snapshot: TrustSnapshot,
    facts: RevocationFacts,
    stapled: OcspResponse | None,
) -> CertRevocation | None:
    """What is known about the leaf of a chain accepted without path validation (pin,
    first use): checked against the issuer the peer sent, else a trusted one."""
    if snapshot.settings.revocation is RevocationMode.OFF or (facts.empty and stapled is None):
        return None
    leaf = chain[0]
    issuers = [c for c in chain[1:2] if c.subject_der == leaf.issuer_der]
    issuers += [e.certificate for e in snapshot.anchors_by_subject.get(leaf.issuer_der, ())]
    for issuer in issuers:
        status = revocation_status(leaf, issuer, 0, now, facts, stapled)
        if status.status is not RevocationStatus.UNKNOWN:
            return status
    return None


def _revoked_leaf(leaf: Certificate, status: CertRevocation, pin: Pin | None) -> Verdict:
    return Verdict(
        verdict=VerdictKind.REJECT,
        rule=Rule.UNTRUSTED,
        findings=(revoked_finding(leaf, status),),
        leaf_fingerprint=leaf.fingerprint,
        matched_pin=pin,
        revocation=(status,),
    )


def _verify(
    chain: Sequence[Certificate],
    peer: Peer,
    now: datetime,
    snapshot: TrustSnapshot,
    settings: Settings,
) -> tuple[PathResult, tuple[Finding, ...]]:
    """Path validation plus the peer identity: every finding, or none when trusted."""
    result = validate_path(chain, now, snapshot)
    leaf = chain[0]
    wildcards = settings.allow_wildcards
    if identity_matches(leaf, peer.host, peer.transport, allow_wildcards=wildcards):
        return result, result.findings
    identity = check_identity(leaf, peer.host, peer.transport, allow_wildcards=wildcards)
    mismatch = Finding(
        reason=Reason.NAME_MISMATCH,
        message=(
            f"The server certificate {describe(leaf)} is not issued for the peer: "
            f"{identity.describe()}."
        ),
        depth=0,
        fingerprint=leaf.fingerprint,
    )
    return result, (*result.findings, mismatch)


def _matching_pin(
    leaf: Certificate, peer: Peer, now: datetime, snapshot: TrustSnapshot
) -> Pin | None:
    """The pin that decides for ``leaf`` at ``peer``, or None when no active pin applies."""
    index = snapshot.pins_by_fingerprint
    by_cert = index.get(leaf.fingerprint, ())
    by_key = index.get(leaf.spki_fingerprint, ())
    if not by_cert and not by_key:
        return None
    candidates = [p for p in by_cert if p.match is PinMatch.CERTIFICATE]
    candidates += [p for p in by_key if p.match is PinMatch.PUBLIC_KEY]
    host = normalize_host(peer.host)
    best: Pin | None = None
    best_key: tuple[int, bool, bool, int] | None = None
    for pin in candidates:
        if not pin.is_active(now):
            continue
        rank = scope_rank(pin.scope, host, peer.port)
        if rank == OUT_OF_SCOPE:
            continue
        # Most specific first; then reject before accept; then (only to be
        # deterministic) a certificate pin before a key pin, the older pin first.
        key = (rank, pin.decision is PinDecision.REJECT, pin.match is PinMatch.CERTIFICATE, -pin.id)
        if best_key is None or key > best_key:
            best, best_key = pin, key
    return best


@functools.lru_cache(maxsize=4096)  # a pure function of its argument: memo only
def parse_scope(scope: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of a pin scope (``host``, ``host:port``, ``[v6]:port``, bare IPv6).

    The host is normalised like a peer's (lowercase, no trailing dot, A-labels,
    canonical IP text). Returns None for text that is not a valid scope.
    """
    text = scope.strip()
    port: int | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port = _port(rest[1:])
            if port is None:
                return None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text)
        if port is None:
            return None
    else:
        host = text  # a name, an IPv4 address or a bare IPv6 address
    normalized = normalize_host(host)
    if not normalized:
        return None
    return normalized, port


def scope_rank(scope: str | None, host: str, port: int) -> int:
    """How specifically ``scope`` covers the peer ``host`` (normalised) and ``port``."""
    if scope is None:
        return SCOPE_ANY
    parsed = parse_scope(scope)
    if parsed is None or parsed[0] != host:
        return OUT_OF_SCOPE
    if parsed[1] is None:
        return SCOPE_HOST
    return SCOPE_DESTINATION if parsed[1] == port else OUT_OF_SCOPE


def _port(text: str) -> int | None:
    if not text.isdigit() or not text.isascii() or len(text) > 5:
        return None
    value = int(text)
    return value if 0 < value < 65536 else None


def _seen_before(peer: Peer, scopes: frozenset[str]) -> bool:
    """Whether trust on first use already pinned a key for the peer's destination."""
    if not scopes:
        return False
    if peer.destination in scopes:
        return True
    wanted = (normalize_host(peer.host), peer.port)
    return any(parse_scope(scope) == wanted for scope in scopes)


def _pin_finding(pin: Pin, leaf: Certificate) -> Finding:
    by = "its public key" if pin.match is PinMatch.PUBLIC_KEY else "its fingerprint"
    scope = f"for {pin.scope}" if pin.scope else "for any peer"
    expiry = f", until {format_time(pin.expires_at)}" if pin.expires_at else ""
    note = f' ("{pin.note}")' if pin.note else ""
    return Finding(
        reason=Reason.PINNED_REJECT,
        message=(
            f"The server certificate {describe(leaf)} is rejected by pin {pin.id}, "
            f"which matches {by} {scope}{expiry}, set by {pin.created_by}{note}. Remove the "
            "pin if the peer should be trusted again."
        ),
        depth=0,
        fingerprint=leaf.fingerprint,
    )
