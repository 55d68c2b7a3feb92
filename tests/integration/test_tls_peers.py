"""Real third-party TLS peers with the real decision: openssl s_server, Debian's
kamailio with its TLS module, and aiohttp's ClientSession over the connector."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from certstore.model import Reason, Rule
from gateway.errors import TrustRejected
from gateway.tls import TlsTarget
from gateway.tls.aiohttp_connector import VerifyingTCPConnector
from tests.integration.conftest import Hierarchy
from tests.integration.test_tls_aiohttp import https_site
from tests.integration.trust_env import Env
from tests.tls_servers import WAIT, KamailioServer, OpensslServer, sip_options

HOST = "sip.example.test"


def dial(port: int, host: str = HOST) -> TlsTarget:
    return TlsTarget.sips(host, connect_host="127.0.0.1", connect_port=port)


class TestOpensslServer:
    async def test_trusted_chain_is_accepted(self, env: Env, hierarchy: Hierarchy) -> None:
        """s_server with the full chain and a trusted root: accepted, HTTP answered."""
        env.trust(hierarchy.root)
        with OpensslServer(hierarchy.leaf) as server:
            reader, writer = await env.connector.open_connection(dial(server.port))
            assert writer.get_extra_info("tls_check").verdict.rule is Rule.CHAIN_VALID
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            assert (await asyncio.wait_for(reader.readline(), WAIT)).startswith(b"HTTP/1.0 200")
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), WAIT)

    async def test_untrusted_chain_is_rejected_and_recorded(
        self, env: Env, hierarchy: Hierarchy
    ) -> None:
        """Nothing trusted: rejected inside the handshake, recorded once."""
        with OpensslServer(hierarchy.leaf) as server, pytest.raises(TrustRejected) as info:
            await env.connector.open_connection(dial(server.port))
        assert info.value.verdict.rule is Rule.UNTRUSTED
        assert Reason.UNKNOWN_ISSUER in info.value.verdict.reasons
        (entry,) = env.rejected()
        assert entry.chain[0].fingerprint == hierarchy.leaf.fingerprint

    async def test_expired_leaf_is_rejected(self, env: Env, hierarchy: Hierarchy) -> None:
        """An expired leaf served by s_server is rejected as expired."""
        env.trust(hierarchy.root)
        leaf = hierarchy.factory.leaf(
            hierarchy.intermediate, cn=HOST, dns=(HOST,), valid_days=(-100, -1)
        )
        with OpensslServer(leaf) as server, pytest.raises(TrustRejected) as info:
            await env.connector.open_connection(dial(server.port))
        assert info.value.verdict.reasons == (Reason.EXPIRED,)


class TestKamailio:
    async def test_sips_options_through_a_trusted_flow(
        self, env: Env, hierarchy: Hierarchy
    ) -> None:
        """kamailio's TLS module serves the chain; the flow carries SIP (200 OK)."""
        env.trust(hierarchy.root)
        with KamailioServer(hierarchy.leaf) as kamailio:
            reader, writer = await env.connector.open_connection(dial(kamailio.port))
            writer.write(sip_options(HOST))
            status = await asyncio.wait_for(reader.readline(), WAIT)
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), WAIT)
        assert status == b"SIP/2.0 200 OK\r\n"

    async def test_kamailio_with_an_untrusted_chain_is_refused(
        self, env: Env, hierarchy: Hierarchy
    ) -> None:
        """Untrusted: no SIP byte goes out; the chain is in the rejected list."""
        with KamailioServer(hierarchy.leaf) as kamailio, pytest.raises(TrustRejected) as info:
            await env.connector.open_connection(dial(kamailio.port))
        assert info.value.verdict.rule is Rule.UNTRUSTED
        (entry,) = env.rejected()
        assert [c.fingerprint for c in entry.chain] == [
            hierarchy.leaf.fingerprint,
            hierarchy.intermediate.fingerprint,
        ]

    async def test_kamailio_for_another_domain_is_a_name_mismatch(
        self, env: Env, hierarchy: Hierarchy
    ) -> None:
        """A trusted chain for sip.example.test does not serve sips:other.example.test."""
        env.trust(hierarchy.root)
        with KamailioServer(hierarchy.leaf) as kamailio, pytest.raises(TrustRejected) as info:
            await env.connector.open_connection(dial(kamailio.port, "other.example.test"))
        assert info.value.verdict.reasons == (Reason.NAME_MISMATCH,)


class TestAiohttpWithTheDecision:
    @pytest.fixture
    def site_leaf(self, hierarchy: Hierarchy):  # type: ignore[no-untyped-def]
        return hierarchy.factory.leaf(hierarchy.intermediate, cn="localhost", dns=("localhost",))

    async def _get(self, env: Env, port: int, host: str = "localhost") -> int:
        connector = VerifyingTCPConnector(env.connector, resolver=aiohttp.ThreadedResolver())
        timeout = aiohttp.ClientTimeout(total=WAIT)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.get(f"https://{host}:{port}/config") as resp,
        ):
            await resp.read()
            return resp.status

    async def test_trusted_ca(self, env: Env, hierarchy: Hierarchy, site_leaf) -> None:  # type: ignore[no-untyped-def]
        """HTTPS to a server under a trusted root: 200."""
        env.trust(hierarchy.root)
        async with https_site(site_leaf) as port:
            assert await self._get(env, port) == 200

    async def test_unknown_ca(self, env: Env, hierarchy: Hierarchy, site_leaf) -> None:  # type: ignore[no-untyped-def]
        """Untrusted: aiohttp's certificate error carrying our verdict; recorded as https."""
        async with https_site(site_leaf) as port:
            with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
                await self._get(env, port)
        error = info.value.certificate_error
        assert isinstance(error, TrustRejected)
        assert Reason.UNKNOWN_ISSUER in error.verdict.reasons
        (entry,) = env.rejected()
        assert (entry.peer.transport.value, entry.peer.host, entry.peer.port) == (
            "https",
            "localhost",
            port,
        )

    async def test_wrong_host(self, env: Env, hierarchy: Hierarchy) -> None:
        """A trusted certificate for another name: name-mismatch."""
        env.trust(hierarchy.root)
        async with https_site(hierarchy.leaf) as port:
            with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
                await self._get(env, port)
        assert info.value.certificate_error.verdict.reasons == (Reason.NAME_MISMATCH,)  # type: ignore[attr-defined]

    async def test_expired(self, env: Env, hierarchy: Hierarchy) -> None:
        """An expired certificate: expired."""
        env.trust(hierarchy.root)
        leaf = hierarchy.factory.leaf(
            hierarchy.intermediate, cn="localhost", dns=("localhost",), valid_days=(-50, -1)
        )
        async with https_site(leaf) as port:
            with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
                await self._get(env, port)
        assert Reason.EXPIRED in info.value.certificate_error.verdict.reasons  # type: ignore[attr-defined]
