"""Every SERVER testcase of x509-limbo through the trust decision (see tests/limbo.py)."""

from __future__ import annotations

from typing import Any

import pytest

from certstore.model import Reason
from tests import limbo

RUNNABLE = [c for c in limbo.testcases() if not limbo.unsupported(c)]
SKIPPED = [c for c in limbo.testcases() if limbo.unsupported(c)]


@pytest.mark.parametrize("case", RUNNABLE, ids=lambda c: c["id"])
def test_limbo_expected_result(case: dict[str, Any]) -> None:
    """sipsgate gives limbo's expected result, or the divergence is a reviewed rule."""
    outcome = limbo.run(case)
    expected = case["expected_result"] == "SUCCESS"
    divergence = limbo.divergence_of(case["id"])
    reasons = [r.value for r in outcome.verdict.reasons] if outcome.verdict else []
    if divergence is None:
        assert outcome.accepted == expected, (
            f"{case['id']}: limbo expects {case['expected_result']}, sipsgate "
            f"{'accepts' if outcome.accepted else 'rejects'} ({reasons or outcome.unreadable})"
        )
    else:
        assert outcome.accepted != expected, (
            f"{case['id']} now agrees with limbo: remove it from {limbo.DIVERGENCES.name} "
            f"(rule {divergence.rule})"
        )


def test_expected_failures_carry_reasons() -> None:
    """A rejection always says why: findings with a sentence, or the unreadable certificate."""
    for case in RUNNABLE:
        outcome = limbo.run(case)
        if outcome.accepted:
            continue
        if outcome.verdict is None:
            assert outcome.unreadable
        else:
            assert outcome.verdict.findings
            assert all(f.message.endswith((".", ")")) for f in outcome.verdict.findings)


def test_divergences_are_few_and_explained() -> None:
    """At most five reviewed rules, each with a reason, listing only runnable testcases."""
    divergences = limbo.divergences()
    assert 0 < len(divergences) <= limbo.MAX_DIVERGENCES
    runnable = {c["id"] for c in RUNNABLE}
    seen: set[str] = set()
    for divergence in divergences:
        assert divergence.rule and len(divergence.reason.split()) >= 10
        assert divergence.ids
        assert set(divergence.ids) <= runnable, set(divergence.ids) - runnable
        assert not seen & set(divergence.ids)
        seen |= set(divergence.ids)


def test_skips_are_by_rule_and_few() -> None:
    """Only constraints sipsgate cannot express skip a testcase; most of them run."""
    reasons = {limbo.unsupported(c) for c in SKIPPED}
    assert len(reasons) <= 8
    assert len(RUNNABLE) >= 180
    assert not [c["id"] for c in SKIPPED if c.get("crls")]


@pytest.mark.parametrize(
    ("case_id", "reason"),
    [
        ("rfc5280::nc::excluded-dns-match", Reason.NAME_CONSTRAINTS),
        ("rfc5280::nc::permitted-ip-mismatch", Reason.NAME_CONSTRAINTS),
        ("rfc5280::nc::excluded-ipv6-match", Reason.NAME_CONSTRAINTS),
        ("rfc5280::nc::intermediate-with-san-rejected-by-root-nc", Reason.NAME_CONSTRAINTS),
        ("rfc5280::nc::restrictive-permits-in-intermediates-widens", Reason.NAME_CONSTRAINTS),
        ("rfc5280::nc::nc-forbids-othername", Reason.NAME_CONSTRAINTS),
        ("rfc5280::nc::invalid-dnsname-leading-period", Reason.NAME_CONSTRAINTS),
        ("cve::cve-2025-61727", Reason.NAME_CONSTRAINTS),
        ("cve::cve-2025-61727-nc-permits-variant", Reason.NAME_CONSTRAINTS),
        ("pathological::nc-dos-2", Reason.CHAIN_TOO_COMPLEX),
        ("pathological::nc-dos-3", Reason.CHAIN_TOO_COMPLEX),
        ("rfc5280::unknown-critical-extension-ee", Reason.UNKNOWN_CRITICAL_EXTENSION),
        ("rfc5280::unknown-critical-extension-intermediate", Reason.UNKNOWN_CRITICAL_EXTENSION),
        ("rfc5280::unknown-critical-extension-root", Reason.UNKNOWN_CRITICAL_EXTENSION),
        ("rfc5280::ee-critical-aia-invalid", Reason.UNKNOWN_CRITICAL_EXTENSION),
        ("rfc5280::aki::critical-aki", Reason.UNKNOWN_CRITICAL_EXTENSION),
        ("webpki::ca-as-leaf", Reason.BAD_USAGE),
        ("rfc5280::leaf-ku-keycertsign", Reason.BAD_USAGE),
        ("webpki::explicit-curve", Reason.UNSUPPORTED_KEY),
        ("webpki::forbidden-dsa-leaf", Reason.UNSUPPORTED_KEY),
        ("webpki::forbidden-dsa-root", Reason.UNSUPPORTED_KEY),
        ("rfc5280::ca-empty-subject", Reason.NOT_A_CA),
    ],
)
def test_issue_cases_rejected_for_the_right_reason(case_id: str, reason: Reason) -> None:
    """The false accepts of issue #13 are refused, each with its own reason code."""
    case = next(c for c in RUNNABLE if c["id"] == case_id)
    outcome = limbo.run(case)
    assert outcome.verdict is not None
    assert not outcome.accepted
    assert reason in outcome.verdict.reasons, [f.message for f in outcome.verdict.findings]
