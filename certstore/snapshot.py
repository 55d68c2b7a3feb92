"""The immutable view of the trust state that every handshake decides against.

A snapshot is built from plain values (trust entries, pins, settings) and indexes
them once, so that :func:`certstore.decision.decide` does dictionary look-ups
instead of scans. Building is pure; the store decides when to build a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from certstore.model import Pin, Settings, TrustEntry
from certstore.revocation import EMPTY_FACTS, RevocationFacts

K = TypeVar("K")
V = TypeVar("V")


def _frozen_index(pairs: Iterable[tuple[K, V]]) -> Mapping[K, tuple[V, ...]]:
    grouped: dict[K, list[V]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return MappingProxyType({k: tuple(v) for k, v in grouped.items()})


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TrustSnapshot:
    """Trust list, pins and settings at one instant, with look-up indexes."""

    generation: int  # grows with every committed change; equal generations = equal state
    settings: Settings
    trust: tuple[TrustEntry, ...]
    pins: tuple[Pin, ...]
    # Derived indexes (filled by ``build``).
    trust_by_fingerprint: Mapping[str, TrustEntry] = field(repr=False)
    anchors_by_subject: Mapping[bytes, tuple[TrustEntry, ...]] = field(repr=False)
    pins_by_fingerprint: Mapping[str, tuple[Pin, ...]] = field(repr=False)
    first_use_scopes: frozenset[str] = field(repr=False)
    # Cached CRLs and OCSP answers (fetched or uploaded), shared by every handshake.
    revocation: RevocationFacts = field(default=EMPTY_FACTS, repr=False)

    @classmethod
    def build(
        cls,
        *,
        generation: int,
        settings: Settings,
        trust: Iterable[TrustEntry],
        pins: Iterable[Pin],
        revocation: RevocationFacts = EMPTY_FACTS,
    ) -> TrustSnapshot:
        trust_t = tuple(trust)
        pins_t = tuple(pins)
        return cls(
            generation=generation,
            settings=settings,
            trust=trust_t,
            pins=pins_t,
            trust_by_fingerprint=MappingProxyType({e.certificate.fingerprint: e for e in trust_t}),
            anchors_by_subject=_frozen_index((e.certificate.subject_der, e) for e in trust_t),
            pins_by_fingerprint=_frozen_index((p.fingerprint, p) for p in pins_t),
            first_use_scopes=frozenset(p.scope for p in pins_t if p.first_use and p.scope),
            revocation=revocation,
        )

    @classmethod
    def empty(cls, settings: Settings | None = None) -> TrustSnapshot:
        return cls.build(generation=0, settings=settings or Settings(), trust=(), pins=())


def patch_trust(
    previous: TrustSnapshot,
    *,
    added: Sequence[TrustEntry],
    count_before: int,
    count: int,
    present: Callable[[], Iterable[str]],
) -> dict[str, Any]:
    """The trust fields of a snapshot made from ``previous``: ``added`` (entries stored
    since, in insertion order) appended and removed entries taken out, in the order a full
    build gives. Entries are only added or removed, never changed, so a fingerprint added
    again was removed first; when the counts say more went (``count_before`` entries then,
    ``count`` now), ``present`` gives every stored fingerprint to find them."""
    entries = dict(previous.trust_by_fingerprint)
    added_fps = {e.certificate.fingerprint for e in added}
    removed = [entries[fp] for fp in added_fps if fp in entries]  # removed, then re-added
    if count_before + len(added) - len(removed) != count:
        stored = set(present())
        removed.extend(e for fp, e in entries.items() if fp not in stored)
    anchors = dict(previous.anchors_by_subject)
    for entry in removed:
        del entries[entry.certificate.fingerprint]
        subject = entry.certificate.subject_der
        group = tuple(e for e in anchors[subject] if e is not entry)
        if group:
            anchors[subject] = group
        else:
            del anchors[subject]
    for entry in added:
        entries[entry.certificate.fingerprint] = entry
        subject = entry.certificate.subject_der
        anchors[subject] = (*anchors.get(subject, ()), entry)
    return {
        "trust": tuple(entries.values()),
        "trust_by_fingerprint": MappingProxyType(entries),
        "anchors_by_subject": MappingProxyType(anchors),
    }
