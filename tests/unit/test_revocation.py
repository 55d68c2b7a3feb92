"""Revocation facts through the pure decision: CRLs and OCSP answers as information."""

from __future__ import annotations

import datetime as dt
import tracemalloc

import pytest
from cryptography.x509 import ocsp

from certstore.decision import decide
from certstore.errors import InputTooLarge, ParseError, ValidationError
from certstore.model import (
    Peer,
    Pin,
    PinDecision,
    PinMatch,
    Reason,
    RevocationMode,
    Rule,
    Settings,
    Transport,
    TrustEntry,
    TrustKind,
    TrustSource,
)
from certstore.revocation import (
    MAX_CRL_BYTES,
    RevocationFacts,
    RevocationSource,
    RevocationStatus,
    parse_crl,
    parse_ocsp,
)
from certstore.snapshot import TrustSnapshot
from certstore.validation import apply_settings_changes
from certstore.x509 import parse_der
from tests import limbo
from tests.pki import CertFactory, Issued
from tests.revocation_support import make_crl, make_ocsp, ocsp_responder

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
PEER = Peer(host="sip.example.test", port=5061, transport=Transport.SIPS)


@pytest.fixture(scope="module")
def pki() -> tuple[CertFactory, Issued, Issued, Issued]:
    factory = CertFactory(NOW)
    root = factory.ca("Revocation Root")
    inter = factory.ca("Revocation Intermediate", issuer=root)
    leaf = factory.leaf(inter)
    return factory, root, inter, leaf


def _snapshot(
    root: Issued,
    mode: RevocationMode = RevocationMode.SOFT_FAIL,
    crls: tuple[bytes, ...] = (),
    ocsps: tuple[bytes, ...] = (),
    pins: tuple[Pin, ...] = (),
) -> TrustSnapshot:
    return TrustSnapshot.build(
        generation=1,
        settings=Settings(revocation=mode),
        trust=[
            TrustEntry(
                certificate=parse_der(root.der),
                kind=TrustKind.CA,
                source=TrustSource.UPLOADED,
                added_at=NOW,
            )
        ],
        pins=pins,
        revocation=RevocationFacts.build(
            crls=[
                parse_crl(c, source=RevocationSource.CRL_URL, url="http://ca/x.crl") for c in crls
            ],
            ocsp=[
                parse_ocsp(o, source=RevocationSource.OCSP_URL, url="http://ca/ocsp") for o in ocsps
            ],
        ),
    )


def _chain(leaf: Issued) -> tuple:  # type: ignore[type-arg]
    return tuple(parse_der(c.der) for c in leaf.chain())


def test_crl_revoking_the_leaf_rejects_with_time_reason_and_source(pki) -> None:  # type: ignore[no-untyped-def]
    _, root, inter, leaf = pki
    crl = make_crl(inter, [leaf], now=NOW)
    verdict = decide(_chain(leaf), PEER, NOW, _snapshot(root, crls=(crl,)))
    assert not verdict.accepted and verdict.rule is Rule.UNTRUSTED
    assert verdict.reasons == (Reason.REVOKED,)
    message = verdict.findings[0].message
    assert "2026-06-01 10:00 UTC" in message and "keyCompromise" in message
    assert "crl-url http://ca/x.crl" in message
    assert verdict.revocation[0].status is RevocationStatus.REVOKED
    assert verdict.revocation[0].source is RevocationSource.CRL_URL


def test_revoked_intermediate_rejects(pki) -> None:  # type: ignore[no-untyped-def]
    _, root, inter, leaf = pki
    crl = make_crl(root, [inter], now=NOW)
    verdict = decide(_chain(leaf), PEER, NOW, _snapshot(root, crls=(crl,)))
    assert verdict.reasons == (Reason.REVOKED,) and verdict.findings[0].depth == 1


def test_good_crl_accepts_and_says_so(pki) -> None:  # type: ignore[no-untyped-def]
    _, root, inter, leaf = pki
    crls = (make_crl(inter, [], now=NOW), make_crl(root, [], now=NOW))
    verdict = decide(_chain(leaf), PEER, NOW, _snapshot(root, RevocationMode.HARD_FAIL, crls))
    assert verdict.accepted and verdict.rule is Rule.CHAIN_VALID
    assert [s.status for s in verdict.revocation] == [RevocationStatus.GOOD] * 2


