"""The decision order under random pins and settings, checked against a simple oracle.

The oracle below is written from DESIGN §5 alone: each pin's applicability and scope
specificity are spelled out in the test data (not computed by the code under test),
and the order is a plain chain of ifs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certstore.decision import decide
from certstore.model import (
    FIRST_USE_ACTOR,
    Certificate,
    Pin,
    PinDecision,
    PinMatch,
    Reason,
    Rule,
    Settings,
    VerdictKind,
)
from tests.unit.decision_helpers import HOST, NOW, PKI, PORT, peer, snapshot

# Scope text -> how specifically it covers the peer sip.example.net:5061 (-1: not at all).
SCOPES: dict[str | None, int] = {
    None: 0,
    HOST: 1,
    "SIP.Example.NET": 1,
    f"{HOST}.": 1,
    f"{HOST}:{PORT}": 2,
    f"SIP.EXAMPLE.NET:{PORT}": 2,
    f"{HOST}:5060": -1,
    "other.example.net": -1,
    f"other.example.net:{PORT}": -1,
}
EXPIRY = {"none": None, "past": NOW - timedelta(minutes=1), "future": NOW + timedelta(days=1)}


@dataclass(frozen=True)
class World:
    root: Certificate
    inter: Certificate
    good_leaf: Certificate  # valid under root for HOST
    self_signed: Certificate  # self-signed, for HOST


@cache
def world() -> World:
    # One validity window for all, so the root's window is the chain's.
    days = (-2000, 8000)
    root = PKI.ca("Property Root", valid_days=days)
    inter = PKI.ca("Property Issuing CA", issuer=root, valid_days=days)
    return World(
        root=root.model,
        inter=inter.model,
        good_leaf=PKI.leaf(inter, cn=HOST, valid_days=days).model,
        self_signed=PKI.leaf(None, cn="Property Self-Signed", dns=(HOST,), valid_days=days).model,
    )


@dataclass(frozen=True)
class PinSpec:
    decision: PinDecision
    match: PinMatch
    on_leaf: bool  # the fingerprint is the leaf's (else some other certificate's)
    mismatched_kind: bool  # the leaf's certificate fingerprint filed as a key pin or reverse
    scope: str | None
    expiry: str

    def build(self, pin_id: int, leaf: Certificate) -> Pin:
        if not self.on_leaf:
            fingerprint = secrets.token_hex(32)
        else:
            use_cert_fp = (self.match is PinMatch.CERTIFICATE) != self.mismatched_kind
            fingerprint = leaf.fingerprint if use_cert_fp else leaf.spki_fingerprint
        return Pin(
            id=pin_id,
            decision=self.decision,
            match=self.match,
            fingerprint=fingerprint,
            scope=self.scope,
            expires_at=EXPIRY[self.expiry],
            note="",
            created_at=NOW,
            created_by="admin",
        )

    def applies(self) -> bool:
        return (
            self.on_leaf
            and not self.mismatched_kind
            and self.expiry != "past"
            and SCOPES[self.scope] >= 0
        )


pin_specs = st.builds(
    PinSpec,
    decision=st.sampled_from(PinDecision),
    match=st.sampled_from(PinMatch),
    on_leaf=st.booleans(),
    mismatched_kind=st.booleans(),
    scope=st.sampled_from(list(SCOPES)),
    expiry=st.sampled_from(list(EXPIRY)),
)


def oracle(
    specs: list[PinSpec],
    accept_all: bool,
    tofu: bool,
    first_use: str,  # "none", "same-key", "other-key"
    chain_valid: bool,
) -> tuple[VerdictKind, Rule]:
    applicable = [s for s in specs if s.applies()]
    if first_use == "same-key":
        # The first-use pin is an accept pin on the leaf's key for the destination.
        applicable.append(
            PinSpec(
                decision=PinDecision.ACCEPT,
                match=PinMatch.PUBLIC_KEY,
                on_leaf=True,
                mismatched_kind=False,
                scope=f"{HOST}:{PORT}",
                expiry="none",
            )
        )
    if applicable:
        top = max(SCOPES[s.scope] for s in applicable)
        decisions = {s.decision for s in applicable if SCOPES[s.scope] == top}
        if PinDecision.REJECT in decisions:
            return VerdictKind.REJECT, Rule.PINNED_REJECT
        return VerdictKind.ACCEPT, Rule.PINNED_ACCEPT
    if accept_all:
        return VerdictKind.ACCEPT, Rule.ACCEPT_ALL
    if tofu and first_use == "none":
        return VerdictKind.ACCEPT, Rule.FIRST_USE
    if tofu:
        return VerdictKind.REJECT, Rule.UNTRUSTED
    if chain_valid:
        return VerdictKind.ACCEPT, Rule.CHAIN_VALID
    return VerdictKind.REJECT, Rule.UNTRUSTED


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(pin_specs, max_size=6),
    accept_all=st.booleans(),
    tofu=st.booleans(),
    wildcards=st.booleans(),
    first_use=st.sampled_from(["none", "same-key", "other-key"]),
    leaf_kind=st.sampled_from(["good", "self-signed"]),
    anchors=st.booleans(),
    extra_pins=st.integers(min_value=0, max_value=20),
)
def test_rule_order_matches_oracle(
    specs: list[PinSpec],
    accept_all: bool,
    tofu: bool,
    wildcards: bool,
    first_use: str,
    leaf_kind: str,
    anchors: bool,
    extra_pins: int,
) -> None:
    """Whatever the pins and settings, the verdict follows DESIGN §5's order."""
    w = world()
    leaf = w.good_leaf if leaf_kind == "good" else w.self_signed
    sent = (leaf, w.inter) if leaf_kind == "good" else (leaf,)
    chain_valid = leaf_kind == "good" and anchors

    pins = [spec.build(i, leaf) for i, spec in enumerate(specs, start=1)]
    pins += [  # unrelated noise
        PinSpec(
            decision=PinDecision.REJECT,
            match=PinMatch.CERTIFICATE,
            on_leaf=False,
            mismatched_kind=False,
            scope=None,
            expiry="none",
        ).build(100 + i, leaf)
        for i in range(extra_pins)
    ]
    if first_use != "none":
        key_owner = leaf if first_use == "same-key" else w.root
        pins.append(
            Pin(
                id=999,
                decision=PinDecision.ACCEPT,
                match=PinMatch.PUBLIC_KEY,
                fingerprint=key_owner.spki_fingerprint,
                scope=f"{HOST}:{PORT}",
                expires_at=None,
                note="",
                created_at=NOW,
                created_by=FIRST_USE_ACTOR,
            )
        )
    conf = Settings(
        accept_all_certificates=accept_all, trust_on_first_use=tofu, allow_wildcards=wildcards
    )
    snap = snapshot(trust=[w.root] if anchors else [], pins=pins, settings=conf)

    verdict = decide(sent, peer(), NOW, snap)
    expected = oracle(specs, accept_all, tofu, first_use, chain_valid)
    assert (verdict.verdict, verdict.rule) == expected
    assert verdict.leaf_fingerprint == leaf.fingerprint

    if verdict.verdict is VerdictKind.REJECT:
        assert verdict.reasons, "a rejection always says why"
        assert all(f.message for f in verdict.findings)
    if verdict.rule in (Rule.PINNED_ACCEPT, Rule.PINNED_REJECT):
        assert verdict.matched_pin is not None
        assert verdict.matched_pin in pins
        assert verdict.matched_pin.decision.value == verdict.verdict.value
    else:
        assert verdict.matched_pin is None
    if verdict.rule is Rule.UNTRUSTED and tofu and not accept_all:
        assert verdict.reasons[0] is Reason.KEY_CHANGED
    if verdict.rule is Rule.ACCEPT_ALL:
        # The overridden findings are exactly what validation alone would report.
        plain_snapshot = snapshot(
            trust=[w.root] if anchors else [], settings=Settings(allow_wildcards=wildcards)
        )
        plain = decide(sent, peer(), NOW, plain_snapshot)
        assert verdict.reasons == plain.reasons
        assert verdict.overridden is (plain.verdict is VerdictKind.REJECT)
    if verdict.rule is Rule.CHAIN_VALID:
        assert verdict.anchor == w.root
        assert verdict.path == (leaf, w.inter, w.root)


@settings(max_examples=200, deadline=None)
@given(
    order=st.permutations(range(4)),
    duplicates=st.lists(st.integers(min_value=0, max_value=3), max_size=3),
    now_offset_days=st.integers(min_value=-4000, max_value=12000),
)
def test_chain_order_and_time_never_crash(
    order: list[int], duplicates: list[int], now_offset_days: int
) -> None:
    """Any order, duplicates and any moment give a verdict that explains a rejection."""
    w = world()
    pool = [w.inter, w.root, w.self_signed, w.good_leaf]
    sent = (w.good_leaf, *(pool[i] for i in order), *(pool[i] for i in duplicates))
    now = NOW + timedelta(days=now_offset_days)
    verdict = decide(sent, peer(), now, snapshot(trust=[w.root]))
    in_validity = w.root.not_before <= now <= w.root.not_after
    assert (verdict.rule is Rule.CHAIN_VALID) is in_validity
    if not verdict.accepted:
        assert verdict.reasons
