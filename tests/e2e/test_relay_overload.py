"""Overload from one base station, on the wire: SIPp above ``sip.source_rate``.

The rule (docs/deployment.md, section 4): past its rate, a source's new requests are
answered ``503`` with ``Retry-After`` while its answer budget (``sip.source_answers``)
lasts; beyond it they are dropped and counted. Nothing is lost without trace: every
request SIPp sent is relayed (200 from kamailio), answered 503, or counted as dropped.
And past ``sip.max_transactions`` in progress, a new call is answered 503 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.relay.service import udp_drops
from tests.e2e.conftest import Pki, register_request, relay_section, serving_relay
from tests.integration.trust_env import Env
from tests.sip_peers import KamailioRegistrar, Sipp
from tests.tls_servers import server_context

pytestmark = pytest.mark.slow

RATE = 100  # sip.source_rate (and source_burst)
ANSWERS = 50  # sip.source_answers
SENT = 1500
WAIT = 30.0
FLOOD = 50_000  # CRLF keep-alives sent while the relay cannot read
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


@asynccontextmanager
async def silent_upstream(pki: Pki) -> AsyncIterator[tuple[int, bytearray, asyncio.Event]]:
    """A TLS upstream that completes handshakes, reads everything and answers nothing:
    what the relay sends it stays in progress. Yields its port, what it received and
    an event set whenever more arrived."""
    received = bytearray()
    arrived = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                received.extend(data)
                arrived.set()
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0, ssl=server_context(pki.leaf))
    try:
        yield server.sockets[0].getsockname()[1], received, arrived
    finally:
        server.close()
        await server.wait_closed()


async def test_past_max_transactions_a_new_call_gets_503_at_once(env: Env, pki: Pki) -> None:
    """Two REGISTERs the upstream never answers fill max_transactions (a server and a
    client transaction each); the next INVITE is answered 503 with Retry-After before
    any upstream work, and its ACK is absorbed, not sent upstream as a stray."""
    async with silent_upstream(pki) as (port, received, arrived):
        sip = replace(relay_section(f"127.0.0.1:{port}"), max_transactions=4)
        async with serving_relay(env, sip, wait_for_flow=True) as relay:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bs:
                bs.bind(("127.0.0.1", 0))
                for n in (1, 2):
                    bs.sendto(
                        register_request(bs.getsockname()[1], f"held-{n}"), relay.udp_addresses[0]
                    )
                async with asyncio.timeout(WAIT):
                    while received.count(b"REGISTER sip:") < 2:
                        arrived.clear()
                        await arrived.wait()
            assert relay.core.table.live >= 4
            before = bytes(received)
            result = await Sipp(
                "invite_overloaded.xml", relay.udp_addresses[0], auth=False,
                keys={"callee": "bs2"},
            ).run()  # fmt: skip
            assert result.ok, result
            refused = relay.metrics.refused.value(reason="overload")
            await asyncio.sleep(0.5)  # an ACK sent upstream would have arrived by now
        assert refused == 1
        assert bytes(received) == before  # neither the INVITE nor its ACK went upstream


async def test_datagrams_the_kernel_drops_before_the_relay_reads_them_are_counted(
    env: Env, pki: Pki
) -> None:
    """Past capacity the LAN socket's receive queue overflows: those requests never
    reach the relay, and are counted all the same (reason receive-queue)."""
    async with silent_upstream(pki) as (port, _, _):
        sip = replace(
            relay_section(f"127.0.0.1:{port}"), source_rate=1_000_000, source_burst=1_000_000
        )
        async with serving_relay(env, sip, wait_for_flow=True) as relay:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bs:
                for _ in range(FLOOD):  # the relay's loop does not run meanwhile
                    bs.sendto(b"\r\n\r\n", relay.udp_addresses[0])
            await asyncio.sleep(5.0)  # the relay counts every 2 s
            counted = relay.metrics.dropped.value(reason="receive-queue")
            in_kernel = kernel_drops(relay._udp_inodes)
        assert 0 < counted == in_kernel < FLOOD


def kernel_drops(inodes: set[int]) -> int:
    """What the kernel itself reports dropped on these sockets."""
    return sum(
        udp_drops(Path(table).read_text(), inodes) for table in ("/proc/net/udp", "/proc/net/udp6")
    )
