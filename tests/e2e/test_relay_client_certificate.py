"""The relay against a TLS 1.3 upstream that refuses sipsgate's client certificate.

``openssl s_server`` demands a client certificate from a CA that did not issue the
device identity. Under TLS 1.3 the client's handshake completes before the server
checks that certificate, so the refusal (an ``unknown_ca`` alert) arrives at the
first read. The relay must count that as a failed connection (backoff, no reconnect
storm) and tell the base station why in its 503 Warning.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from certstore.store import DeviceIdentity
from certstore.x509 import parse_der
from gateway.relay.service import SipRelay
from tests.e2e.conftest import register_request, relay_section, serving_relay
from tests.integration.trust_env import Env, make_env
from tests.pki import CertFactory, Issued
from tests.sip_peers import DOMAIN
from tests.tls_servers import GnutlsServer, OpensslServer

pytestmark = pytest.mark.slow
WAIT = 30.0
WINDOW = 3.0  # seconds of a refused upstream during which connections are counted
REFUSED = "refused sipsgate's client certificate; install a certificate its CA issued"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    environment = make_env(tmp_path / "store.db")
    try:
        yield environment
    finally:
        environment.store.close()


def standard_identity(factory: CertFactory) -> DeviceIdentity:
    """A self-signed device identity, like the one sipsgate generates on first start."""
    device = factory.leaf(None, cn="sipsgate", dns=("sipsgate",), client_auth=True)
    return DeviceIdentity(
        kind="standard",
        chain=(parse_der(device.der),),
        private_key_pem=device.key_pem,
        created_at=dt.datetime.now(dt.UTC),
    )


async def final_response(relay: tuple[str, int], call_id: str) -> str:
    """Send one REGISTER from a base station's UDP socket; the first final answer."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sock.sendto(register_request(sock.getsockname()[1], call_id), relay)
        async with asyncio.timeout(WAIT):
            while True:
                text = (await loop.sock_recv(sock, 65535)).decode()
                if not text.startswith("SIP/2.0 1"):
                    return text


def upstream_server(
    pki: tuple[Issued, Issued, Issued], peer: str, version: str
) -> OpensslServer | GnutlsServer:
    _root, leaf, client_ca = pki
    if peer == "gnutls":
        return GnutlsServer(leaf, client_ca=client_ca, version=version)
    return OpensslServer(leaf, client_ca=client_ca, extra_args=[f"-tls{version.replace('.', '_')}"])


@pytest.fixture(scope="module")
def pki() -> tuple[Issued, Issued, Issued]:
    factory = CertFactory()
    root = factory.ca("Provider Root CA (refusal)")
    return root, factory.leaf(root, cn=DOMAIN, dns=(DOMAIN,)), factory.ca("Provider client CA")


@asynccontextmanager
async def relay_to(
    env: Env, pki: tuple[Issued, Issued, Issued], peer: str, version: str
) -> AsyncIterator[SipRelay]:
    """A relay with the standard identity, to ``peer`` refusing it, while it serves."""
    env.trust(pki[0])
    env.identity[0] = standard_identity(CertFactory())
    with upstream_server(pki, peer, version) as upstream:
        sip = relay_section(f"127.0.0.1:{upstream.port}", tcp=False)
        async with serving_relay(env, sip, reconnect_min=0.5) as relay:
            yield relay


def warning_of(answer: str) -> str:
    assert answer.startswith("SIP/2.0 503"), answer
    return next(line for line in answer.split("\r\n") if line.startswith("Warning:"))


@pytest.mark.parametrize("version", ["1.3", "1.2"])
async def test_refused_client_certificate_backs_off_and_the_503_says_why(
    env: Env, pki: tuple[Issued, Issued, Issued], version: str
) -> None:
    """A refused client certificate: a handful of connections in 3 s, not hundreds, and
    the base station's 503 Warning names the refusal and the fix."""
    async with relay_to(env, pki, "openssl", version) as relay:
        answer = await final_response(relay.udp_addresses[0], "refused-1")
        await asyncio.sleep(WINDOW)  # a measuring window, not a synchronisation
        # Every refusal is counted once, in the handshake (TLS 1.2) or after it (1.3).
        opened = env.connector.metrics.failures.value(transport="sips", kind="refused")
        refused = relay.metrics.connect_failures.value(kind="refused")
        flows = relay.connects  # TLS 1.3: flows whose handshake completed
    warning = warning_of(answer)
    assert REFUSED in warning, warning
    assert "connection was lost" not in warning
    # Backoff 0.25-0.5 s, doubling: at most about five tries in the window (it was ~1400).
    assert flows <= 7, f"{flows} upstream flows opened in {WINDOW:g} s"
    assert 1 <= opened <= 7, f"{opened} TLS connections in {WINDOW:g} s"
    assert refused >= 1


async def test_a_flow_closed_at_once_after_the_handshake_backs_off_too(
    env: Env, pki: tuple[Issued, Issued, Issued]
) -> None:
    """gnutls-serv (TLS 1.3) refuses and closes at once: when the relay's first write
    meets the closed socket before the alert is read, the flow still counts as failed
    (backoff, no storm) and the 503 says what to check."""
    async with relay_to(env, pki, "gnutls", "1.3") as relay:
        answers = [await final_response(relay.udp_addresses[0], f"gnutls-{n}") for n in (1, 2)]
        await asyncio.sleep(WINDOW)  # a measuring window, not a synchronisation
        flows = relay.connects
        failed = sum(
            relay.metrics.connect_failures.value(kind=kind) for kind in ("refused", "closed")
        )
    for answer in answers:
        warning = warning_of(answer)
        assert REFUSED in warning or "accepts sipsgate's client certificate" in warning, warning
    assert flows <= 7, f"{flows} upstream flows opened in {WINDOW:g} s"
    assert failed >= 1
