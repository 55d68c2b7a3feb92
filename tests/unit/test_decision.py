"""The trust decision (DESIGN §5): every rule and every reason, each success with its
failure twins, on real certificates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certstore import pathvalidation
from certstore.decision import decide, parse_scope, scope_rank
from certstore.model import (
    Certificate,
    Peer,
    PinDecision,
    PinMatch,
    Reason,
    Rule,
    Settings,
    Transport,
    VerdictKind,
)
from certstore.pathvalidation import (
    SignatureCache,
    _tbs_bytes,
    validate_path,
    verify_signature,
)
from certstore.snapshot import TrustSnapshot
from tests.pki import CA_KEY_USAGE, Issued, KeySpec, make_key, name
from tests.unit.decision_helpers import (
    HOST,
    NOW,
    PKI,
    PORT,
    Pki,
    chain,
    first_use_pin,
    make_pin,
    peer,
    snapshot,
)

R = Reason
DEFAULT_PEER = peer()
ACCEPT, REJECT = VerdictKind.ACCEPT, VerdictKind.REJECT
EXPIRED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Scenario:
    chain: tuple[Certificate, ...]
    snapshot: TrustSnapshot
    peer: Peer = DEFAULT_PEER
    now: datetime = NOW


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Pki], Scenario]
    verdict: VerdictKind
    rule: Rule
    reasons: frozenset[Reason] = frozenset()


def case(
    id: str,
    build: Callable[[Pki], Scenario],
    verdict: VerdictKind,
    rule: Rule,
    *reasons: Reason,
) -> pytest.ParameterSet:
    return pytest.param(Case(id, build, verdict, rule, frozenset(reasons)), id=id)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def trusted_root(p: Pki, *certs: Issued, **kw: object) -> Scenario:
    return Scenario(chain=chain(*certs), snapshot=snapshot(trust=[p.root]), **kw)  # type: ignore[arg-type]


# Certificates built once per module and shared by several cases.
_CACHE: dict[str, Issued] = {}


def once(key: str, make: Callable[[], Issued]) -> Issued:
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def leaf_with(p: Pki, label: str, **options: object) -> Issued:
    return once(label, lambda: PKI.leaf(p.inter, cn=HOST, **options))


def inter_with(p: Pki, label: str, **options: object) -> Issued:
    options = {"ca": True, "key_usage": CA_KEY_USAGE, "valid_days": (-30, 3650)} | options
    return once(label, lambda: PKI.issue(f"Intermediate {label}", issuer=p.root, **options))  # type: ignore[arg-type]


CHAIN_CASES = [
    # --- chain-valid and its failure twins -------------------------------------------
    case(
        "valid-chain",
        lambda p: trusted_root(p, p.leaf, p.inter),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "valid-chain-https",
        lambda p: trusted_root(p, p.leaf, p.inter, peer=peer(transport=Transport.HTTPS)),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "twin-wrong-host",
        lambda p: trusted_root(p, p.leaf, p.inter, peer=peer("sip.example.org")),
        REJECT,
        Rule.UNTRUSTED,
        R.NAME_MISMATCH,
    ),
    case(
        "twin-wrong-ca",
        lambda p: Scenario(chain=chain(p.leaf, p.inter), snapshot=snapshot(trust=[p.other_root])),
        REJECT,
        Rule.UNTRUSTED,
        R.UNKNOWN_ISSUER,
    ),
    case(
        "twin-empty-trust-list",
        lambda p: Scenario(chain=chain(p.leaf, p.inter), snapshot=snapshot()),
        REJECT,
        Rule.UNTRUSTED,
        R.UNKNOWN_ISSUER,
    ),
    case(
        "twin-expired-leaf",
        lambda p: trusted_root(p, leaf_with(p, "expired", not_after=EXPIRED_AT), p.inter),
        REJECT,
        Rule.UNTRUSTED,
        R.EXPIRED,
    ),
    case(
        "twin-not-yet-valid-leaf",
        lambda p: trusted_root(
            p, leaf_with(p, "future", not_before=NOW + timedelta(days=1)), p.inter
        ),
        REJECT,
        Rule.UNTRUSTED,
        R.NOT_YET_VALID,
    ),
    case(
        "twin-expired-intermediate",
        lambda p: trusted_root(
            p,
            once(
                "leaf-under-expired-inter",
                lambda: PKI.leaf(inter_with(p, "expired-inter", not_after=EXPIRED_AT), cn=HOST),
            ),
            inter_with(p, "expired-inter", not_after=EXPIRED_AT),
        ),
        REJECT,
        Rule.UNTRUSTED,
        R.EXPIRED,
    ),
    case(
        "twin-expired-anchor",
        lambda p: Scenario(
            chain=chain(
                once(
                    "leaf-under-old-root",
                    lambda: PKI.leaf(
                        once("old-root", lambda: PKI.ca("Old Root", not_after=EXPIRED_AT)),
                        cn=HOST,
                    ),
                )
            ),
            snapshot=snapshot(
                trust=[once("old-root", lambda: PKI.ca("Old Root", not_after=EXPIRED_AT))]
            ),
        ),
        REJECT,
        Rule.UNTRUSTED,
        R.EXPIRED,
    ),
    case(
        "twin-missing-intermediate",
        lambda p: trusted_root(p, p.leaf),
        REJECT,
        Rule.UNTRUSTED,
        R.UNKNOWN_ISSUER,
    ),
    case(
        "twin-bad-signature",
        lambda p: trusted_root(
            p,
            leaf_with(p, "forged", signing_key=make_key("ec", "forger")),
            p.inter,
        ),
        REJECT,
        Rule.UNTRUSTED,
        R.BAD_SIGNATURE,
    ),
    # --- messy chains a peer may send -------------------------------------------------
    case(
        "out-of-order-with-root-and-duplicates",
        lambda p: trusted_root(p, p.leaf, p.root, p.inter, p.inter, p.leaf),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "extra-unrelated-certificates",
        lambda p: trusted_root(p, p.leaf, p.other_root, p.self_signed, p.inter),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "untrusted-root-sent-along",
        lambda p: Scenario(chain=chain(p.leaf, p.inter, p.root), snapshot=snapshot()),
        REJECT,
        Rule.UNTRUSTED,
        R.UNKNOWN_ISSUER,
    ),
    case(
        "trusted-intermediate-anchors",
        lambda p: Scenario(chain=chain(p.leaf), snapshot=snapshot(trust=[p.inter])),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "trusted-server-certificate-anchors-itself",
        lambda p: Scenario(
            chain=chain(p.self_signed),
            snapshot=snapshot(trust=[p.self_signed]),
            peer=peer("pbx.example.net"),
        ),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "twin-trusted-server-certificate-wrong-host",
        lambda p: Scenario(chain=chain(p.self_signed), snapshot=snapshot(trust=[p.self_signed])),
        REJECT,
        Rule.UNTRUSTED,
        R.NAME_MISMATCH,
    ),
    case(
        "twin-trusted-server-certificate-expired",
        lambda p: Scenario(
            chain=chain(p.self_signed),
            snapshot=snapshot(trust=[p.self_signed]),
            peer=peer("pbx.example.net"),
            now=datetime(2050, 1, 1, tzinfo=UTC),
        ),
        REJECT,
        Rule.UNTRUSTED,
        R.EXPIRED,
    ),
    case(
        "self-signed-not-trusted",
        lambda p: Scenario(
            chain=chain(p.self_signed),
            snapshot=snapshot(trust=[p.root]),
            peer=peer("pbx.example.net"),
        ),
        REJECT,
        Rule.UNTRUSTED,
        R.SELF_SIGNED,
    ),
    case(
        "self-signed-wrong-host-collects-both",
        lambda p: Scenario(chain=chain(p.self_signed), snapshot=snapshot()),
        REJECT,
        Rule.UNTRUSTED,
        R.SELF_SIGNED,
        R.NAME_MISMATCH,
    ),
    # --- CA constraints and key usage -------------------------------------------------
    case(
        "intermediate-not-a-ca",
        lambda p: trusted_root(
            p,
            once("leaf-under-nonca", lambda: PKI.leaf(inter_with(p, "nonca", ca=False), cn=HOST)),
            inter_with(p, "nonca", ca=False),
        ),
        REJECT,
        Rule.UNTRUSTED,
        R.NOT_A_CA,
    ),
    case(
        "intermediate-without-basic-constraints",
        lambda p: trusted_root(
            p,
            once("leaf-under-nobc", lambda: PKI.leaf(inter_with(p, "nobc", ca=None), cn=HOST)),
            inter_with(p, "nobc", ca=None),
        ),
        REJECT,
        Rule.UNTRUSTED,
        R.NOT_A_CA,
    ),
    case(
        "path-length-exceeded",
        lambda p: Scenario(
            chain=chain(*_path_length_chain(p)[:2]),
            snapshot=snapshot(trust=[_path_length_chain(p)[2]]),
        ),
        REJECT,
        Rule.UNTRUSTED,
        R.NOT_A_CA,
    ),
    case(
        "path-length-respected",
        lambda p: Scenario(
            chain=chain(
                once(
                    "leaf-pl0",
                    lambda: PKI.leaf(
                        once("pl0", lambda: PKI.ca("PathLen0 Root", path_length=0)), cn=HOST
                    ),
                )
            ),
            snapshot=snapshot(trust=[once("pl0", lambda: PKI.ca("PathLen0 Root", path_length=0))]),
        ),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "issuer-without-keycertsign",
        lambda p: trusted_root(
            p,
            once(
                "leaf-under-noku",
                lambda: PKI.leaf(inter_with(p, "noku", key_usage=("digitalSignature",)), cn=HOST),
            ),
            inter_with(p, "noku", key_usage=("digitalSignature",)),
        ),
        REJECT,
        Rule.UNTRUSTED,
        R.BAD_USAGE,
    ),
    case(
        "issuer-restricted-to-client-auth",
        lambda p: trusted_root(
            p,
            once(
                "leaf-under-clienteku",
                lambda: PKI.leaf(inter_with(p, "clienteku", eku=("clientAuth",)), cn=HOST),
            ),
            inter_with(p, "clienteku", eku=("clientAuth",)),
        ),
        REJECT,
        Rule.UNTRUSTED,
        R.BAD_USAGE,
    ),
    case(
        "leaf-client-auth-only",
        lambda p: trusted_root(p, leaf_with(p, "client-eku", eku=("clientAuth",)), p.inter),
        REJECT,
        Rule.UNTRUSTED,
        R.BAD_USAGE,
    ),
    case(
        "leaf-any-extended-key-usage",
        lambda p: trusted_root(p, leaf_with(p, "any-eku", eku=("anyExtendedKeyUsage",)), p.inter),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "leaf-without-eku",
        lambda p: trusted_root(p, leaf_with(p, "no-eku", eku=None), p.inter),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    # --- keys and algorithms ----------------------------------------------------------
    case(
        "rsa-1024-leaf-weak",
        lambda p: trusted_root(p, leaf_with(p, "rsa1024", key="rsa1024"), p.inter),
        REJECT,
        Rule.UNTRUSTED,
        R.WEAK_KEY,
    ),
    case(
        "ec-p192-leaf-weak",
        lambda p: trusted_root(p, leaf_with(p, "p192", key="ec-p192"), p.inter),
        REJECT,
        Rule.UNTRUSTED,
        R.WEAK_KEY,
    ),
    case(
        "rsa-1024-anchor-weak",
        lambda p: Scenario(
            chain=chain(_rsa1024_pki()[1]), snapshot=snapshot(trust=[_rsa1024_pki()[0]])
        ),
        REJECT,
        Rule.UNTRUSTED,
        R.WEAK_KEY,
    ),
    case(
        "rsa-2048-pkcs1-chain",
        lambda p: Scenario(
            chain=chain(_rsa_pki()[2], _rsa_pki()[1]), snapshot=snapshot(trust=[_rsa_pki()[0]])
        ),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "rsa-pss-chain",
        lambda p: Scenario(chain=chain(_pss_pki()[1]), snapshot=snapshot(trust=[_pss_pki()[0]])),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "ed25519-chain",
        lambda p: Scenario(chain=chain(_ed_pki()[1]), snapshot=snapshot(trust=[_ed_pki()[0]])),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "ec-p384-sha384-chain",
        lambda p: Scenario(chain=chain(_p384_pki()[1]), snapshot=snapshot(trust=[_p384_pki()[0]])),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    # --- identity ---------------------------------------------------------------------
    case(
        "cn-only-leaf-sips",
        lambda p: trusted_root(p, leaf_with(p, "cn-only", dns=(), san=False), p.inter),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "sip-uri-leaf",
        lambda p: trusted_root(
            p,
            leaf_with(p, "sip-uri", uris=("sip:sip.example.net",), dns=("other.example",)),
            p.inter,
        ),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "twin-wildcard-refused-for-sips",
        lambda p: trusted_root(p, leaf_with(p, "wild", dns=("*.example.net",)), p.inter),
        REJECT,
        Rule.UNTRUSTED,
        R.NAME_MISMATCH,
    ),
    case(
        "wildcard-allowed-by-setting",
        lambda p: Scenario(
            chain=chain(leaf_with(p, "wild", dns=("*.example.net",)), p.inter),
            snapshot=snapshot(trust=[p.root], settings=Settings(allow_wildcards=True)),
        ),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "wildcard-https",
        lambda p: trusted_root(
            p,
            leaf_with(p, "wild", dns=("*.example.net",)),
            p.inter,
            peer=peer(transport=Transport.HTTPS),
        ),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "ip-peer-ip-san",
        lambda p: trusted_root(
            p,
            leaf_with(p, "ip", ips=("192.0.2.10", "2001:db8::10")),
            p.inter,
            peer=peer("[2001:DB8:0::10]", transport=Transport.HTTPS),
        ),
        ACCEPT,
        Rule.CHAIN_VALID,
    ),
    case(
        "twin-ip-peer-dns-only",
        lambda p: trusted_root(p, p.leaf, p.inter, peer=peer("192.0.2.10")),
        REJECT,
        Rule.UNTRUSTED,
        R.NAME_MISMATCH,
    ),
    # --- every failure at once ---------------------------------------------------------
    case(
        "every-reason-collected",
        lambda p: trusted_root(
            p,
            leaf_with(
                p,
                "everything-wrong",
                key="rsa1024",
                not_after=EXPIRED_AT,
                eku=("clientAuth",),
                signing_key=make_key("ec", "forger"),
            ),
            p.inter,
            peer=peer("sip.example.org"),
        ),
        REJECT,
        Rule.UNTRUSTED,
        R.EXPIRED,
        R.BAD_SIGNATURE,
        R.WEAK_KEY,
        R.BAD_USAGE,
        R.NAME_MISMATCH,
    ),
]


def _path_length_chain(p: Pki) -> tuple[Issued, Issued, Issued]:
    root = once("pl0", lambda: PKI.ca("PathLen0 Root", path_length=0))
    inter = once("pl0-inter", lambda: PKI.ca("Below PathLen0", issuer=root))
    leaf = once("pl0-inter-leaf", lambda: PKI.leaf(inter, cn=HOST))
    return leaf, inter, root


def _rsa1024_pki() -> tuple[Issued, Issued]:
    root = once("rsa1024-root", lambda: PKI.ca("Weak RSA Root", key="rsa1024"))
    leaf = once("rsa1024-root-leaf", lambda: PKI.leaf(root, cn=HOST))
    return root, leaf


def _rsa_pki() -> tuple[Issued, Issued, Issued]:
    root = once("rsa-root", lambda: PKI.ca("RSA Root", key="rsa2048"))
    inter = once("rsa-inter", lambda: PKI.ca("RSA Inter", issuer=root, key="rsa2048"))
    leaf = once("rsa-leaf", lambda: PKI.leaf(inter, cn=HOST, key="rsa2048"))
    return root, inter, leaf


def _pss_pki() -> tuple[Issued, Issued]:
    root = once("pss-root", lambda: PKI.ca("PSS Root", key="rsa2048", pss=True))
    leaf = once("pss-leaf", lambda: PKI.leaf(root, cn=HOST, pss=True))
    return root, leaf


def _ed_pki() -> tuple[Issued, Issued]:
    root = once("ed-root", lambda: PKI.ca("Ed25519 Root", key="ed25519"))
    leaf = once("ed-leaf", lambda: PKI.leaf(root, cn=HOST, key="ed25519"))
    return root, leaf


def _p384_pki() -> tuple[Issued, Issued]:
    root = once("p384-root", lambda: PKI.ca("P-384 Root", key="ec-p384", digest="sha384"))
    leaf = once("p384-leaf", lambda: PKI.leaf(root, cn=HOST, digest="sha384"))
    return root, leaf


def check(verdict_case: Case, pki: Pki) -> None:
    s = verdict_case.build(pki)
    verdict = decide(s.chain, s.peer, s.now, s.snapshot)
    assert (verdict.verdict, verdict.rule, set(verdict.reasons)) == (
        verdict_case.verdict,
        verdict_case.rule,
        set(verdict_case.reasons),
    ), [f.message for f in verdict.findings]
    assert verdict.leaf_fingerprint == s.chain[0].fingerprint
    for finding in verdict.findings:
        assert finding.message.endswith("."), finding.message
        assert len(finding.message) > 30
    if verdict.rule is Rule.CHAIN_VALID:
        assert verdict.anchor is not None
        assert verdict.path[0] == s.chain[0]
        assert verdict.path[-1] == verdict.anchor
        assert verdict.anchor.fingerprint in s.snapshot.trust_by_fingerprint
    else:
        assert verdict.anchor is None


class TestPathValidation:
    @pytest.mark.parametrize("verdict_case", CHAIN_CASES)
    def test_case(self, verdict_case: Case, pki: Pki) -> None:
        """Each chain gets exactly the rule and the set of reasons of its row."""
        check(verdict_case, pki)

    @pytest.mark.parametrize("verdict_case", CHAIN_CASES)
    def test_case_without_signature_cache(self, verdict_case: Case, pki: Pki) -> None:
        """The signature cache never changes an answer."""
        saved = pathvalidation.signature_cache.maxsize
        pathvalidation.signature_cache.maxsize = 0
        try:
            check(verdict_case, pki)
        finally:
            pathvalidation.signature_cache.maxsize = saved

    @pytest.mark.parametrize("verdict_case", CHAIN_CASES)
    def test_first_path_shortcut_is_the_search_first_path(
        self, verdict_case: Case, pki: Pki
    ) -> None:
        """The quick first attempt is exactly the path the full search starts with."""
        s = verdict_case.build(pki)
        pool: dict[bytes, list[Certificate]] = {}
        for cert in dict.fromkeys(s.chain[1:]):
            if cert != s.chain[0]:
                pool.setdefault(cert.subject_der, []).append(cert)
        first = pathvalidation._first_path(s.chain[0], pool, s.now, s.snapshot)
        work = pathvalidation._Work(pathvalidation.SignatureCache(0))
        links = zip(first[0], first[0][1:], strict=False)
        if all(work.signature(a, b) is None for a, b in links):  # the search prunes the others
            assert first == next(pathvalidation._paths(s.chain[0], pool, s.now, s.snapshot, work))

    def test_valid_path_is_leaf_intermediate_root(self, pki: Pki) -> None:
        """The verdict names the anchor and the validated path, leaf first."""
        v = decide(chain(pki.leaf, pki.inter), peer(), NOW, snapshot(trust=[pki.root]))
        assert v.path == chain(pki.leaf, pki.inter, pki.root)
        assert v.anchor == pki.root.model

    def test_shortest_path_through_trusted_intermediate(self, pki: Pki) -> None:
        """With both the intermediate and the root trusted, the intermediate anchors."""
        v = decide(chain(pki.leaf, pki.inter), peer(), NOW, snapshot(trust=[pki.root, pki.inter]))
        assert v.rule is Rule.CHAIN_VALID
        assert v.path == chain(pki.leaf, pki.inter)

    def test_expired_message_names_certificate_and_date(self, pki: Pki) -> None:
        """An expiry finding is a sentence naming the certificate and when it expired."""
        leaf = leaf_with(pki, "expired", not_after=EXPIRED_AT)
        v = decide(chain(leaf, pki.inter), peer(), NOW, snapshot(trust=[pki.root]))
        [finding] = v.findings
        assert finding.message == (
            "The server certificate CN=sip.example.net expired on 2026-03-01 12:00 UTC."
        )
        assert finding.depth == 0
        assert finding.fingerprint == leaf.model.fingerprint

    def test_expired_anchor_message_says_it_no_longer_anchors(self, pki: Pki) -> None:
        """An expired trusted CA is reported as such, not as an unknown issuer."""
        root = once("old-root", lambda: PKI.ca("Old Root", not_after=EXPIRED_AT))
        leaf = once("leaf-under-old-root", lambda: PKI.leaf(root, cn=HOST))
        v = decide(chain(leaf), peer(), NOW, snapshot(trust=[root]))
        [finding] = v.findings
        assert "no longer acts as a trust anchor" in finding.message
        assert finding.depth == 1

    def test_name_mismatch_lists_names_and_expectation(self, pki: Pki) -> None:
        """The mismatch finding lists what the certificate names and what was expected."""
        leaf = leaf_with(pki, "two-names", dns=("a.example.net", "b.example.net"))
        v = decide(chain(leaf, pki.inter), peer(), NOW, snapshot(trust=[pki.root]))
        [finding] = v.findings
        assert finding.reason is R.NAME_MISMATCH
        assert "DNS:a.example.net, DNS:b.example.net" in finding.message
        assert "sip.example.net" in finding.message

    def test_self_signed_is_not_also_unknown_issuer(self, pki: Pki) -> None:
        """A lone self-signed leaf gets `self-signed`, with its fingerprint in the message."""
        v = decide(chain(pki.self_signed), peer("pbx.example.net"), NOW, snapshot())
        assert v.reasons == (R.SELF_SIGNED,)
        assert pki.self_signed.model.fingerprint in v.findings[0].message

    def test_self_signed_replacement_of_a_trusted_certificate(self, pki: Pki) -> None:
        """A PBX that regenerated its self-signed certificate (same name, new key, no key
        identifiers, as small devices make them) is reported as `self-signed`: the
        trusted old certificate is not its issuer."""
        old = once(
            "pbx-old-no-ids",
            lambda: PKI.leaf(None, cn="pbx.example.net", dns=("pbx.example.net",), key_ids=False),
        )
        new = once(
            "pbx-regenerated",
            lambda: PKI.leaf(
                None,
                cn="pbx.example.net",
                dns=("pbx.example.net",),
                key=make_key("ec", "pbx-regenerated"),
                key_ids=False,
            ),
        )
        assert new.model.subject_der == old.model.subject_der
        assert new.model.spki_fingerprint != old.model.spki_fingerprint
        v = decide(chain(new), peer("pbx.example.net"), NOW, snapshot(trust=[old]))
        assert v.rule is Rule.UNTRUSTED
        assert v.reasons == (R.SELF_SIGNED,), [f.message for f in v.findings]

    def test_self_signed_renewal_with_the_same_key_is_anchored(self, pki: Pki) -> None:
        """Failure twin: renewed with the same key, the trusted certificate still anchors it."""
        old = once(
            "pbx-old-no-ids",
            lambda: PKI.leaf(None, cn="pbx.example.net", dns=("pbx.example.net",), key_ids=False),
        )
        renewed = once(
            "pbx-renewed",
            lambda: PKI.leaf(
                None, cn="pbx.example.net", dns=("pbx.example.net",), key=old.key, key_ids=False
            ),
        )
        v = decide(chain(renewed), peer("pbx.example.net"), NOW, snapshot(trust=[old]))
        assert v.reasons != (R.SELF_SIGNED,)
        assert R.BAD_SIGNATURE not in v.reasons

    def test_cross_signed_intermediate_picks_trusted_path(self, pki: Pki) -> None:
        """Two intermediates with one name: the path through the trusted root is found."""
        old_root = once("x-old", lambda: PKI.ca("Cross Old Root"))
        new_root = once("x-new", lambda: PKI.ca("Cross New Root"))
        key = make_key("ec", "cross-inter")
        by_old = PKI.issue(
            "Cross Inter", issuer=old_root, key=key, ca=True, key_usage=("keyCertSign",)
        )
        by_new = PKI.issue(
            "Cross Inter", issuer=new_root, key=key, ca=True, key_usage=("keyCertSign",)
        )
        leaf = PKI.leaf(by_new, cn=HOST)
        for trusted in (old_root, new_root):
            for order in ((by_old, by_new), (by_new, by_old)):
                v = decide(chain(leaf, *order), peer(), NOW, snapshot(trust=[trusted]))
                assert v.rule is Rule.CHAIN_VALID, [f.message for f in v.findings]
                assert v.anchor == trusted.model

    def test_expired_cross_sign_skipped_for_valid_one(self, pki: Pki) -> None:
        """An expired candidate issuer does not hide a valid one with the same name."""
        root = once("x-new", lambda: PKI.ca("Cross New Root"))
        key = make_key("ec", "cross-inter-2")
        old = PKI.issue(
            "Cross Inter 2",
            issuer=root,
            key=key,
            ca=True,
            not_after=EXPIRED_AT,
            key_usage=("keyCertSign",),
        )
        new = PKI.issue("Cross Inter 2", issuer=root, key=key, ca=True, key_usage=("keyCertSign",))
        leaf = PKI.leaf(new, cn=HOST)
        v = decide(chain(leaf, old, new), peer(), NOW, snapshot(trust=[root]))
        assert v.rule is Rule.CHAIN_VALID
        assert v.path[1] == new.model

    def test_two_trusted_roots_same_name_tried_by_signature(self, pki: Pki) -> None:
        """Roots sharing a name (re-keyed CA, no key identifiers) are told apart by signature."""
        first = PKI.issue("Same Name Root", key=make_key("ec", "same-1"), ca=True, key_ids=False)
        second = PKI.issue("Same Name Root", key=make_key("ec", "same-2"), ca=True, key_ids=False)
        leaf = PKI.leaf(second, cn=HOST, key_ids=False)
        v = decide(chain(leaf), peer(), NOW, snapshot(trust=[first, second]))
        assert v.rule is Rule.CHAIN_VALID
        assert v.anchor == second.model
        v = decide(chain(leaf), peer(), NOW, snapshot(trust=[first]))
        assert v.reasons == (R.BAD_SIGNATURE,)

    def test_authority_key_id_mismatch_is_not_the_issuer(self, pki: Pki) -> None:
        """A trusted CA with the right name but another key identifier does not anchor."""
        leaf = leaf_with(pki, "wrong-aki", authority_key_id=b"\x01" * 20)
        v = decide(chain(leaf, pki.inter), peer(), NOW, snapshot(trust=[pki.root]))
        assert v.reasons == (R.UNKNOWN_ISSUER,)

    def test_issuer_loop_terminates(self, pki: Pki) -> None:
        """Two CAs certifying each other, neither trusted: a clean `unknown-issuer`."""
        key_a, key_b = make_key("ec", "loop-a"), make_key("ec", "loop-b")
        a_by_b = PKI.issue(
            "Loop A",
            issuer_name=name("Loop B"),
            key=key_a,
            signing_key=key_b,
            ca=True,
            key_ids=False,
        )
        b_by_a = PKI.issue(
            "Loop B",
            issuer_name=a_by_b.cert.subject,
            key=key_b,
            signing_key=key_a,
            ca=True,
            key_ids=False,
        )
        leaf = PKI.leaf(a_by_b, cn=HOST, key_ids=False)
        v = decide(chain(leaf, a_by_b, b_by_a), peer(), NOW, snapshot(trust=[pki.root]))
        assert v.reasons == (R.UNKNOWN_ISSUER,)

    def test_overlong_chain_is_bounded(self, pki: Pki) -> None:
        """A chain deeper than MAX_DEPTH fails with `unknown-issuer` instead of looping."""
        certs = [pki.root]
        for i in range(pathvalidation.MAX_DEPTH + 2):
            certs.append(PKI.ca(f"Deep {i}", issuer=certs[-1]))
        leaf = PKI.leaf(certs[-1], cn=HOST)
        sent = chain(leaf, *reversed(certs[1:]))
        v = decide(sent, peer(), NOW, snapshot(trust=[pki.root]))
        assert v.reasons == (R.UNKNOWN_ISSUER,)
        result = validate_path(sent, NOW, snapshot(trust=[pki.root]))
        assert len(result.path) == pathvalidation.MAX_DEPTH

    def test_many_same_name_candidates_are_bounded(self, pki: Pki) -> None:
        """Among dozens of look-alike intermediates the genuine one is found."""
        fakes = [
            PKI.issue(
                "Provider Issuing CA",
                key=make_key("ec", f"fake-{i}"),
                ca=True,
                key_ids=False,
                issuer=pki.root,
            )
            for i in range(30)
        ]
        leaf = PKI.leaf(pki.inter, cn=HOST, key_ids=False)
        calls = SignatureCache(maxsize=0)
        result = validate_path(
            chain(leaf, *fakes, pki.inter), NOW, snapshot(trust=[pki.root]), cache=calls
        )
        # Once only the first 16 certificates were looked at, and this was rejected.
        assert result.valid, [f.message for f in result.findings]
        assert result.path == chain(leaf, pki.inter, pki.root)

    def test_chain_beyond_extra_limit_still_finds_early_issuer(self, pki: Pki) -> None:
        """Junk after the real intermediate does not stop validation."""
        junk = [PKI.ca(f"Junk {i}") for i in range(25)]
        v = decide(chain(pki.leaf, pki.inter, *junk), peer(), NOW, snapshot(trust=[pki.root]))
        assert v.rule is Rule.CHAIN_VALID

    def test_signature_cache_is_bounded(self, pki: Pki) -> None:
        """The cache never holds more than maxsize entries and keeps answering right."""
        cache = SignatureCache(maxsize=2)
        good = (pki.leaf.model, pki.inter.model)
        forged = leaf_with(pki, "forged", signing_key=make_key("ec", "forger")).model
        assert cache.check(*good) is None
        assert cache.check(forged, pki.inter.model) is not None
        assert cache.check(pki.inter.model, pki.root.model) is None
        assert len(cache) == 2
        assert cache.check(*good) is None
        assert cache.check(forged, pki.inter.model) is not None
        cache.clear()
        assert len(cache) == 0

    @pytest.mark.parametrize("spec", ["ed448", "rsa2048", "ec-p384"])
    def test_other_key_types(self, spec: KeySpec) -> None:
        """Ed448, RSA and P-384 chains (intermediate included) validate (DSA is refused:
        tests/unit/test_pathvalidation_rules.py)."""
        root = once(f"kt-root-{spec}", lambda: PKI.ca(f"KT Root {spec}", key=spec))
        inter = once(
            f"kt-inter-{spec}",
            lambda: PKI.ca(f"KT Inter {spec}", issuer=root, key=spec),
        )
        leaf = once(f"kt-leaf-{spec}", lambda: PKI.leaf(inter, cn=HOST, key=spec))
        v = decide(chain(leaf, inter), peer(), NOW, snapshot(trust=[root]))
        assert v.rule is Rule.CHAIN_VALID, [f.message for f in v.findings]
        forged = PKI.issue(HOST, issuer=inter, signing_key=make_key(spec, "kt-forger"))
        assert verify_signature(forged.model, inter.model) is not None

    def test_signed_bytes_are_sliced_exactly(self, pki: Pki, legacy: Legacy) -> None:
        """The TBS part cut from the DER equals cryptography's, for short and long forms."""
        certs = [pki.leaf, pki.inter, pki.root, _rsa_pki()[2], _ed_pki()[1]]
        certs += [legacy.sha1_leaf, legacy.v1_root]
        for c in certs:
            assert _tbs_bytes(c.model) == c.cert.tbs_certificate_bytes

    def test_unreadable_der_falls_back(self, pki: Pki) -> None:
        """A DER header the slicer cannot read falls back to cryptography's TBS bytes."""
        model = replace(pki.leaf.model, der=b"\x30\x80")
        assert _tbs_bytes(model) == pki.leaf.cert.tbs_certificate_bytes

    def test_verify_signature_wrong_key_type(self, pki: Pki) -> None:
        """An ECDSA-signed certificate checked against an RSA key is a clear failure."""
        rsa_root = _rsa_pki()[0]
        problem = verify_signature(pki.leaf.model, rsa_root.model)
        assert problem is not None
        assert "cannot come from a RSA key" in problem
        ed_root = _ed_pki()[0]
        assert verify_signature(pki.leaf.model, ed_root.model) is not None
        assert verify_signature(_ed_pki()[1].model, pki.root.model) is not None


