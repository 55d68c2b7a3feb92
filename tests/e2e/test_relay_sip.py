"""The SIP relay end to end: SIPp base stations → sipsgate → TLS → kamailio.

kamailio (Debian, TLS module) is the upstream registrar/proxy with digest auth on
REGISTER and Path support; SIPp (Debian's, no TLS) plays the base stations on UDP
and TCP; sipsgate runs in the test's event loop with a real SQLite store and the
real trust decision. Nothing is stubbed and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import pytest

from certstore.model import PinDecision
from gateway.config import Duration
from gateway.relay.outputs import TransactionDone
from gateway.relay.service import SipRelay
from gateway.relay.status import RelayStatus
from tests.e2e.conftest import Pki, relay_section, serving_relay
from tests.integration.trust_env import ADMIN, Env, make_env
from tests.sip_peers import DOMAIN, KamailioRegistrar, Sipp

pytestmark = pytest.mark.slow
WAIT = 30.0


@pytest.fixture
def kamailio(pki: Pki) -> Iterator[KamailioRegistrar]:
    with KamailioRegistrar(pki.leaf) as server:
        yield server


@dataclass
class Watch:
    """Every transaction the relay completed, with a bounded wait for one."""

    done: list[TransactionDone] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, done: TransactionDone) -> None:
        self.done.append(done)
        self._changed.set()

    async def wait(self, predicate: Callable[[TransactionDone], bool]) -> TransactionDone:
        async with asyncio.timeout(WAIT):
            while True:
                for done in self.done:
                    if predicate(done):
                        return done
                self._changed.clear()
                await self._changed.wait()

    def registered(self, call_id: str) -> Callable[[TransactionDone], bool]:
        return lambda d: d.method == "REGISTER" and d.status == 200 and d.call_id == call_id


@dataclass
class Running:
    relay: SipRelay
    watch: Watch

    @property
    def udp(self) -> tuple[str, int]:
        return self.relay.udp_addresses[0]

    @property
    def tcp(self) -> tuple[str, int]:
        return self.relay.tcp_addresses[0]


class Upstream(Protocol):
    """A registrar started by the test (kamailio, Net::SIP): where it listens for TLS."""

    port: int


@asynccontextmanager
async def running_relay(
    env: Env,
    kamailio: Upstream,
    *,
    wait_for_flow: bool = True,
    keepalive: float = 30.0,
    status: RelayStatus | None = None,
) -> AsyncIterator[Running]:
    sip = replace(relay_section(f"127.0.0.1:{kamailio.port}"), keepalive=Duration(keepalive))
    watch = Watch()
    async with serving_relay(
        env, sip, wait_for_flow=wait_for_flow, status=status, observers=(watch,)
    ) as relay:
        yield Running(relay, watch)


def assert_ok(result: object, what: str) -> None:
    assert getattr(result, "ok", False), f"{what} failed: {result!r}"


async def test_register_with_digest_auth_over_udp_and_tcp(
    env: Env, kamailio: KamailioRegistrar
) -> None:
    """A base station registers through sipsgate on UDP and on TCP: 401 passed, then 200."""
    async with running_relay(env, kamailio) as r:
        udp = await Sipp("register.xml", r.udp, service="bs1").run()
        assert_ok(udp, "REGISTER over UDP")
        tcp = await Sipp("register.xml", r.tcp, transport="tcp", service="bs2").run()
        assert_ok(tcp, "REGISTER over TCP")
        statuses = [(d.method, d.status) for d in r.watch.done]
        assert statuses.count(("REGISTER", 401)) == 2
        assert statuses.count(("REGISTER", 200)) == 2
        assert r.relay.core.path_supported is True


async def test_register_with_wrong_password_gets_the_registrars_challenge_again(
    env: Env, kamailio: KamailioRegistrar
) -> None:
    """Failure twin: digest auth is end to end, so a wrong password fails at the registrar."""
    async with running_relay(env, kamailio) as r:
        result = await Sipp(
            "register.xml", r.udp, service="bs1", extra=["-ap", "wrong"], timeout=5
        ).run()
        assert not result.ok
        assert [d.status for d in r.watch.done if d.method == "REGISTER"] == [401, 401]


async def test_call_from_one_base_station_to_another(env: Env, kamailio: KamailioRegistrar) -> None:
    """INVITE/100/180/200/ACK/BYE from a UDP base station to a TCP one, through kamailio."""
    async with running_relay(env, kamailio) as r:
        callee = await Sipp(
            "register_answer.xml", r.tcp, transport="tcp", service="bs2", call_id="call-a-b"
        ).start()
        await r.watch.wait(r.watch.registered("call-a-b"))
        caller = await Sipp(
            "call.xml", r.udp, service="bs1", call_id="call-a-b", auth=False,
            keys={"callee": "bs2"},
        ).run()  # fmt: skip
        assert_ok(caller, "the caller")
        assert_ok(await callee.wait(), "the callee")
        relayed = {(d.direction, d.method, d.status) for d in r.watch.done}
        assert {
            ("outbound", "INVITE", 200),
            ("inbound", "INVITE", 200),
            ("outbound", "BYE", 200),
            ("inbound", "BYE", 200),
        } <= relayed


async def test_incoming_call_reaches_the_base_station_over_its_flow(
    env: Env, kamailio: KamailioRegistrar
) -> None:
    """A call from outside reaches the right one of two registered base stations (Path)."""
    async with running_relay(env, kamailio) as r:
        other = await Sipp("register.xml", r.tcp, transport="tcp", service="bs2").run()
        assert_ok(other, "the other base station's REGISTER")
        callee = await Sipp(
            "register_answer.xml", r.udp, service="bs1", call_id="incoming-1"
        ).start()
        await r.watch.wait(r.watch.registered("incoming-1"))
        outside = await Sipp(
            "call.xml", ("127.0.0.1", kamailio.udp_port), service="provider-user",
            call_id="incoming-1", auth=False, keys={"callee": "bs1"},
        ).run()  # fmt: skip
        assert_ok(outside, "the outside caller")
        assert_ok(await callee.wait(), "the called base station")
        invite = await r.watch.wait(lambda d: d.direction == "inbound" and d.method == "INVITE")
        assert invite.status == 200
        bye = await r.watch.wait(lambda d: d.direction == "inbound" and d.method == "BYE")
        assert bye.status == 200


async def test_cancel_while_ringing(env: Env, kamailio: KamailioRegistrar) -> None:
    """The caller hangs up while the callee rings: CANCEL, 200, 487 and ACK on both sides."""
    async with running_relay(env, kamailio) as r:
        callee = await Sipp(
            "register_cancelled.xml", r.udp, service="bs2", call_id="cancel-1"
        ).start()
        await r.watch.wait(r.watch.registered("cancel-1"))
        caller = await Sipp(
            "call_cancel.xml", r.tcp, transport="tcp", service="bs1", call_id="cancel-1",
            auth=False, keys={"callee": "bs2"},
        ).run()  # fmt: skip
        assert_ok(caller, "the caller")
        assert_ok(await callee.wait(), "the callee")
        outcomes = {(d.direction, d.method, d.status) for d in r.watch.done}
        assert ("outbound", "INVITE", 487) in outcomes
        assert ("inbound", "INVITE", 487) in outcomes


async def test_rejected_certificate_then_trusted_without_restart(tmp_path: Path, pki: Pki) -> None:
    """An untrusted upstream gets 503 with the reason; trusting its chain fixes the next one."""
    environment = make_env(tmp_path / "store.db")
    try:
        with KamailioRegistrar(pki.other_leaf) as kamailio:
            async with running_relay(environment, kamailio, wait_for_flow=False) as r:
                refused = await Sipp("register_503.xml", r.udp, service="bs1").run()
                assert_ok(refused, "the REGISTER refused with 503")
                answered = await r.watch.wait(lambda d: d.status == 503)
                assert answered.local
                rejected = environment.rejected()
                assert len(rejected) == 1
                assert rejected[0].chain[0].fingerprint == pki.other_leaf.fingerprint
                assert r.relay.metrics.connect_failures.value(kind="rejected") >= 1

                environment.trust(pki.other_root)
                accepted = await Sipp("register.xml", r.udp, service="bs1").run()
                assert_ok(accepted, "the REGISTER after trusting the chain")
                assert r.relay.connects == 1
    finally:
        environment.store.close()


async def test_revoked_flow_is_reopened_only_when_trusted_again(
    env: Env, kamailio: KamailioRegistrar, pki: Pki
) -> None:
    """A reject pin closes the live flow; until it is lifted every REGISTER gets 503."""
    async with running_relay(env, kamailio) as r:
        assert_ok(await Sipp("register.xml", r.udp, service="bs1").run(), "first REGISTER")
        env.pin(pki.leaf, PinDecision.REJECT)
        closed = env.connector.revalidate()
        assert len(closed) == 1
        refused = await Sipp("register_503.xml", r.udp, service="bs1").run()
        assert_ok(refused, "the REGISTER refused while the pin stands")
        assert r.relay.connects == 1
        (pin,) = env.store.list_pins()
        env.store.remove_pin(pin.id, actor=ADMIN)
        assert_ok(await Sipp("register.xml", r.udp, service="bs1").run(), "REGISTER after")
        assert r.relay.connects == 2


async def test_kamailio_restart_reestablishes_the_flow(
    env: Env, kamailio: KamailioRegistrar
) -> None:
    """kamailio restarts (registrations lost): the flow comes back, the refresh re-registers
    and calls reach the base station over the new flow."""
    async with running_relay(env, kamailio) as r:
        assert_ok(await Sipp("register.xml", r.udp, service="bs1").run(), "REGISTER")
        kamailio.restart()
        async with asyncio.timeout(WAIT):
            await r.relay.wait_for_flow(2)
        callee = await Sipp(
            "register_answer.xml", r.udp, service="bs1", call_id="after-restart"
        ).start()
        await r.watch.wait(r.watch.registered("after-restart"))
        outside = await Sipp(
            "call.xml", ("127.0.0.1", kamailio.udp_port), service="provider-user",
            call_id="after-restart", auth=False, keys={"callee": "bs1"},
        ).run()  # fmt: skip
        assert_ok(outside, "the call after the restart")
        assert_ok(await callee.wait(), "the called base station")


async def test_registrar_without_path_support_gets_rewritten_contacts(env: Env, pki: Pki) -> None:
    """Fallback: the registrar ignores Path, so later REGISTERs carry a Contact of ours.

    The first registration (another base station's) shows the registrar ignores Path;
    its raw Contact stays bound (on a real LAN the provider cannot reach it).
    """
    with KamailioRegistrar(pki.leaf, use_path=False) as kamailio:
        async with running_relay(env, kamailio) as r:
            assert_ok(await Sipp("register.xml", r.udp, service="bs0").run(), "REGISTER")
            assert r.relay.core.path_supported is False
            callee = await Sipp(
                "register_answer.xml", r.udp, service="bs1", call_id="no-path"
            ).start()
            await r.watch.wait(r.watch.registered("no-path"))
            outside = await Sipp(
                "call.xml", ("127.0.0.1", kamailio.udp_port), service="provider-user",
                call_id="no-path", auth=False, keys={"callee": "bs1"},
            ).run()  # fmt: skip
            assert_ok(outside, "the call to the base station")
            assert_ok(await callee.wait(), "the called base station")


async def test_malformed_sip_from_one_base_station_does_not_disturb_a_call(
    env: Env, kamailio: KamailioRegistrar
) -> None:
    """Garbage and a flood from other base stations while a call is set up and torn down."""
    async with running_relay(env, kamailio) as r:
        callee = await Sipp(
            "register_answer.xml", r.tcp, transport="tcp", service="bs2", call_id="calm"
        ).start()
        await r.watch.wait(r.watch.registered("calm"))
        # A broken base station at 127.0.0.2: garbage and a flood above its rate limit.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bad:
            bad.bind(("127.0.0.2", 0))
            for i in range(3000):
                bad.sendto(b"\x00\xffGARBAGE %d\r\n\r\n" % i, r.udp)
            bad.sendto(b"INVITE sip:x@y SIP/2.0\r\nVia: broken\r\n\r\n", r.udp)
        # Another at 127.0.0.3 on TCP: a request missing its headers (400), then junk.
        reader, writer = await asyncio.open_connection(*r.tcp, local_addr=("127.0.0.3", 0))
        writer.write(b"OPTIONS sip:x@" + DOMAIN.encode() + b" SIP/2.0\r\nContent-Length: 0\r\n\r\n")
        writer.write(b"\x16\x03\x01 not sip at all\r\n\r\n")
        async with asyncio.timeout(WAIT):
            answer = await reader.read()  # the relay answers 400, then closes this one flow
        writer.close()
        await writer.wait_closed()
        assert answer.startswith(b"SIP/2.0 400 ")

        caller = await Sipp(
            "call.xml", r.udp, service="bs1", call_id="calm", auth=False, keys={"callee": "bs2"}
        ).run()
        assert_ok(caller, "the caller")
        assert_ok(await callee.wait(), "the callee")
        dropped = r.relay.metrics.dropped
        assert dropped.value(reason="malformed") >= 1
        assert dropped.value(reason="source-rate") >= 1


async def test_unframeable_tcp_stream_is_answered_then_closed(
    env: Env, kamailio: KamailioRegistrar
) -> None:
    """RFC 3261 §18.3: a request without Content-Length on TCP, or with a body above the
    limit, is answered (400 / 413, saying why) before that connection alone is closed."""
    head = (
        "{method} sip:bs9@" + DOMAIN + " SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 127.0.0.4:5060;branch=z9hG4bK-{n}\r\n"
        "From: <sip:bs9@" + DOMAIN + ">;tag={n}\r\nTo: <sip:bs9@" + DOMAIN + ">\r\n"
        "Call-ID: unframeable-{n}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}\r\n"
    )
    cases = [
        (1, head.format(method="OPTIONS", n=1, extra=""), "SIP/2.0 400 ", "Content-Length"),
        (
            2,
            head.format(method="MESSAGE", n=2, extra="Content-Length: 99999999\r\n"),
            "SIP/2.0 413 ",
            "body limit",
        ),
    ]
    async with running_relay(env, kamailio) as r:
        for n, request, status_line, why in cases:
            reader, writer = await asyncio.open_connection(*r.tcp, local_addr=("127.0.0.4", 0))
            writer.write(request.encode())
            async with asyncio.timeout(WAIT):
                answer = (await reader.read()).decode()  # then EOF: the relay closed it
            writer.close()
            await writer.wait_closed()
            assert answer.startswith(status_line), answer
            assert why in answer.split("\r\n")[0]
            assert f"\r\nCall-ID: unframeable-{n}\r\n" in answer
        # The relay goes on: a base station registers over TCP right after.
        ok = await Sipp("register.xml", r.tcp, transport="tcp", service="bs3").run()
        assert_ok(ok, "REGISTER over TCP after the broken streams")
