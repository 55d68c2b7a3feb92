"""A SIP upstream the test controls: a TLS server on loopback that keeps every message
each relay flow brings and writes what the test tells it to, plus the small UDP and
message helpers the relay tests that use it share."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from gateway.sip import NEED_DATA, Request, Response, StreamFramer
from tests.pki import Issued
from tests.sip_peers import DOMAIN
from tests.tls_servers import server_context

WAIT = 10.0


@dataclass
class UpstreamFlow:
    """One TLS connection the upstream accepted: what came over it, how to write on it."""

    port: int  # the relay's end
    writer: asyncio.StreamWriter
    received: asyncio.Queue[Request | Response] = field(default_factory=asyncio.Queue)

    async def next(self) -> Request | Response:
        return await asyncio.wait_for(self.received.get(), WAIT)

    def send(self, data: bytes) -> None:
        self.writer.write(data)


@dataclass
class TlsUpstream:
    """A TLS server on 127.0.0.1 standing for the provider; one :class:`UpstreamFlow`
    per connection, keyed by the relay's port."""

    identity: Issued
    flows: dict[int, UpstreamFlow] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=server_context(self.identity)
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        flow = UpstreamFlow(writer.get_extra_info("peername")[1], writer)
        self.flows[flow.port] = flow
        self.changed.set()
        framer = StreamFramer()
        while data := await reader.read(65536):
            framer.receive_data(data)
            while (event := framer.next_event()) is not NEED_DATA:
                if isinstance(event, Request | Response):
                    flow.received.put_nowait(event)

    async def wait_for_flows(self, count: int) -> None:
        """Until ``count`` relay flows are connected (bounded by ``WAIT``)."""
        async with asyncio.timeout(WAIT):
            while len(self.flows) < count:
                self.changed.clear()
                await self.changed.wait()

    @property
    def flow(self) -> UpstreamFlow:
        """The one flow of a single relay (the first connection)."""
        return next(iter(self.flows.values()))

    async def close(self) -> None:
        for flow in self.flows.values():
            flow.writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


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


def message_to(uri: str, branch: str) -> bytes:
    """A MESSAGE from the provider for ``uri``, as an upstream would send it."""
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
