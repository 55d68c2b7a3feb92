"""End-to-end fixtures: a provider PKI, a trust environment, and SIPp processes a
failed test left behind killed by PID."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import SipSection
from gateway.relay.outputs import TransactionDone
from gateway.relay.service import RelaySettings, SipRelay
from gateway.relay.status import RelayStatus
from tests.integration.trust_env import Env, make_env
from tests.pki import CertFactory, Issued
from tests.sip_peers import DOMAIN, Sipp

WAIT = 30.0  # seconds a relay gets to listen (and to open its first upstream flow)


@pytest.fixture(autouse=True)
async def _sipp_cleanup() -> AsyncIterator[None]:
    yield
    await Sipp.cleanup()


@dataclass(frozen=True)
class Pki:
    """The provider's CA and leaf (named DOMAIN), and an unknown CA with its own leaf."""

    root: Issued
    leaf: Issued
    other_root: Issued
    other_leaf: Issued


@pytest.fixture(scope="module")
def pki() -> Pki:
    factory = CertFactory()
    root = factory.ca("sipsgate e2e Root CA")
    other = factory.ca("Unknown Provider CA")
    return Pki(
        root=root,
        leaf=factory.leaf(root, cn=DOMAIN, dns=(DOMAIN,)),
        other_root=other,
        other_leaf=factory.leaf(other, cn=DOMAIN, dns=(DOMAIN,)),
    )


@pytest.fixture
def env(tmp_path: Path, pki: Pki) -> Iterator[Env]:
    """A real SQLite store and connector that trust the provider's CA."""
    environment = make_env(tmp_path / "store.db")
    environment.trust(pki.root)
    try:
        yield environment
    finally:
        environment.store.close()


def relay_section(upstream_address: str, *, tcp: bool = True) -> SipSection:
    """The relay of DOMAIN dialled at ``upstream_address``, listening on loopback UDP
    (and TCP) on ports the kernel picks."""
    return SipSection(
        listen_udp=("127.0.0.1:0",),
        listen_tcp=("127.0.0.1:0",) if tcp else (),
        upstream=f"sips:{DOMAIN}",
        upstream_address=upstream_address,
    )


@asynccontextmanager
async def serving_relay(
    env: Env,
    sip: SipSection,
    *,
    reconnect_min: float = 0.05,
    wait_for_flow: bool = False,
    status: RelayStatus | None = None,
    observers: Sequence[Callable[[TransactionDone], None]] = (),
) -> AsyncIterator[SipRelay]:
    """A relay serving in a task while the block runs (listening, and with
    ``wait_for_flow`` its first upstream flow up), cancelled after it."""
    relay = SipRelay(
        sip, env.connector, settings=RelaySettings(reconnect_min=reconnect_min), status=status
    )
    relay.observers.extend(observers)
    task = asyncio.create_task(relay.serve())
    try:
        async with asyncio.timeout(WAIT):
            await relay.ready.wait()
            if wait_for_flow:
                await relay.wait_for_flow(1)
        yield relay
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def register_request(port: int, call_id: str, *, expires: int = 60, tag: str = "1") -> bytes:
    """A REGISTER of bs1 from a base station's UDP socket on ``port``."""
    return (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{call_id};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:bs1@{DOMAIN}>;tag={tag}\r\n"
        f"To: <sip:bs1@{DOMAIN}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 REGISTER\r\n"
        f"Contact: <sip:bs1@127.0.0.1:{port}>\r\n"
        f"Expires: {expires}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def register(relay: SipRelay, n: int) -> str:
    """One REGISTER from a raw UDP socket (``n`` makes it unique); the final answer as
    text."""
    host, port = relay.udp_addresses[0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    local = sock.getsockname()[1]
    request = register_request(local, f"retry-after-{n}", expires=3600, tag=f"t{n}")
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendto(sock, request, (host, port))
        async with asyncio.timeout(WAIT):
            while True:
                data = (await loop.sock_recv(sock, 65535)).decode()
                if not re.match(r"SIP/2\.0 1\d\d ", data):
                    return data
    finally:
        sock.close()


def header(response: str, name: str) -> str:
    match = re.search(rf"^{name}: *(.*?)\r$", response, re.MULTILINE | re.IGNORECASE)
    assert match, f"no {name} in {response!r}"
    return match.group(1)
