"""A hostile upstream over a real TLS flow: it may reach base stations only through what
sipsgate holds, and a response without a transaction goes only where a request came
from. The relay runs with real sockets (UDP base station, TLS upstream) and the real
trust decision; the upstream is a small TLS server of the test that says what it likes.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.relay.service import SipRelay
from gateway.sip import Request, Response, parse_datagram, serialise
from tests.e2e.conftest import relay_section, serving_relay
from tests.integration.trust_env import Env, make_env
from tests.pki import CertFactory, Issued
from tests.sip_peers import DOMAIN
from tests.sip_upstream import TlsUpstream, message_to, recv, udp_socket

WAIT = 10.0
QUIET = 1.0  # how long a socket must stay silent to show nothing was sent to it


@pytest.fixture(scope="module")
def pki() -> tuple[Issued, Issued]:
    factory = CertFactory()
    root = factory.ca("Hostile Upstream Test Root")
    return root, factory.leaf(root, cn=DOMAIN, dns=(DOMAIN,))


@pytest.fixture
def env(tmp_path: Path, pki: tuple[Issued, Issued]) -> Iterator[Env]:
    environment = make_env(tmp_path / "store.db")
    environment.trust(pki[0])
    try:
        yield environment
    finally:
        environment.store.close()


@asynccontextmanager
async def relay_to(env: Env, upstream: TlsUpstream) -> AsyncIterator[SipRelay]:
    await upstream.start()
    try:
        sip = relay_section(f"127.0.0.1:{upstream.port}", tcp=False)
        async with serving_relay(env, sip, wait_for_flow=True) as relay:
            await upstream.wait_for_flows(1)
            yield relay
    finally:
        await upstream.close()


def options_from(sock: socket.socket, branch: str) -> bytes:
    host, port = sock.getsockname()
    return (
        f"OPTIONS sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:bs@{DOMAIN}>;tag=b1\r\n"
        f"To: <sip:{DOMAIN}>\r\n"
        f"Call-ID: {branch}@bs\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"Contact: <sip:bs@{host}:{port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def answer_for(upstream: TlsUpstream, branch: str) -> Response:
    while True:
        message = await upstream.flow.next()
        if isinstance(message, Response) and message.top_via and message.top_via.branch == branch:
            return message


async def test_upstream_reaches_a_base_station_only_at_an_address_it_holds(
    env: Env, pki: tuple[Issued, Issued]
) -> None:
    """A MESSAGE for an IP address no base station sent from is answered 404 and nothing
    is sent there; the same for the address a base station talks from is delivered."""
    upstream = TlsUpstream(pki[1])
    station = udp_socket()
    victim = udp_socket("127.0.0.99")
    try:
        async with relay_to(env, upstream) as relay:
            victim_port = victim.getsockname()[1]
            upstream.flow.send(message_to(f"sip:x@127.0.0.99:{victim_port}", "z9hG4bK-evil1"))
            assert (await answer_for(upstream, "z9hG4bK-evil1")).status == 404
            assert await recv(victim, QUIET) is None
            # The twin: once the base station has sent a request, its address is held.
            station.sendto(options_from(station, "z9hG4bK-bs1"), relay.udp_addresses[0])
            forwarded = await upstream.flow.next()
            assert isinstance(forwarded, Request) and forwarded.method == "OPTIONS"
            host, port = station.getsockname()
            upstream.flow.send(message_to(f"sip:bs@{host}:{port}", "z9hG4bK-good1"))
            delivered = await recv(station, WAIT)
            assert delivered is not None and delivered.startswith(b"MESSAGE ")
    finally:
        station.close()
        victim.close()


async def test_a_stray_response_is_not_routed_by_its_second_via(
    env: Env, pki: tuple[Issued, Issued]
) -> None:
    """A response carrying sipsgate's branch prefix but no transaction, whose next Via
    names another address, is dropped; nothing reaches that address."""
    upstream = TlsUpstream(pki[1])
    station = udp_socket()
    victim = udp_socket("127.0.0.99")
    try:
        async with relay_to(env, upstream) as relay:
            station.sendto(options_from(station, "z9hG4bK-bs2"), relay.udp_addresses[0])
            forwarded = await upstream.flow.next()
            assert isinstance(forwarded, Request)
            ours = forwarded.headers.get_all("Via")[0]
            victim_port = victim.getsockname()[1]
            stray = Response(
                status=200,
                reason="OK",
                headers=[  # type: ignore[arg-type]
                    ("Via", ours),
                    ("Via", f"SIP/2.0/UDP 127.0.0.99:{victim_port};branch=z9hG4bK-x"),
                    ("From", forwarded.headers.get("From") or ""),
                    ("To", (forwarded.headers.get("To") or "") + ";tag=u2"),
                    ("Call-ID", "stray@upstream"),
                    ("CSeq", "7 INFO"),
                    ("Content-Length", "0"),
                ],
            )
            upstream.flow.send(serialise(stray))
            assert await recv(victim, QUIET) is None
            # The genuine answer still reaches the base station.
            answer = Response(
                status=200,
                reason="OK",
                headers=[
                    (n, v)
                    for n, v in forwarded.headers
                    if n.lower()
                    in (  # type: ignore[arg-type]
                        "via",
                        "from",
                        "to",
                        "call-id",
                        "cseq",
                    )
                ],
            )
            upstream.flow.send(serialise(answer))
            delivered = await recv(station, WAIT)
            assert delivered is not None
            assert isinstance(parse_datagram(delivered), Response)
    finally:
        station.close()
        victim.close()


async def test_a_lan_request_without_max_forwards_gets_70(
    env: Env, pki: tuple[Issued, Issued]
) -> None:
    """RFC 3261 §16.6 step 3: the proxy adds Max-Forwards: 70 (it does not drop it)."""
    upstream = TlsUpstream(pki[1])
    station = udp_socket()
    try:
        async with relay_to(env, upstream) as relay:
            request = options_from(station, "z9hG4bK-nomf").replace(b"Max-Forwards: 70\r\n", b"")
            assert b"Max-Forwards" not in request
            station.sendto(request, relay.udp_addresses[0])
            forwarded = await upstream.flow.next()
            assert isinstance(forwarded, Request)
            assert forwarded.headers.get("Max-Forwards") == "70"
    finally:
        station.close()