class TestEmptyChain:
    def test_no_certificate(self) -> None:
        """An empty chain is rejected with `no-certificate` and no leaf fingerprint."""
        v = decide((), peer(), NOW, snapshot())
        assert (v.verdict, v.rule, v.reasons) == (REJECT, Rule.UNTRUSTED, (R.NO_CERTIFICATE,))
        assert v.leaf_fingerprint is None

    def test_no_certificate_even_with_accept_all(self) -> None:
        """Accept-all cannot accept a peer that showed nothing."""
        v = decide((), peer(), NOW, snapshot(settings=Settings(accept_all_certificates=True)))
        assert v.verdict is REJECT
        assert v.reasons == (R.NO_CERTIFICATE,)


class TestPins:
    def test_reject_pin_beats_valid_chain_and_accept_all(self, pki: Pki) -> None:
        """A reject pin wins over a valid chain and over accept-all."""
        pin = make_pin("reject", pki.leaf)
        for settings in (
            Settings(),
            Settings(accept_all_certificates=True, trust_on_first_use=True),
        ):
            s = snapshot(trust=[pki.root], pins=[pin], settings=settings)
            v = decide(chain(pki.leaf, pki.inter), peer(), NOW, s)
            assert (v.verdict, v.rule, v.reasons) == (
                REJECT,
                Rule.PINNED_REJECT,
                (R.PINNED_REJECT,),
            )
            assert v.matched_pin == pin
            assert v.leaf_fingerprint == pki.leaf.model.fingerprint
            assert "pin 1" in v.findings[0].message

    def test_twin_reject_pin_for_another_certificate(self, pki: Pki) -> None:
        """A reject pin on some other certificate changes nothing."""
        s = snapshot(trust=[pki.root], pins=[make_pin("reject", pki.self_signed)])
        assert decide(chain(pki.leaf, pki.inter), peer(), NOW, s).rule is Rule.CHAIN_VALID

    def test_accept_pin_overrides_every_failure(self, pki: Pki) -> None:
        """An accept pin accepts an expired, self-signed, weak certificate for another name."""
        bad = PKI.issue("old-pbx", key="rsa1024", not_after=EXPIRED_AT, dns=("old-pbx",))
        for match in (PinMatch.CERTIFICATE, PinMatch.PUBLIC_KEY):
            pin = make_pin("accept", bad, match=match)
            v = decide(chain(bad), peer(), NOW, snapshot(pins=[pin]))
            assert (v.verdict, v.rule, v.findings) == (ACCEPT, Rule.PINNED_ACCEPT, ())
            assert v.matched_pin == pin
            assert v.leaf_fingerprint == bad.model.fingerprint

    def test_twin_accept_pin_wrong_match_kind(self, pki: Pki) -> None:
        """A certificate fingerprint filed as a key pin (or the reverse) does not match."""
        cert_fp_as_key = replace(make_pin("accept", pki.self_signed), match=PinMatch.PUBLIC_KEY)
        key_fp_as_cert = replace(
            make_pin("accept", pki.self_signed, match="public-key"), match=PinMatch.CERTIFICATE
        )
        for pin in (cert_fp_as_key, key_fp_as_cert):
            v = decide(chain(pki.self_signed), peer("pbx.example.net"), NOW, snapshot(pins=[pin]))
            assert v.rule is Rule.UNTRUSTED

    def test_twin_expired_accept_pin(self, pki: Pki) -> None:
        """An accept pin past its expiry no longer applies."""
        pin = make_pin("accept", pki.self_signed, expires_at=NOW - timedelta(seconds=1))
        v = decide(chain(pki.self_signed), peer("pbx.example.net"), NOW, snapshot(pins=[pin]))
        assert (v.rule, v.reasons) == (Rule.UNTRUSTED, (R.SELF_SIGNED,))
        pin = make_pin("accept", pki.self_signed, expires_at=NOW + timedelta(seconds=1))
        v = decide(chain(pki.self_signed), peer("pbx.example.net"), NOW, snapshot(pins=[pin]))
        assert v.rule is Rule.PINNED_ACCEPT

    def test_public_key_pin_survives_renewal(self, pki: Pki) -> None:
        """A key pin made for one certificate accepts its renewal with the same key."""
        key = make_key("ec", "pbx-key")
        old = PKI.issue("pbx", key=key, dns=("pbx",), not_after=EXPIRED_AT)
        renewed = PKI.issue("pbx", key=key, dns=("pbx",))
        pin = make_pin("accept", old, match="public-key")
        v = decide(chain(renewed), peer("pbx"), NOW, snapshot(pins=[pin]))
        assert v.rule is Rule.PINNED_ACCEPT
        pin = make_pin("accept", old, match="certificate")
        v = decide(chain(renewed), peer("pbx"), NOW, snapshot(pins=[pin]))
        assert v.rule is Rule.UNTRUSTED

    @pytest.mark.parametrize(
        ("scope", "peer_host", "peer_port", "applies"),
        [
            (None, HOST, PORT, True),
            (HOST, HOST, PORT, True),
            ("SIP.Example.NET", HOST, PORT, True),
            ("sip.example.net.", HOST, PORT, True),
            (f"{HOST}:{PORT}", HOST, PORT, True),
            (f"{HOST}:5060", HOST, PORT, False),
            ("other.example.net", HOST, PORT, False),
            ("[2001:DB8::1]:5061", "2001:db8:0:0::1", 5061, True),
            ("2001:db8::1", "[2001:db8::1]", 5061, True),
            ("[2001:db8::1]", "2001:db8::1", 5061, True),
            ("[2001:db8::1]:5060", "2001:db8::1", 5061, False),
            ("192.0.2.1:5061", "192.0.2.1", 5061, True),
            ("bücher.example", "xn--bcher-kva.example", 443, True),
            ("host:notaport", "host", 5061, False),
            ("[2001:db8::1", "2001:db8::1", 5061, False),
        ],
    )
    def test_scope(self, scope: str | None, peer_host: str, peer_port: int, applies: bool) -> None:
        """Scopes compare case-insensitively, with and without port, IPv6 in brackets."""
        leaf = Pki().self_signed
        pin = make_pin("accept", leaf, scope=scope)
        v = decide(chain(leaf), peer(peer_host, peer_port), NOW, snapshot(pins=[pin]))
        assert (v.rule is Rule.PINNED_ACCEPT) is applies

    @pytest.mark.parametrize(
        ("pins", "expected"),
        [
            # (decision, scope) pairs; the first pin listed that should decide.
            ([("reject", None), ("accept", f"{HOST}:{PORT}")], Rule.PINNED_ACCEPT),
            ([("reject", None), ("accept", HOST)], Rule.PINNED_ACCEPT),
            ([("reject", HOST), ("accept", f"{HOST}:{PORT}")], Rule.PINNED_ACCEPT),
            ([("accept", HOST), ("reject", f"{HOST}:{PORT}")], Rule.PINNED_REJECT),
            ([("accept", None), ("reject", None)], Rule.PINNED_REJECT),
            ([("accept", HOST), ("reject", HOST)], Rule.PINNED_REJECT),
            ([("accept", None), ("reject", HOST)], Rule.PINNED_REJECT),
            ([("reject", "elsewhere.example"), ("accept", None)], Rule.PINNED_ACCEPT),
        ],
    )
    def test_specificity(
        self, pki: Pki, pins: list[tuple[str, str | None]], expected: Rule
    ) -> None:
        """The most specific pins decide; at equal specificity reject wins."""
        made = [
            make_pin(decision, pki.leaf, scope=scope, pin_id=i, match=match)
            for i, (decision, scope) in enumerate(pins, start=1)
            for match in (PinMatch.CERTIFICATE, PinMatch.PUBLIC_KEY)
        ]
        for ordering in (made, list(reversed(made))):
            v = decide(
                chain(pki.leaf, pki.inter), peer(), NOW, snapshot(trust=[pki.root], pins=ordering)
            )
            assert v.rule is expected

    def test_scope_helpers(self) -> None:
        """parse_scope and scope_rank agree with the peer's own normalisation."""
        assert parse_scope("Example.NET:5061") == ("example.net", 5061)
        assert parse_scope("[::1]:99999") is None
        assert parse_scope("") is None
        assert scope_rank(None, "a", 1) == 0
        assert scope_rank("a", "a", 1) == 1
        assert scope_rank("a:1", "a", 1) == 2
        assert scope_rank("a:2", "a", 1) == -1


