"""aiohttp ``ClientSession`` HTTPS through the verifying connector, on loopback."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from gateway.errors import TrustRejected
from gateway.tls import TlsConnector
from gateway.tls.aiohttp_connector import VerifyingTCPConnector
from tests.doubles import FakePolicy
from tests.integration.conftest import Hierarchy
from tests.pki import Issued
from tests.tls_servers import server_context

TIMEOUT = aiohttp.ClientTimeout(total=10)


@asynccontextmanager
async def https_site(identity: Issued | None) -> AsyncIterator[int]:
    """An aiohttp app on 127.0.0.1:0 answering GET /config (HTTPS unless identity is None)."""

    async def config(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "tls": request.secure})

    app = web.Application()
    app.router.add_get("/config", config)
    runner = web.AppRunner(app)
    await runner.setup()
    ctx: ssl.SSLContext | None = server_context(identity) if identity is not None else None
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        await runner.cleanup()


@asynccontextmanager
async def session_for(
    policy: FakePolicy,
) -> AsyncIterator[tuple[aiohttp.ClientSession, TlsConnector]]:
    tls = TlsConnector(policy)
    resolver = aiohttp.ThreadedResolver()
    connector = VerifyingTCPConnector(tls, resolver=resolver)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        yield session, tls


def localhost_leaf(hierarchy: Hierarchy) -> Issued:
    return hierarchy.factory.leaf(hierarchy.intermediate, cn="localhost", dns=("localhost",))


class TestHttpsThroughTheConnector:
    async def test_trusted_server_answers(self, hierarchy: Hierarchy) -> None:
        """An accepted chain: the request goes through and the flow is registered."""
        leaf = localhost_leaf(hierarchy)
        policy = FakePolicy(trusted={leaf.fingerprint})
        async with (
            https_site(leaf) as port,
            session_for(policy) as (session, tls),
            session.get(f"https://localhost:{port}/config") as resp,
        ):
            assert resp.status == 200
            assert await resp.json() == {"ok": True, "tls": True}
            assert len(tls.registry) == 1
        (chain, target) = policy.decisions[0]
        assert target.scheme == "https"
        assert target.host == "localhost"
        assert target.port == port
        assert chain[0] == leaf.der

    async def test_untrusted_server_is_a_certificate_error(self, hierarchy: Hierarchy) -> None:
        """A rejected chain raises aiohttp's certificate error holding TrustRejected."""
        leaf = localhost_leaf(hierarchy)
        policy = FakePolicy()
        async with https_site(leaf) as port, session_for(policy) as (session, _):
            with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
                await session.get(f"https://localhost:{port}/config")
        error = info.value.certificate_error
        assert isinstance(error, TrustRejected)
        assert error.verdict.rule == "untrusted"
        assert len(policy.recorded) == 1

    async def test_ssl_false_does_not_turn_verification_off(self, hierarchy: Hierarchy) -> None:
        """``ssl=False`` on a request is ignored: the chain is still decided."""
        leaf = localhost_leaf(hierarchy)
        async with https_site(leaf) as port, session_for(FakePolicy()) as (session, _):
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"https://localhost:{port}/config", ssl=False)

    async def test_connection_is_reused_for_a_second_request(self, hierarchy: Hierarchy) -> None:
        """Keep-alive works over the engine's transport: one handshake, two requests."""
        leaf = localhost_leaf(hierarchy)
        policy = FakePolicy(trusted={leaf.fingerprint})
        async with https_site(leaf) as port, session_for(policy) as (session, _):
            for _ in range(2):
                async with session.get(f"https://localhost:{port}/config") as resp:
                    assert resp.status == 200
                    await resp.read()
        assert len(policy.decisions) == 1

    async def test_plain_http_is_left_alone(self) -> None:
        """http:// URLs do not touch the TLS connector."""
        policy = FakePolicy()
        async with (
            https_site(None) as port,
            session_for(policy) as (session, _),
            session.get(f"http://127.0.0.1:{port}/config") as resp,
        ):
            assert await resp.json() == {"ok": True, "tls": False}
        assert policy.decisions == []

    async def test_refused_port_is_a_connector_error(self) -> None:
        """Nothing listening: aiohttp's connector error, as without the override."""
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        async with session_for(FakePolicy()) as (session, _):
            with pytest.raises(aiohttp.ClientConnectorError):
                await session.get(f"https://127.0.0.1:{port}/config")