def test_soft_fail_accepts_unknown_hard_fail_rejects(pki) -> None:  # type: ignore[no-untyped-def]
    _, root, _, leaf = pki
    soft = decide(_chain(leaf), PEER, NOW, _snapshot(root, RevocationMode.SOFT_FAIL))
    hard = decide(_chain(leaf), PEER, NOW, _snapshot(root, RevocationMode.HARD_FAIL))
    assert soft.accepted
    assert not hard.accepted and set(hard.reasons) == {Reason.REVOCATION_UNKNOWN}
    assert "hard-fail" in hard.findings[0].message


def test_off_ignores_a_revoking_crl(pki) -> None:  # type: ignore[no-untyped-def]
    _, root, inter, leaf = pki
    crl = make_crl(inter, [leaf], now=NOW)
    assert decide(_chain(leaf), PEER, NOW, _snapshot(root, RevocationMode.OFF, (crl,))).accepted


@pytest.mark.parametrize(
    ("label", "kwargs"),
    [
        ("wrong key", {"signer": "root"}),
        (
            "stale (replayed)",
            {"this_update": dt.timedelta(days=-10), "next_update": dt.timedelta(days=-3)},
        ),
        ("future", {"this_update": dt.timedelta(hours=2)}),
        ("no CRL number", {"number": None}),
    ],
)
def test_unusable_crl_is_information_set_aside(pki, label: str, kwargs: dict) -> None:  # type: ignore[no-untyped-def, type-arg]
    _, root, inter, leaf = pki
    if kwargs.get("signer") == "root":
        kwargs = {**kwargs, "signer": root}
    crl = make_crl(inter, [leaf], now=NOW, **kwargs)
    soft = decide(_chain(leaf), PEER, NOW, _snapshot(root, crls=(crl,)))
    assert soft.accepted, label  # it cannot revoke: it is not information about the leaf
    hard = decide(_chain(leaf), PEER, NOW, _snapshot(root, RevocationMode.HARD_FAIL, (crl,)))
    assert Reason.REVOCATION_UNKNOWN in hard.reasons and Reason.REVOKED not in hard.reasons
    assert "is not used" in hard.findings[0].message