class TestAcceptAll:
    def test_accepts_and_lists_overridden_failures(self, pki: Pki) -> None:
        """Accept-all accepts a bad chain and carries what validation would have reported."""
        s = snapshot(settings=Settings(accept_all_certificates=True))
        v = decide(chain(pki.self_signed), peer(), NOW, s)
        assert (v.verdict, v.rule) == (ACCEPT, Rule.ACCEPT_ALL)
        assert set(v.reasons) == {R.SELF_SIGNED, R.NAME_MISMATCH}
        assert v.overridden
        assert v.should_record
        assert v.anchor is None

    def test_twin_valid_chain_has_nothing_overridden(self, pki: Pki) -> None:
        """With a chain that would pass anyway, accept-all records nothing."""
        s = snapshot(trust=[pki.root], settings=Settings(accept_all_certificates=True))
        v = decide(chain(pki.leaf, pki.inter), peer(), NOW, s)
        assert (v.rule, v.findings) == (Rule.ACCEPT_ALL, ())
        assert not v.overridden
        assert not v.should_record
        assert v.anchor == pki.root.model

    def test_beats_trust_on_first_use(self, pki: Pki) -> None:
        """Accept-all comes before trust on first use, even for a changed key."""
        settings = Settings(accept_all_certificates=True, trust_on_first_use=True)
        s = snapshot(pins=[first_use_pin(pki.leaf, f"{HOST}:{PORT}")], settings=settings)
        v = decide(chain(pki.self_signed_for_host), peer(), NOW, s)
        assert v.rule is Rule.ACCEPT_ALL


