"""Fail static: with PostgreSQL stopped or killed, a running gateway goes on deciding on
its last snapshot, admin writes answer 503 with a sentence and change nothing, and
after the restart writes work again and the snapshot follows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from certstore.decision import decide
from certstore.errors import StoreUnreachable
from certstore.model import PinDecision, PinMatch, Rule, TrustSource
from certstore.postgres import PostgresStore
from certstore.store import PinRequest
from gateway.tls import TlsConnector, TlsTarget
from gateway.tls.trust import StoreTrustPolicy
from tests.admin_support import AdminHarness, start_admin
from tests.integration._store_support import ADMIN
from tests.pki import CertFactory, Issued
from tests.postgres_server import PostgresServer
from tests.tls_servers import GREETING, TlsEchoServer, server_context

HOST = "sip.fleet.example"
API = "/api/v1"
WAIT = 30.0


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT} s"
        await asyncio.sleep(0.05)


async def handshake(connector: TlsConnector, leaf: Issued, chain: tuple[Issued, ...]) -> Rule:
    """One verified connection to a loopback server presenting ``leaf``; the rule that
    accepted it (a rejection raises)."""
    async with TlsEchoServer(server_context(leaf, extra_chain=chain)) as server:
        target = TlsTarget.sips(HOST, connect_host="127.0.0.1", connect_port=server.port)
        reader, writer = await connector.open_connection(target)
        assert await asyncio.wait_for(reader.readline(), WAIT) == GREETING
        check = writer.get_extra_info("tls_check")
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), WAIT)
        return Rule(check.verdict.rule)


def pin_body(pki: CertFactory, n: int) -> dict[str, str]:
    cert = pki.leaf(None, cn=f"pinned-{n}.example")
    return {"decision": "reject", "match": "certificate", "certificate": cert.pem.decode()}


@pytest.mark.parametrize("outage", ["kill-9", "stop"])
async def test_gateway_decides_on_last_snapshot_while_database_is_down(
    own_server: PostgresServer, tmp_path: Path, pki: CertFactory, outage: str
) -> None:
    root = pki.ca("Fleet Root CA")
    intermediate = pki.ca("Fleet Intermediate CA", issuer=root)
    leaf = pki.leaf(intermediate, cn=HOST, dns=(HOST,))
    url = own_server.create_database("failstatic")
    store = PostgresStore(url, gateway="a")
    admin: AdminHarness | None = None
    try:
        policy = StoreTrustPolicy(store, decide=decide, identity=store.device_identity)
        connector = TlsConnector(policy)
        admin = await start_admin(store, tmp_path)
        api = admin.client(basic=True)
        store.add_trust([root.model], source=TrustSource.UPLOADED, actor=ADMIN)
        await wait_until(lambda: store.backend.listening)
        assert await handshake(connector, leaf, (intermediate,)) is Rule.CHAIN_VALID
        before = store.snapshot()

        with capture_logs() as logs:
            if outage == "kill-9":
                own_server.kill()
            else:
                assert own_server.process is not None
                own_server.process.send_signal(2)  # SIGINT: PostgreSQL's fast shutdown
                own_server.process.wait(timeout=WAIT)

            # The very next handshakes are decided on the last snapshot, none fails.
            for _ in range(3):
                assert await handshake(connector, leaf, (intermediate,)) is Rule.CHAIN_VALID
            assert store.snapshot() is before
            await wait_until(lambda: store.backend.unreachable_since is not None)

            # An admin write: 503 with a sentence, and nothing changes.
            async with api.post(f"{API}/decisions", json=pin_body(pki, 1)) as response:
                assert response.status == 503, await response.text()
                error = (await response.json())["error"]
            assert error["code"] == "store-unreachable"
            assert "cannot be reached" in error["message"] or "could not" in error["message"]
            assert "nothing was changed" in error["message"]
            with pytest.raises(StoreUnreachable):
                store.add_pin(
                    PinRequest(
                        decision=PinDecision.REJECT,
                        match=PinMatch.CERTIFICATE,
                        fingerprint=leaf.fingerprint,
                    ),
                    actor=ADMIN,
                )

            # Liveness and readiness say so.
            async with api.get("/healthz") as response:
                assert response.status == 200
                health = await response.json()
            assert health["generation"] == before.generation
            assert "cannot be reached" in health["detail"]
            assert f"snapshot of generation {before.generation}" in health["detail"]
            async with api.get("/readyz") as response:
                ready = await response.json()
            assert ready["status"] == "degraded"
            assert "decisions use the snapshot" in ready["reason"]
            async with api.get(f"{API}/status") as response:
                assert response.status == 200, await response.text()
                status = await response.json()
            assert status["status"] == "degraded"
            assert health["detail"] in status["problems"]
            assert len(events(logs, "store.database.unreachable")) == 1

            own_server.start()
            await wait_until(lambda: store.backend.unreachable_since is None)
            assert len(events(logs, "store.database.recovered")) == 1

        # Writes work again; the refused one left nothing behind; the snapshot follows.
        async with api.post(f"{API}/decisions", json=pin_body(pki, 2)) as response:
            assert response.status == 201, await response.text()
            pin = await response.json()
        async with api.get(f"{API}/decisions") as response:
            assert [p["id"] for p in await response.json()] == [pin["id"]]
        after = store.snapshot()
        assert after.generation > before.generation
        assert pin["fingerprint"] in after.pins_by_fingerprint
        async with api.get("/healthz") as response:
            assert "detail" not in await response.json()
        assert await handshake(connector, leaf, (intermediate,)) is Rule.CHAIN_VALID
    finally:
        if admin is not None:
            await admin.close()
        store.close()


def test_a_store_that_does_not_listen_fails_as_before(own_server: PostgresServer) -> None:
    """A one-shot command (no listener) has no last snapshot to fall back on: a read
    while the database is down raises the typed error with its sentence."""
    url = own_server.create_database("oneshot")
    with PostgresStore(url, gateway="cli", listen=False) as store:
        store.snapshot()
        own_server.kill()
        with pytest.raises(StoreUnreachable, match="could not be reached"):
            store.list_pins()
        assert store.backend.unreachable_since is None
