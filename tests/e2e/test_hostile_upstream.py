"""A hostile upstream over a real TLS flow: it may reach base stations only through what
sipsgate holds, and a response without a transaction goes only where a request came
from. The relay runs with real sockets (UDP base station, TLS upstream) and the real
trust decision; the upstream is a small TLS server of the test that says what it likes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.relay.service import SipRelay
from gateway.sip import NEED_DATA, Request, Response, StreamFramer, parse_datagram, serialise
from tests.e2e.conftest import relay_section, serving_relay
from tests.integration.trust_env import Env, make_env
from tests.pki import CertFactory, Issued
from tests.sip_peers import DOMAIN
from tests.tls_servers import server_context

WAIT = 10.0
QUIET = 1.0  # how long a socket must stay silent to show nothing was sent to it


@dataclass
class HostileUpstream:
    """A TLS server the relay connects to as its upstream; it keeps what it receives."""

    identity: Issued
    received: asyncio.Queue[Request | Response] = field(default_factory=asyncio.Queue)
    writer: asyncio.StreamWriter | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=server_context(self.identity)
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.connected.set()
        framer = StreamFramer()
        while data := await reader.read(65536):
            framer.receive_data(data)
            while (event := framer.next_event()) is not NEED_DATA:
                if isinstance(event, Request | Response):
                    self.received.put_nowait(event)

    def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    async def next(self) -> Request | Response:
        return await asyncio.wait_for(self.received.get(), WAIT)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


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
async def relay_to(env: Env, upstream: HostileUpstream) -> AsyncIterator[SipRelay]:
    await upstream.start()
    try:
        sip = relay_section(f"127.0.0.1:{upstream.port}", tcp=False)
        async with serving_relay(env, sip, wait_for_flow=True) as relay:
            async with asyncio.timeout(WAIT):
                await upstream.connected.wait()
            yield relay
    finally:
        await upstream.close()


def udp_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


async def recv(sock: socket.socket, within: float) -> bytes | None:
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.sock_recv(sock, 65536), within)
    except TimeoutError:
        return None


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


def message_to(uri: str, branch: str) -> bytes:
    body = "hello from upstream"
    return (
        f"MESSAGE {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 127.0.0.1:5061;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:provider@{DOMAIN}>;tag=u1\r\n"
        f"To: <{uri}>\r\n"
        f"Call-ID: {branch}@upstream\r\n"
        "CSeq: 1 MESSAGE\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


async def answer_for(upstream: HostileUpstream, branch: str) -> Response:
    while True:
        message = await upstream.next()
        if isinstance(message, Response) and message.top_via and message.top_via.branch == branch:
            return message


async def test_upstream_reaches_a_base_station_only_at_an_address_it_holds(
    env: Env, pki: tuple[Issued, Issued]
) -> None:
    """A MESSAGE for an IP address no base station sent from is answered 404 and nothing
    is sent there; the same for the address a base station talks from is delivered."""
    upstream = HostileUpstream(pki[1])
    station = udp_socket()
    victim = udp_socket("127.0.0.99")
    try:
        async with relay_to(env, upstream) as relay:
            victim_port = victim.getsockname()[1]
            upstream.send(message_to(f"sip:x@127.0.0.99:{victim_port}", "z9hG4bK-evil1"))
            assert (await answer_for(upstream, "z9hG4bK-evil1")).status == 404
            assert await recv(victim, QUIET) is None
            # The twin: once the base station has sent a request, its address is held.
            station.sendto(options_from(station, "z9hG4bK-bs1"), relay.udp_addresses[0])
            forwarded = await upstream.next()
            assert isinstance(forwarded, Request) and forwarded.method == "OPTIONS"
            host, port = station.getsockname()
            upstream.send(message_to(f"sip:bs@{host}:{port}", "z9hG4bK-good1"))
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
    upstream = HostileUpstream(pki[1])
    station = udp_socket()
    victim = udp_socket("127.0.0.99")
    try:
        async with relay_to(env, upstream) as relay:
            station.sendto(options_from(station, "z9hG4bK-bs2"), relay.udp_addresses[0])
            forwarded = await upstream.next()
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
            upstream.send(serialise(stray))
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
            upstream.send(serialise(answer))
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
    upstream = HostileUpstream(pki[1])
    station = udp_socket()
    try:
        async with relay_to(env, upstream) as relay:
            request = options_from(station, "z9hG4bK-nomf").replace(b"Max-Forwards: 70\r\n", b"")
            assert b"Max-Forwards" not in request
            station.sendto(request, relay.udp_addresses[0])
            forwarded = await upstream.next()
            assert isinstance(forwarded, Request)
            assert forwarded.headers.get("Max-Forwards") == "70"
    finally:
        station.close()