class TestTrustOnFirstUse:
    def test_first_use_accepts(self, pki: Pki) -> None:
        """A destination never seen is accepted by trust on first use."""
        s = snapshot(settings=Settings(trust_on_first_use=True))
        v = decide(chain(pki.self_signed_for_host), peer(), NOW, s)
        assert (v.verdict, v.rule, v.findings) == (ACCEPT, Rule.FIRST_USE, ())
        assert v.leaf_fingerprint == pki.self_signed_for_host.model.fingerprint

    def test_first_use_before_path_validation(self, pki: Pki) -> None:
        """Even a chain that would validate is accepted as first use (the key gets pinned)."""
        s = snapshot(trust=[pki.root], settings=Settings(trust_on_first_use=True))
        assert decide(chain(pki.leaf, pki.inter), peer(), NOW, s).rule is Rule.FIRST_USE

    def test_same_key_later_is_pinned_accept(self, pki: Pki) -> None:
        """The key seen first is accepted afterwards by its first-use pin."""
        pin = first_use_pin(pki.self_signed_for_host, f"{HOST}:{PORT}")
        s = snapshot(pins=[pin], settings=Settings(trust_on_first_use=True))
        v = decide(chain(pki.self_signed_for_host), peer(), NOW, s)
        assert (v.rule, v.matched_pin) == (Rule.PINNED_ACCEPT, pin)

    @pytest.mark.parametrize("scope", [f"{HOST}:{PORT}", f"SIP.EXAMPLE.NET:{PORT}"])
    def test_key_changed_rejects(self, pki: Pki, scope: str) -> None:
        """A different key for a seen destination is rejected with `key-changed` and more."""
        pin = first_use_pin(pki.self_signed_for_host, scope)
        s = snapshot(trust=[pki.root], pins=[pin], settings=Settings(trust_on_first_use=True))
        v = decide(chain(pki.leaf, pki.inter), peer(), NOW, s)
        assert (v.verdict, v.rule, v.reasons) == (REJECT, Rule.UNTRUSTED, (R.KEY_CHANGED,))
        assert v.previous is None
        other = decide(chain(pki.self_signed), peer(), NOW, s)
        assert set(other.reasons) == {R.KEY_CHANGED, R.SELF_SIGNED, R.NAME_MISMATCH}
        assert other.reasons[0] is R.KEY_CHANGED

    def test_twin_other_port_is_a_new_destination(self, pki: Pki) -> None:
        """A first-use pin for another port does not count as seen."""
        pin = first_use_pin(pki.self_signed_for_host, f"{HOST}:5062")
        s = snapshot(pins=[pin], settings=Settings(trust_on_first_use=True))
        assert decide(chain(pki.leaf), peer(), NOW, s).rule is Rule.FIRST_USE

    def test_twin_tofu_off_ignores_first_use_scopes(self, pki: Pki) -> None:
        """With trust on first use off, a changed key is judged by path validation alone."""
        pin = first_use_pin(pki.self_signed_for_host, f"{HOST}:{PORT}")
        s = snapshot(trust=[pki.root], pins=[pin])
        assert decide(chain(pki.leaf, pki.inter), peer(), NOW, s).rule is Rule.CHAIN_VALID


