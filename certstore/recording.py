"""What a handshake leaves behind in the trust state, decided without a database.

Every backend records the same way: these functions say which certificates of a chain
are kept, what identifies a chain (the dedup key), how a repeat sighting changes the
entry it merges into, which pin a first use creates, and how the rejected list is held
to its limit (when a chain is recorded, and when a backup is restored). They do no I/O
and read no clock: the time of a sighting is an argument.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from certstore.model import (
    Certificate,
    Peer,
    PinDecision,
    PinMatch,
    Reason,
    RejectedChain,
    Transport,
    Verdict,
)
from certstore.store import PinRequest
from certstore.validation import (
    MAX_RECORDED_CHAIN_BYTES,
    MAX_RECORDED_CHAIN_CERTS,
    MAX_REJECTED_COUNT,
)

# Peer names and dialled addresses come from the wire: kept to this many characters.
MAX_PEER_TEXT = 255
# The gateways named on one rejected entry: a fleet larger than this keeps the first ones.
MAX_SEEN_BY = 64


def bound_chain(chain: Sequence[Certificate]) -> tuple[Certificate, ...]:
    """The part of a chain that is recorded: the leaf always, then the following
    certificates while there are at most ``MAX_RECORDED_CHAIN_CERTS`` of them and their
    DER fits in ``MAX_RECORDED_CHAIN_BYTES``; the first one that does not fit ends it."""
    if not chain:
        raise ValueError("a recorded chain needs its leaf")
    kept = [chain[0]]
    total = len(chain[0].der)
    for cert in chain[1:]:
        if (
            len(kept) >= MAX_RECORDED_CHAIN_CERTS
            or total + len(cert.der) > MAX_RECORDED_CHAIN_BYTES
        ):
            break
        kept.append(cert)
        total += len(cert.der)
    return tuple(kept)


def chain_key(fingerprints: Sequence[str]) -> str:
    """The identity of a rejected chain (its dedup key): SHA-256 over its certificates'
    fingerprints in order. The same certificates in the same order are one entry."""
    return hashlib.sha256(":".join(fingerprints).encode("ascii")).hexdigest()


def recorded_peer(peer: Peer) -> Peer:
    """The peer as an entry keeps it: host and SNI cut to ``MAX_PEER_TEXT`` characters."""
    return Peer(
        host=peer.host[:MAX_PEER_TEXT],
        port=peer.port,
        transport=Transport(peer.transport),
        sni=None if peer.sni is None else peer.sni[:MAX_PEER_TEXT],
    )


def needs_first_use_certificate(verdict: Verdict) -> bool:
    """A changed key without the certificate seen before: the store looks up the one the
    destination's first-use pin was made from."""
    return verdict.previous is None and Reason.KEY_CHANGED in verdict.reasons


@dataclass(frozen=True, slots=True, kw_only=True)
class Sighting:
    """One handshake whose chain goes on the rejected list."""

    key: str  # the dedup key of ``chain``
    chain: tuple[Certificate, ...]  # bounded
    reasons: tuple[Reason, ...]
    peer: Peer  # shortened
    destination: str  # the full peer's destination, for the audit log
    overridden: bool
    previous: Certificate | None
    address: str | None  # shortened
    at: datetime
    gateway: str | None = None  # the gateway that saw it (``gateway.name``)


def sighting(
    verdict: Verdict,
    chain: Sequence[Certificate],
    peer: Peer,
    at: datetime,
    *,
    address: str | None,
    previous: Certificate | None,
    gateway: str | None = None,
) -> Sighting:
    """What a recorded handshake contributes to the rejected list (``chain`` not empty)."""
    recorded = bound_chain(chain)
    return Sighting(
        key=chain_key([c.fingerprint for c in recorded]),
        chain=recorded,
        reasons=verdict.reasons,
        peer=recorded_peer(peer),
        destination=peer.destination,
        overridden=verdict.overridden,
        previous=previous,
        address=None if address is None else address[:MAX_PEER_TEXT],
        at=at,
        gateway=None if gateway is None else gateway[:MAX_PEER_TEXT],
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """What a repeat sighting keeps of the entry it merges into."""

    id: int
    first_seen: datetime
    last_seen: datetime
    count: int
    previous: Certificate | None
    address: str | None
    seen_by: tuple[str, ...] = ()


def merged_seen_by(seen_by: Sequence[str], gateway: str | None) -> tuple[str, ...]:
    """The gateways named on an entry after ``gateway`` saw it: appended when new (and
    while fewer than ``MAX_SEEN_BY`` are named), the order of first sightings kept."""
    names = tuple(seen_by)
    if gateway is None or gateway in names or len(names) >= MAX_SEEN_BY:
        return names
    return (*names, gateway)


def first_entry(entry_id: int, seen: Sighting) -> RejectedChain:
    """The new entry a chain seen for the first time becomes."""
    return RejectedChain(
        id=entry_id,
        chain=seen.chain,
        reasons=seen.reasons,
        peer=seen.peer,
        first_seen=seen.at,
        last_seen=seen.at,
        count=1,
        overridden=seen.overridden,
        previous=seen.previous,
        address=seen.address,
        seen_by=merged_seen_by((), seen.gateway),
    )


def repeat_entry(existing: Recorded, seen: Sighting) -> RejectedChain:
    """The entry after a repeat: counted once more (saturating, so a backup of it always
    restores), ``last_seen`` never goes back, reasons, peer and ``overridden`` are the
    latest; the previous certificate and the dialled address are kept when this sighting
    does not know them; the sighting's gateway joins ``seen_by``."""
    return RejectedChain(
        id=existing.id,
        chain=seen.chain,
        reasons=seen.reasons,
        peer=seen.peer,
        first_seen=existing.first_seen,
        last_seen=max(existing.last_seen, seen.at),
        count=min(existing.count + 1, MAX_REJECTED_COUNT),
        overridden=seen.overridden,
        previous=seen.previous if seen.previous is not None else existing.previous,
        address=seen.address if seen.address is not None else existing.address,
        seen_by=merged_seen_by(existing.seen_by, seen.gateway),
    )


def excess(count: int, limit: int) -> int:
    """How many entries (seen longest ago first) leave a list of ``count`` entries."""
    return max(0, count - limit)


def kept_on_restore(rejected: Sequence[RejectedChain], limit: int) -> list[RejectedChain]:
    """The entries of a restored backup that fit ``limit``: the most recently seen ones
    (ties by id), oldest first, as eviction would have left them."""
    ordered = sorted(rejected, key=lambda r: (r.last_seen, r.id))
    return ordered[max(0, len(ordered) - limit) :]


def first_use_pin(leaf: Certificate, destination: str | None) -> PinRequest:
    """The pin trust on first use creates: accept the leaf's public key, for the one
    destination (so a renewed certificate with the same key keeps working)."""
    return PinRequest(
        decision=PinDecision.ACCEPT,
        match=PinMatch.PUBLIC_KEY,
        fingerprint=leaf.spki_fingerprint,
        scope=destination,
        certificate=leaf,
    )
