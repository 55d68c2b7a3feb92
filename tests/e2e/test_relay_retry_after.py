"""The 503 a base station gets when the upstream fails, read off the wire.

A rejected upstream certificate is a problem only a person can fix: the 503 says
so with a long ``Retry-After`` and a Warning that names the reason and the command
that reproduces it. An unreachable upstream keeps a short ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from structlog.testing import capture_logs

from gateway.relay.service import SipRelay
from tests.e2e.conftest import Pki, header, register, relay_section, serving_relay
from tests.integration.trust_env import Env, make_env
from tests.sip_peers import DOMAIN
from tests.tls_servers import TlsEchoServer, server_context

WAIT = 30.0
PERSON_WAIT = 300  # RelaySettings.person_retry_after: five minutes


@asynccontextmanager
async def relay_to(env: Env, address: str) -> AsyncIterator[SipRelay]:
    async with serving_relay(env, relay_section(address)) as relay:
        yield relay


async def test_rejected_certificate_gets_a_long_retry_after_and_the_reason(
    tmp_path: Path, pki: Pki
) -> None:
    """Every base station would otherwise ask again each second for a person's problem."""
    env = make_env(tmp_path / "store.db")
    try:
        server = TlsEchoServer(server_context(pki.other_leaf))
        async with server, relay_to(env, f"127.0.0.1:{server.port}") as relay:
            first = await register(relay, 1)
            again = await register(relay, 2)  # answered from the remembered failure
        for response in (first, again):
            assert response.startswith("SIP/2.0 503 "), response
            assert 'text="Upstream certificate rejected"' in header(response, "Reason")
            assert int(header(response, "Retry-After")) == PERSON_WAIT
            warning = header(response, "Warning")
            assert "unknown-issuer" in warning
            assert f"sipsgate probe sips:{DOMAIN}:5061" in warning
        (entry,) = env.rejected()
        assert (entry.peer.host, entry.peer.port) == (DOMAIN, 5061)
        assert entry.address == f"127.0.0.1:{server.port}"
    finally:
        env.store.close()


async def test_unreachable_upstream_keeps_a_short_retry_after(tmp_path: Path) -> None:
    """Nothing listening: the relay retries by itself soon, and says so."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # bound, never listening: the port refuses connections
    env = make_env(tmp_path / "store.db")
    try:
        async with relay_to(env, f"127.0.0.1:{port}") as relay:
            response = await register(relay, 1)
        assert response.startswith("SIP/2.0 503 "), response
        assert 'text="Upstream unreachable"' in header(response, "Reason")
        assert 1 <= int(header(response, "Retry-After")) <= 30
        warning = header(response, "Warning")
        assert f"nothing is listening on 127.0.0.1:{port}" in warning
        assert f"Run `sipsgate probe sips:{DOMAIN}:5061` to see it again." in warning
    finally:
        env.store.close()


async def test_upstream_connected_log_writes_addresses_as_host_port(
    tmp_path: Path, pki: Pki
) -> None:
    """The log fields of the flow are host:port, never a Python tuple."""
    env = make_env(tmp_path / "store.db")
    try:
        env.trust(pki.root)
        server = TlsEchoServer(server_context(pki.leaf))
        with capture_logs() as logs:
            async with server, relay_to(env, f"127.0.0.1:{server.port}") as relay:
                async with asyncio.timeout(WAIT):
                    await relay.wait_for_flow(1)
        (connected,) = [e for e in logs if e["event"] == "sip.upstream.connected"]
        assert connected["peer"] == f"127.0.0.1:{server.port}"
        assert re.fullmatch(r"127\.0\.0\.1:\d+", connected["local"])
        assert connected["upstream"] == f"sips:{DOMAIN}:5061"
    finally:
        env.store.close()
