"""The hand-off between relay workers over real sockets: two relays as workers 0 and 1
(one token key, LAN UDP bound with SO_REUSEPORT on one address, the hand-off socket
pairs), each with its own TLS flow to a test upstream. The upstream sends a request
for a base station over the flow of the worker that does NOT own the base station;
it reaches the base station through the owner, and the answer comes back upstream.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace

import pytest

from gateway.relay.handoff import HandOffLink, socket_pair
from gateway.relay.outputs import TransactionDone
from gateway.relay.service import RelaySettings, SipRelay
from gateway.sip import Request, Response, parse_datagram
from tests.e2e.conftest import Pki, relay_section
from tests.integration.trust_env import Env
from tests.sip_peers import DOMAIN
from tests.sip_upstream import TlsUpstream, UpstreamFlow, message_to, recv, udp_socket

WAIT = 10.0
KEY = os.urandom(32)


@asynccontextmanager
async def two_workers(env: Env, upstream: TlsUpstream) -> AsyncIterator[list[SipRelay]]:
    pairs = [socket_pair(), socket_pair()]
    sip = relay_section(f"127.0.0.1:{upstream.port}", tcp=False)
    relays: list[SipRelay] = []
    async with AsyncExitStack() as stack:
        stack.callback(lambda: [s.close() for pair in pairs for s in pair])
        for index in (0, 1):
            relay = SipRelay(
                sip,
                env.connector,
                settings=RelaySettings(
                    worker=index, workers=2, token_key=KEY, reuse_port=True, reconnect_min=0.05
                ),
                handoff=HandOffLink(pairs[index][0], [pairs[0][1], pairs[1][1]]),
            )
            task = asyncio.create_task(relay.serve())
            stack.push_async_callback(_cancel, task)
            async with asyncio.timeout(WAIT):
                await relay.ready.wait()
                await relay.wait_for_flow(1)
            # worker 1 binds the port worker 0 bound, as the pool does
            host, port = relay.udp_addresses[0]
            sip = replace(sip, listen_udp=(f"{host}:{port}",))
            relays.append(relay)
        await upstream.wait_for_flows(2)
        yield relays


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def register_from(sock: socket.socket, branch: str) -> bytes:
    host, port = sock.getsockname()
    return (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:bs@{DOMAIN}>;tag=r1\r\n"
        f"To: <sip:bs@{DOMAIN}>\r\n"
        f"Call-ID: {branch}@bs\r\n"
        "CSeq: 1 REGISTER\r\n"
        f"Contact: <sip:bs@{host}:{port}>\r\n"
        "Expires: 600\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def flow_of(relay: SipRelay, upstream: TlsUpstream) -> UpstreamFlow:
    local = relay.core.upstream_local
    assert local is not None
    return upstream.flows[int(local.rsplit(":", 1)[1])]


async def test_a_request_on_the_other_workers_flow_reaches_the_base_station(
    env: Env, pki: Pki
) -> None:
    upstream = TlsUpstream(pki.leaf)
    await upstream.start()
    station = udp_socket()
    try:
        async with two_workers(env, upstream) as relays:
            finished: list[list[TransactionDone]] = [[], []]
            for relay, seen in zip(relays, finished, strict=True):
                relay.observers.append(seen.append)
            station.sendto(register_from(station, "z9hG4bK-reg1"), relays[0].udp_addresses[0])
            # The kernel gave the base station to one worker: its flow carries the REGISTER.
            got = await asyncio.wait(
                [asyncio.create_task(flow_of(r, upstream).next()) for r in relays],
                timeout=WAIT,
                return_when=asyncio.FIRST_COMPLETED,
            )
            ((done,), pending) = got
            for task in pending:
                task.cancel()
            register = done.result()
            assert isinstance(register, Request) and register.method == "REGISTER"
            owner = next(
                i for i, r in enumerate(relays) if r.core.upstream_local in str(register.headers)
            )
            path = (register.headers.get("Path") or "").replace(";ob", "")
            other = flow_of(relays[1 - owner], upstream)

            # A MESSAGE following that Path, sent over the OTHER worker's flow.
            host, port = station.getsockname()
            message = message_to(f"sip:bs@{host}:{port}", "z9hG4bK-handed1")
            message = message.replace(b"Max-Forwards:", f"Route: {path}\r\nMax-Forwards:".encode())
            other.writer.write(message)
            delivered = await recv(station, WAIT)
            assert delivered is not None and delivered.startswith(b"MESSAGE "), delivered
            request = parse_datagram(delivered)
            assert isinstance(request, Request)
            # The base station answers; its owner's transaction sends the 200 upstream.
            vias = "".join(f"Via: {v}\r\n" for v in request.headers.get_all("Via"))
            sender, receiver = request.headers.get("From"), request.headers.get("To")
            answer = (
                f"SIP/2.0 200 OK\r\n{vias}From: {sender}\r\nTo: {receiver};tag=bs\r\n"
                f"Call-ID: {request.call_id}\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
            )
            station.sendto(answer.encode(), relays[0].udp_addresses[0])
            mine = flow_of(relays[owner], upstream)
            async with asyncio.timeout(WAIT):
                while True:
                    reply = await mine.next()
                    if isinstance(reply, Response) and reply.call_id == request.call_id:
                        break
            assert reply.status == 200
            # The owner relayed it as a transaction of its own; the other only passed it on.
            assert [(d.direction, d.method, d.status) for d in finished[owner]] == [
                ("inbound", "MESSAGE", 200)
            ]
            assert finished[1 - owner] == []
            assert other.received.empty(), "nothing went back on the other worker's flow"
            dropped = relays[1 - owner].metrics.dropped
            assert (
                dropped.value(reason="handoff-full") == dropped.value(reason="handoff-failed") == 0
            )
    finally:
        station.close()
        await upstream.close()
