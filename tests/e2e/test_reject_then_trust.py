"""A real failed handshake through the connector lands in the rejected list; trusting it
through the admin API of a running ``sipsgate run`` makes the next handshake of the same
connector succeed — no restart of anything."""

from __future__ import annotations

import asyncio
import ssl
import tempfile
from pathlib import Path

import pytest

from certstore.decision import decide
from certstore.sqlite import SqliteStore
from gateway.errors import TrustRejected
from gateway.tls.connector import TlsConnector
from gateway.tls.policy import TlsTarget
from gateway.tls.trust import StoreTrustPolicy
from tests.admin_support import PKI
from tests.gateway_process import start_gateway
from tests.pki import Issued

HOST = "sip.untrusted.example"


def server_context(leaf: Issued, ca: Issued) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "server.pem"
        path.write_bytes(leaf.pem + ca.pem + leaf.key_pem)
        context.load_cert_chain(path)
    return context


async def serve_tls(context: ssl.SSLContext) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\n")
        try:
            await writer.drain()
            await reader.read(1)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)


async def handshake(connector: TlsConnector, port: int) -> None:
    target = TlsTarget(
        scheme="sips", host=HOST, port=5061, connect_host="127.0.0.1", connect_port=port
    )
    transport, _ = await connector.create_connection(asyncio.Protocol, target)
    transport.close()


async def test_rejected_chain_trusted_through_the_api(tmp_path: Path) -> None:
    ca = PKI.ca("Untrusted Provider CA")
    leaf = PKI.leaf(ca, cn=HOST, dns=[HOST])
    gateway = await start_gateway(tmp_path)
    server = await serve_tls(server_context(leaf, ca))
    port = server.sockets[0].getsockname()[1]
    store = SqliteStore(gateway.data_dir / "sipsgate.db")  # the gateway's store, as its relay
    try:
        connector = TlsConnector(StoreTrustPolicy(store, decide=decide))
        with pytest.raises(TrustRejected):
            await handshake(connector, port)
        async with gateway.session() as api:
            async with api.get("/api/v1/rejected") as response:
                rejected = await response.json()
            entry = next(
                e for e in rejected if e["chain"][0]["fingerprint"] == leaf.model.fingerprint
            )
            assert "unknown-issuer" in entry["reasons"]
            assert entry["peer"]["host"] == HOST
            assert [c["fingerprint"] for c in entry["chain"]] == [
                leaf.model.fingerprint,
                ca.model.fingerprint,
            ]
            body = {"fingerprints": [ca.model.fingerprint]}
            async with api.post(f"/api/v1/rejected/{entry['id']}/trust", json=body) as response:
                assert response.status == 200
        await handshake(connector, port)  # the same connector, the same store object
    finally:
        store.close()
        server.close()
        await server.wait_closed()
        assert await gateway.stop() == 0