# --- legacy certificates made with the openssl command line -----------------------------


@dataclass(frozen=True)
class Legacy:
    ca: Issued  # a modern RSA CA (cryptography)
    sha1_leaf: Issued  # SHA-1 signed by `ca`
    sha1_root: Issued  # self-signed with SHA-1
    leaf_under_sha1_root: Issued  # SHA-256 signed by `sha1_root`
    v1_root: Issued  # X.509 v1, self-signed
    leaf_under_v1_root: Issued
    v1_intermediate: Issued  # X.509 v1, issued by `ca`
    leaf_under_v1_intermediate: Issued
    now: datetime = NOW


def legacy_cert(cn: str, **options: Any) -> Issued:
    """An RSA certificate signed by the openssl command, its key cached per name."""
    return PKI.openssl_issue(cn, key=make_key("rsa2048", f"openssl:{cn}"), **options)


@pytest.fixture(scope="session")
def legacy() -> Legacy:
    ca = PKI.ca("Legacy Test CA", key="rsa2048")
    sha1_root = legacy_cert("SHA1 Root", digest="sha1", ca=True)
    v1_root = legacy_cert("V1 Root", version1=True)
    v1_inter = legacy_cert("V1 Intermediate", issuer=ca, version1=True)
    return Legacy(
        ca=ca,
        sha1_leaf=legacy_cert(HOST, issuer=ca, digest="sha1", dns=(HOST,)),
        sha1_root=sha1_root,
        leaf_under_sha1_root=legacy_cert(HOST + "-r", issuer=sha1_root, dns=(HOST,)),
        v1_root=v1_root,
        leaf_under_v1_root=legacy_cert(HOST + "-v1", issuer=v1_root, dns=(HOST,)),
        v1_intermediate=v1_inter,
        leaf_under_v1_intermediate=legacy_cert(HOST + "-v1i", issuer=v1_inter, dns=(HOST,)),
    )


