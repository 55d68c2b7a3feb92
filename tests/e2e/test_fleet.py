"""Three ``sipsgate run`` processes on one PostgreSQL database (started by the tests):
one trust state for the fleet, one device identity per gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.gateway_process import GatewayProcess, start_gateway, write_config
from tests.integration.test_cli_probe import Cli
from tests.integration.test_cli_probe import probe as probe_cli
from tests.pki import CertFactory
from tests.postgres_server import PostgresServer, postgres_server
from tests.tls_servers import TlsEchoServer, server_context

__all__ = ["postgres_server"]

HOST = "sip.example.test"
PKI = CertFactory()
NAMES = ("site-a", "site-b", "site-c")


async def probe(gateway: GatewayProcess, port: int) -> tuple[int, dict[str, object]]:
    """``sipsgate probe --json`` with this gateway's config (so its store)."""
    cli = Cli(gateway.config_path, gateway.data_dir / "sipsgate.db")
    run = await probe_cli(cli, f"sips:{HOST}", "--connect", f"127.0.0.1:{port}", "--json")
    assert run.out, run.err
    return run.code, run.json()


async def test_pin_through_one_gateway_changes_the_others(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """A pin made through site-a's admin API turns the next probe verdict of site-b and
    site-c from reject to accept; the chain both rejected is one entry seen twice, naming
    both (API, page), and the audit log names the gateway of each change; each
    gateway has its own device identity in the shared database."""
    url = postgres_server.create_database("fleet_e2e")
    for name in NAMES:
        workdir = tmp_path / name
        workdir.mkdir()
        write_config(
            workdir / "sipsgate.toml", workdir / "var", ["127.0.0.1:0"], name=name, store_url=url
        )
    # Started together: the schema is created once, under the migration lock.
    # site-c runs its relay in two worker processes: they open the fleet's store too.
    workers = {"site-c": {"SIPSGATE_SIP_WORKERS": "2"}}
    gateways = list(
        await asyncio.gather(
            *(start_gateway(tmp_path / n, extra_env=workers.get(n)) for n in NAMES)
        )
    )
    ca = PKI.ca("Fleet Provider CA")
    leaf = PKI.leaf(ca, cn=HOST, dns=(HOST,))
    try:
        identities = []
        for gateway in gateways:
            store = gateway.store()
            try:
                identity = store.device_identity()
            finally:
                store.close()
            assert identity is not None
            identities.append(identity.certificate.fingerprint)
        assert len(set(identities)) == len(NAMES)

        site_a, site_b, site_c = gateways
        await site_c.wait_for_log('"sip.worker.started"', nth=2)
        # No gateway, and no worker, made an SQLite store of its own.
        assert not [n for n in NAMES if (tmp_path / n / "var" / "sipsgate.db").exists()]
        async with TlsEchoServer(server_context(leaf)) as server:
            for gateway in (site_b, site_c):
                code, verdict = await probe(gateway, server.port)
                assert (code, verdict["verdict"]) == (1, "reject")
            async with site_a.session() as api:
                async with api.get("/api/v1/rejected") as response:
                    rejected = await response.json()
                (entry,) = rejected
                assert entry["count"] == 2
                # One entry, naming both gateways that saw the chain, in that order.
                assert entry["seen_by"] == ["site-b", "site-c"]
            # The pages of another gateway show it too, in one short line each.
            async with await site_c.logged_in() as browser:
                async with browser.get("/rejected") as response:
                    assert "by site-b, site-c" in await response.text()
                async with browser.get(f"/rejected/{entry['id']}") as response:
                    assert '<dd id="seen-by">site-b, site-c</dd>' in await response.text()
                async with browser.get("/audit") as response:
                    assert '<small class="gateway">at site-b</small>' in await response.text()
            async with site_a.session() as api:
                body = {"decision": "accept", "fingerprint": leaf.model.fingerprint}
                async with api.post("/api/v1/decisions", json=body) as response:
                    assert response.status == 201, await response.text()
            async with site_c.session() as api:
                async with api.get(f"/api/v1/rejected/{entry['id']}") as response:
                    assert (await response.json())["seen_by"] == ["site-b", "site-c"]
                async with api.get("/api/v1/audit") as response:
                    events = await response.json()
                # Each event names the gateway whose store wrote it.
                written = [(e["action"], e["gateway"]) for e in events]
                assert written[:2] == [("pin.add", "site-a"), ("rejected.record", "site-b")]
            for gateway in (site_b, site_c):
                code, verdict = await probe(gateway, server.port)
                assert (code, verdict["verdict"], verdict["rule"]) == (0, "accept", "pinned-accept")
        # Every admin endpoint lists the same pin.
        for gateway in gateways:
            async with gateway.session() as api, api.get("/api/v1/decisions") as response:
                pins = await response.json()
            assert [p["fingerprint"] for p in pins] == [leaf.model.fingerprint]
    finally:
        for gateway in gateways:
            assert await gateway.stop() == 0
