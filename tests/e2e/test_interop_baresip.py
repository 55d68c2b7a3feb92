"""baresip base stations with sipsgate as their outbound proxy, Kamailio upstream.

baresip 1.0 (Debian) puts the outbound proxy into a preloaded ``Route`` (RFC 3261
§8.1.2, it adds ``;lr`` itself). Two of them register through sipsgate to Kamailio
over TLS, and one calls the other: register, call out, receive a call, hang up, on
UDP and on TCP. Before sipsgate removed the Route naming itself, the INVITE went
upstream with it and Kamailio routed it back to sipsgate's LAN address.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Pki
from tests.e2e.test_relay_sip import running_relay
from tests.integration.trust_env import Env
from tests.interop_peers import Baresip
from tests.sip_peers import KamailioRegistrar

pytestmark = pytest.mark.slow


@pytest.fixture
def kamailio(pki: Pki) -> Iterator[KamailioRegistrar]:
    with KamailioRegistrar(pki.leaf, follow_preloaded_route=True) as server:
        yield server


@pytest.mark.parametrize(
    ("transport", "lr"), [("udp", ";lr"), ("tcp", ";lr"), ("udp", ""), ("tcp", "")]
)
async def test_baresip_calls_baresip_through_sipsgate_as_outbound_proxy(
    env: Env, kamailio: KamailioRegistrar, transport: str, lr: str
) -> None:
    """Both register (401, 200), the call is answered, BYE completes. baresip sends a
    loose Route (it adds ``;lr`` itself), so the account works with and without it."""
    async with running_relay(env, kamailio) as r:
        host, port = r.udp if transport == "udp" else r.tcp
        suffix = "" if transport == "udp" else ";transport=tcp"
        outbound = f"sip:{host}:{port}{suffix}{lr}"
        async with Baresip("bs1", outbound) as caller, Baresip("bs2", outbound) as callee:
            # Registered through sipsgate (baresip may report it before we listen).
            await r.watch.wait(
                lambda _: sum(d.method == "REGISTER" and d.status == 200 for d in r.watch.done) >= 2
            )
            await caller.command("dial", callee.aor)
            await caller.wait_event("CALL_ESTABLISHED")
            await callee.wait_event("CALL_ESTABLISHED")
            assert not any(e.get("type") == "CALL_CLOSED" for e in callee.events)
            await caller.command("hangup")
            await callee.wait_event("CALL_CLOSED")  # the caller's BYE reached it
            await caller.wait_event("CALL_CLOSED")
        relayed = {(d.direction, d.method, d.status) for d in r.watch.done}
        assert {
            ("outbound", "REGISTER", 200),
            ("outbound", "INVITE", 200),
            ("inbound", "INVITE", 200),
            ("outbound", "BYE", 200),
            ("inbound", "BYE", 200),
        } <= relayed, relayed
