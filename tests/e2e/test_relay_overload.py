"""Overload from one base station, on the wire: SIPp above ``sip.source_rate``.

The rule (docs/deployment.md, "Limits"): past its rate, a source's new requests are
answered ``503`` with ``Retry-After`` while its answer budget (``sip.source_answers``)
lasts; beyond it they are dropped and counted. Nothing is lost without trace: every
request SIPp sent is relayed (200 from kamailio), answered 503, or counted as dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.e2e.conftest import Pki, relay_section, serving_relay
from tests.integration.trust_env import Env
from tests.sip_peers import KamailioRegistrar, Sipp

pytestmark = pytest.mark.slow

RATE = 100  # sip.source_rate (and source_burst)
ANSWERS = 50  # sip.source_answers
SENT = 1500
OFFERED = 500  # requests/s SIPp offers: five times the source's rate


@pytest.fixture
def kamailio(pki: Pki) -> Iterator[KamailioRegistrar]:
    with KamailioRegistrar(pki.leaf) as server:
        yield server


def screen_counts(output: str) -> dict[str, int]:
    """Messages per scenario step from SIPp's final screen (``OPTIONS ---------->  1500``)."""
    found = re.findall(r"^\s+(\w+) (?:-+>|<-+)\s+(\d+)", output, re.MULTILINE)
    return {step: int(count) for step, count in found}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_source_over_its_rate_gets_503_with_retry_after_then_counted_drops(
    env: Env, kamailio: KamailioRegistrar, transport: str
) -> None:
    sip = replace(
        relay_section(f"127.0.0.1:{kamailio.port}"),
        source_rate=RATE,
        source_burst=RATE,
        source_answers=ANSWERS,
    )
    async with serving_relay(env, sip, wait_for_flow=True) as relay:
        target = (relay.udp_addresses if transport == "udp" else relay.tcp_addresses)[0]
        result = await Sipp(
            "options_overload.xml", target, transport=transport, auth=False, calls=SENT,
            extra=["-r", str(OFFERED), "-nr", "-recv_timeout", "3000"],
        ).run()  # fmt: skip
        dropped = relay.metrics.dropped.value(reason="source-rate")
        refused = relay.metrics.refused.value(reason="source-rate")
    n = screen_counts(result.output)
    assert n["OPTIONS"] == SENT, result.output
    relayed, answered = n["200"], n["503"]
    # Every request is accounted for: relayed, answered 503, or counted as dropped.
    assert relayed + answered + dropped == SENT, (relayed, answered, dropped)
    assert refused == answered
    # Each 503 carried a Retry-After (SIPp's check_it fails the call otherwise).
    assert "regexp" not in result.errors.lower(), result.errors
    # The burst went through, then the answer budget was used, then drops began.
    seconds = SENT / OFFERED + 1  # the run's length, with room for a slow start
    assert RATE <= relayed <= RATE + RATE * seconds
    assert ANSWERS <= answered <= ANSWERS + ANSWERS * seconds
    assert dropped > 0