def test_huge_crl_is_refused_before_parsing() -> None:
    with pytest.raises(InputTooLarge):
        parse_crl(b"\x30" * (MAX_CRL_BYTES + 1), source=RevocationSource.UPLOADED)
    for junk in (b"", b"garbage", b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"):
        with pytest.raises(ParseError):
            parse_crl(junk, source=RevocationSource.UPLOADED)
        with pytest.raises(ParseError):
            parse_ocsp(junk, source=RevocationSource.STAPLED)


def test_large_crl_is_bounded_in_memory(pki) -> None:  # type: ignore[no-untyped-def]
    _, _root, inter, leaf = pki
    data = make_crl(inter, [leaf], now=NOW, extra_serials=20_000)
    assert len(data) < MAX_CRL_BYTES
    tracemalloc.start()
    crl = parse_crl(data, source=RevocationSource.UPLOADED)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(crl.revoked) == 20_001
    assert peak < 40 * len(data) + 8 * 1024 * 1024


def test_stapled_good_revoked_and_delegated(pki) -> None:  # type: ignore[no-untyped-def]
    factory, root, inter, leaf = pki
    snap = _snapshot(root, RevocationMode.HARD_FAIL, crls=(make_crl(root, [], now=NOW),))
    good = parse_ocsp(make_ocsp(leaf, inter, now=NOW), source=RevocationSource.STAPLED)
    assert decide(_chain(leaf), PEER, NOW, snap, stapled=good).accepted
    revoked = parse_ocsp(
        make_ocsp(leaf, inter, now=NOW, status=ocsp.OCSPCertStatus.REVOKED),
        source=RevocationSource.STAPLED,
    )
    verdict = decide(_chain(leaf), PEER, NOW, snap, stapled=revoked)
    assert verdict.reasons == (Reason.REVOKED,) and "stapled" in verdict.findings[0].message
    responder = ocsp_responder(factory, inter)
    delegated = parse_ocsp(
        make_ocsp(leaf, inter, now=NOW, responder=responder, status=ocsp.OCSPCertStatus.REVOKED),
        source=RevocationSource.STAPLED,
    )
    assert decide(_chain(leaf), PEER, NOW, snap, stapled=delegated).reasons == (Reason.REVOKED,)


@pytest.mark.parametrize(
    "case",
    ["wrong key", "unauthorised responder", "other certificate", "replayed", "foreign responder"],
)
def test_hostile_ocsp_is_not_information(pki, case: str) -> None:  # type: ignore[no-untyped-def]
    factory, root, inter, leaf = pki
    revoked = ocsp.OCSPCertStatus.REVOKED
    if case == "wrong key":
        # cryptography will not sign with a key that does not fit: spoil the signature
        forged = bytearray(make_ocsp(leaf, inter, now=NOW, status=revoked))
        forged[-1] ^= 0x01
        data = bytes(forged)
    elif case == "unauthorised responder":
        responder = ocsp_responder(factory, inter, authorised=False)
        data = make_ocsp(leaf, inter, now=NOW, status=revoked, responder=responder)
    elif case == "foreign responder":
        other_ca = factory.ca("Other CA")
        responder = ocsp_responder(factory, other_ca)
        data = make_ocsp(leaf, inter, now=NOW, status=revoked, responder=responder)
    elif case == "other certificate":
        other = factory.leaf(inter, cn="other.example.test", dns=("other.example.test",))
        data = make_ocsp(other, inter, now=NOW, status=revoked)
    else:
        data = make_ocsp(
            leaf,
            inter,
            now=NOW,
            status=revoked,
            this_update=dt.timedelta(days=-9),
            next_update=dt.timedelta(days=-2),
        )
    stapled = parse_ocsp(data, source=RevocationSource.STAPLED)
    soft = decide(_chain(leaf), PEER, NOW, _snapshot(root), stapled=stapled)
    assert soft.accepted, case
    hard = decide(
        _chain(leaf), PEER, NOW, _snapshot(root, RevocationMode.HARD_FAIL), stapled=stapled
    )
    assert Reason.REVOKED not in hard.reasons and Reason.REVOCATION_UNKNOWN in hard.reasons
    assert "stapled OCSP response is not used" in hard.findings[0].message


def test_pinned_accept_of_a_revoked_certificate_is_rejected(pki) -> None:  # type: ignore[no-untyped-def]
    _, root, inter, leaf = pki
    pin = Pin(
        id=1,
        decision=PinDecision.ACCEPT,
        match=PinMatch.CERTIFICATE,
        fingerprint=leaf.fingerprint,
        scope=None,
        expires_at=None,
        note="",
        created_at=NOW,
        created_by="admin",
    )
    crl = make_crl(inter, [leaf], now=NOW)
    verdict = decide(_chain(leaf), PEER, NOW, _snapshot(root, crls=(crl,), pins=(pin,)))
    assert not verdict.accepted and verdict.reasons == (Reason.REVOKED,)
    assert verdict.matched_pin == pin and verdict.should_record
    # unknown status never rejects a pin, even with hard-fail; off lets the pin win
    assert decide(
        _chain(leaf), PEER, NOW, _snapshot(root, RevocationMode.HARD_FAIL, pins=(pin,))
    ).accepted
    assert decide(
        _chain(leaf), PEER, NOW, _snapshot(root, RevocationMode.OFF, (crl,), pins=(pin,))
    ).accepted


def test_setting_values() -> None:
    settings, diff = apply_settings_changes(Settings(), {"revocation": "hard-fail"})
    assert settings.revocation is RevocationMode.HARD_FAIL
    assert diff == {"revocation": {"from": "soft-fail", "to": "hard-fail"}}
    assert Settings().revocation is RevocationMode.SOFT_FAIL
    for bad in ("on", True, None, 3):
        with pytest.raises(ValidationError, match="off, soft-fail, hard-fail"):
            apply_settings_changes(Settings(), {"revocation": bad})


CRL_CASES = [c for c in limbo.testcases() if c["id"].startswith("crl::")]


@pytest.mark.parametrize("case", CRL_CASES, ids=lambda c: c["id"])
def test_limbo_crl_cases_through_decide(case) -> None:  # type: ignore[no-untyped-def]
    """Each crl::* testcase of limbo gives limbo's result, for the right reason."""
    assert len(CRL_CASES) == 8
    outcome = limbo.run(case)
    assert outcome.verdict is not None, outcome.unreadable
    assert outcome.accepted == (case["expected_result"] == "SUCCESS")
    if case["id"] == "crl::revoked-certificate-with-crl":
        assert outcome.verdict.reasons == (Reason.REVOKED,)
    elif not outcome.accepted:
        assert outcome.verdict.reasons == (Reason.REVOCATION_UNKNOWN,)
    else:
        assert outcome.verdict.revocation and all(
            r.status is RevocationStatus.GOOD for r in outcome.verdict.revocation
        )