class TestLegacyCertificates:
    def test_fixture_made_what_it_says(self, legacy: Legacy) -> None:
        """The openssl-made certificates really are SHA-1 and version 1."""
        assert legacy.sha1_leaf.model.weak_signature
        assert legacy.sha1_leaf.model.signature_hash == "sha1"
        assert legacy.v1_root.model.version == 1
        assert legacy.v1_intermediate.model.version == 1
        assert not legacy.v1_root.model.has_san

    def test_sha1_leaf_verifies_but_is_weak(self, legacy: Legacy) -> None:
        """A SHA-1 signature verifies (no `bad-signature`) and yields `weak-signature`."""
        v = decide(chain(legacy.sha1_leaf), peer(), legacy.now, snapshot(trust=[legacy.ca]))
        assert (v.verdict, v.rule, v.reasons) == (REJECT, Rule.UNTRUSTED, (R.WEAK_SIGNATURE,))
        assert verify_signature(legacy.sha1_leaf.model, legacy.ca.model) is None

    def test_twin_sha1_leaf_pinned(self, legacy: Legacy) -> None:
        """A pin accepts the SHA-1 certificate anyway."""
        s = snapshot(trust=[legacy.ca], pins=[make_pin("accept", legacy.sha1_leaf)])
        assert decide(chain(legacy.sha1_leaf), peer(), legacy.now, s).rule is Rule.PINNED_ACCEPT

    def test_sha1_self_signature_of_anchor_is_not_judged(self, legacy: Legacy) -> None:
        """A trusted root's own SHA-1 self-signature is not relied on, so not flagged."""
        v = decide(
            chain(legacy.leaf_under_sha1_root),
            peer(),
            legacy.now,
            snapshot(trust=[legacy.sha1_root]),
        )
        assert v.rule is Rule.CHAIN_VALID, [f.message for f in v.findings]

    def test_sha1_root_untrusted_sent_along(self, legacy: Legacy) -> None:
        """The same root untrusted: `unknown-issuer`, never a crash."""
        v = decide(
            chain(legacy.leaf_under_sha1_root, legacy.sha1_root), peer(), legacy.now, snapshot()
        )
        assert v.reasons == (R.UNKNOWN_ISSUER,)

    def test_v1_trusted_root_is_a_ca(self, legacy: Legacy) -> None:
        """A trusted X.509 v1 root anchors (OpenSSL's legacy rule)."""
        v = decide(
            chain(legacy.leaf_under_v1_root), peer(), legacy.now, snapshot(trust=[legacy.v1_root])
        )
        assert v.rule is Rule.CHAIN_VALID, [f.message for f in v.findings]

    def test_twin_v1_intermediate_is_not_a_ca(self, legacy: Legacy) -> None:
        """An untrusted v1 intermediate cannot act as a CA."""
        v = decide(
            chain(legacy.leaf_under_v1_intermediate, legacy.v1_intermediate),
            peer(),
            legacy.now,
            snapshot(trust=[legacy.ca]),
        )
        assert v.reasons == (R.NOT_A_CA,)
        assert "version 1" in v.findings[0].message

    def test_v1_intermediate_trusted_anchors(self, legacy: Legacy) -> None:
        """Trusted, the same v1 intermediate is an anchor and a CA."""
        v = decide(
            chain(legacy.leaf_under_v1_intermediate),
            peer(),
            legacy.now,
            snapshot(trust=[legacy.v1_intermediate]),
        )
        assert v.rule is Rule.CHAIN_VALID

    def test_v1_self_signed_leaf_no_san(self, legacy: Legacy) -> None:
        """A v1 certificate used as a server certificate: CN-only identity, no crash."""
        v = decide(chain(legacy.v1_root), peer("V1 Root"), legacy.now, snapshot())
        assert v.reasons == (R.SELF_SIGNED,)
        pinned = snapshot(pins=[make_pin("accept", legacy.v1_root, match="public-key")])
        assert decide(chain(legacy.v1_root), peer(), legacy.now, pinned).rule is Rule.PINNED_ACCEPT


def test_pin_decision_values_are_strings() -> None:
    """Pins can be built from the JSON strings of the API."""
    assert PinDecision("reject") is PinDecision.REJECT
