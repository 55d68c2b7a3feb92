"""A registrar that never answers CRLF keep-alive pings: Net::SIP (Perl) over TLS.

RFC 5626 §4.4.1 lets a flow's far end ignore CRLF pings unless it negotiated
outbound. Net::SIP 0.835's registrar and stateless proxy (Debian's libnet-sip-perl,
TLS through IO::Socket::SSL) is such a peer. A base station registers through
sipsgate; the registration is held for five minutes with a 30 s keep-alive; then a
call from outside, through Net::SIP, must still reach the base station over the flow
it registered on. Before the fix sipsgate took the missing pongs for a dead flow,
closed it ~37 s after connecting, and the call had nowhere to go. Net::SIP also
closes a connection that carried no SIP message for 120 s (CRLF pings do not count),
which the OPTIONS keep-alive sipsgate sends to such an upstream prevents.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.relay.outputs import CloseUpstream, Output, SendUpstream
from gateway.relay.proxy import ProxyCore
from tests.e2e.conftest import Pki
from tests.e2e.test_relay_sip import assert_ok, running_relay
from tests.integration.trust_env import Env
from tests.interop_peers import NetSipRegistrar
from tests.sip_peers import KamailioRegistrar, Sipp

pytestmark = pytest.mark.slow
WAIT = 30.0
#: How long the registration is held; SIPSGATE_HOLD_SECONDS shortens it for debugging.
HOLD = float(os.environ.get("SIPSGATE_HOLD_SECONDS", "300"))
PING = b"\r\n\r\n"


@pytest.fixture
def registrar(pki: Pki) -> Iterator[NetSipRegistrar]:
    with NetSipRegistrar(pki.leaf) as server:
        yield server


@dataclass
class KeepAliveSeen:
    """When sipsgate sent pings, got its first pong, and declared the flow dead."""

    pings: list[float] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    closed_at: float = 0.0


def watch_keepalive(core: ProxyCore, seen: KeepAliveSeen) -> None:
    """Record in ``seen`` the pings ``core`` sends, its first pong, its verdict of death."""
    fire, pong = core.handle_timer, core.receive_pong

    def timer(now: float) -> list[Output]:
        out = fire(now)
        seen.pings.extend(now for o in out if isinstance(o, SendUpstream) and o.data == PING)
        if any(isinstance(o, CloseUpstream) for o in out) and not seen.closed.is_set():
            seen.closed_at = now
            seen.closed.set()
        return out

    def answered() -> list[Output]:
        seen.answered.set()
        return pong()

    core.handle_timer = timer  # type: ignore[method-assign]
    core.receive_pong = answered  # type: ignore[method-assign]


@pytest.mark.timeout(HOLD + 240)
async def test_registration_is_held_five_minutes_and_the_call_still_arrives(
    env: Env, registrar: NetSipRegistrar
) -> None:
    """Pings every ~30 s are never answered; the flow stays; the call reaches bs1."""
    seen = KeepAliveSeen()
    async with running_relay(env, registrar, keepalive=30.0) as r:
        watch_keepalive(r.relay.core, seen)
        callee = await Sipp(
            "register_hold_answer.xml", r.udp, service="bs1", call_id="held-1",
            auth=False, timeout=HOLD + 60,
        ).start()  # fmt: skip
        await r.watch.wait(
            lambda _: sum(d.method == "REGISTER" and d.status == 200 for d in r.watch.done) >= 2
        )
        assert r.relay.core.path_supported is False  # the Contact carries the flow now
        # Without pongs, a dead flow shows as a TCP error: unacknowledged data is bounded.
        flow = r.relay._flow
        assert flow is not None and flow.transport is not None
        sock = flow.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 40_000
        # The subject of this test is time passing: the registration is held, untouched.
        await asyncio.sleep(HOLD)
        caller = await Sipp(
            "call.xml", ("127.0.0.1", registrar.udp_port), service="outside",
            call_id="held-1", auth=False, keys={"callee": "bs1"},
        ).run()  # fmt: skip
        assert_ok(caller, "the caller from outside")
        assert_ok(await callee.wait(), "the base station holding its registration")
        relayed = {(d.direction, d.method, d.status) for d in r.watch.done}
        assert {("inbound", "INVITE", 200), ("inbound", "BYE", 200)} <= relayed, relayed
        assert r.relay.connects == 1, "the flow carrying the registration was reopened"
        assert r.relay.core.pongs_answered is False  # Net::SIP never answered a ping
        assert len(seen.pings) >= int(HOLD / 30), seen.pings
        assert not seen.answered.is_set() and not seen.closed.is_set()
        registers = [d for d in r.watch.done if d.method == "REGISTER"]
        assert len(registers) == 2  # held: no refresh in between
        assert registrar.running


@pytest.fixture
def kamailio(pki: Pki) -> Iterator[KamailioRegistrar]:
    with KamailioRegistrar(pki.leaf) as server:
        yield server


def _family(pid: int) -> list[int]:
    """``pid`` and every process below it (kamailio's TLS workers are its children)."""
    family, todo = [pid], [pid]
    while todo:
        parent = todo.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                family.append(int(entry.name))
                todo.append(int(entry.name))
    return family


async def test_a_short_keepalive_still_finds_a_frozen_kamailio_dead(
    env: Env, kamailio: KamailioRegistrar
) -> None:
    """Keep-alive 4 s, pong timeout 10 s: Kamailio answers pings, is then frozen
    (SIGSTOP), and the flow is declared dead 10 s after the first unanswered ping,
    though pings keep going out every ~4 s."""
    seen = KeepAliveSeen()
    async with running_relay(env, kamailio, keepalive=4.0) as r:
        watch_keepalive(r.relay.core, seen)
        async with asyncio.timeout(WAIT):
            await seen.answered.wait()
        assert r.relay.core.pongs_answered
        frozen = _family(kamailio.pid)
        loop = asyncio.get_running_loop()
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            frozen_at = loop.time()
            async with asyncio.timeout(WAIT):
                await seen.closed.wait()
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        unanswered = [t for t in seen.pings if t >= frozen_at]
        assert len(unanswered) >= 2  # pings went on while the deadline ran
        assert seen.closed_at <= unanswered[0] + 10.0 + 0.5
