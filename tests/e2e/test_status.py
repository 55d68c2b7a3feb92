"""The status view end to end: kamailio (TLS) upstream, SIPp base stations, the relay
and the admin endpoint on one store, ``GET /api/v1/status`` and ``/readyz``."""

from __future__ import annotations

import asyncio
import html
from pathlib import Path
from typing import Any

import pytest

from certstore.model import Reason
from gateway.relay.status import RelayStatus
from gateway.tls.advice import FIXES
from tests.admin_support import AdminHarness, basic_header, login, start_admin
from tests.e2e.conftest import Pki
from tests.e2e.test_relay_sip import assert_ok, running_relay
from tests.integration.trust_env import make_env
from tests.sip_peers import KamailioRegistrar, Sipp

pytestmark = pytest.mark.slow
WAIT = 30.0


async def get_json(admin: AdminHarness, path: str) -> tuple[int, dict[str, Any]]:
    async with (
        admin.client() as http,
        http.get(path, headers={"Authorization": basic_header()}) as response,
    ):
        return response.status, await response.json()


async def status_page(admin: AdminHarness) -> str:
    """The landing page as a logged-in browser gets it."""
    async with admin.client() as http:
        await login(http)
        async with http.get("/", allow_redirects=False) as response:
            assert response.status == 200
            return html.unescape(await response.text())


async def status_until(admin: AdminHarness, state: str) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        while True:
            code, body = await get_json(admin, "/api/v1/status")
            assert code == 200, body
            if body["upstream"]["state"] == state:
                return body
            await asyncio.sleep(0.05)


async def test_status_shows_rejection_with_reason_then_flow_up_after_trust(
    tmp_path: Path, pki: Pki
) -> None:
    environment = make_env(tmp_path / "store.db")
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    status = RelayStatus()
    admin = await start_admin(environment.store, data_dir, relay_status=status)
    try:
        with KamailioRegistrar(pki.other_leaf) as kamailio:
            async with running_relay(
                environment, kamailio, wait_for_flow=False, status=status
            ) as r:
                refused = await Sipp("register_503.xml", r.udp, service="bs1").run()
                assert_ok(refused, "the REGISTER refused with 503")
                down = await status_until(admin, "down")
                error = down["upstream"]["last_error"]
                assert error["kind"] == "rejected"
                assert "The upstream certificate was rejected" in error["sentence"]
                assert {"code": "unknown-issuer", "fix": FIXES[Reason.UNKNOWN_ISSUER]} in error[
                    "codes"
                ]
                assert down["status"] == "degraded"
                assert down["problems"][0].startswith("Upstream certificate rejected: ")
                assert down["counters"]["rejected_handshakes"] >= 1
                assert down["counters"]["service_unavailable"] >= 1
                page = await status_page(admin)
                assert 'id="flow-state">down<' in page
                assert error["sentence"] in page
                assert f"Fix: {FIXES[Reason.UNKNOWN_ISSUER]}" in page
                assert page.index('id="problems"') < page.index('id="upstream"')
                code, ready = await get_json(admin, "/readyz")
                assert code == 200
                assert ready["status"] == "degraded"
                assert ready["reason"] == "Upstream certificate rejected"  # public: no details

                environment.trust(pki.other_root)
                accepted = await Sipp("register.xml", r.udp, service="bs1").run()
                assert_ok(accepted, "the REGISTER after trusting the chain")
                tcp = await Sipp("register.xml", r.tcp, transport="tcp", service="bs2").run()
                assert_ok(tcp, "the REGISTER over TCP")
                up = await status_until(admin, "up")
                upstream = up["upstream"]
                assert upstream["peer"] == f"127.0.0.1:{kamailio.port}"
                assert upstream["tls_version"] in ("TLSv1.2", "TLSv1.3")
                assert upstream["certificate"]["fingerprint"] == pki.other_leaf.fingerprint
                assert upstream["connected_since"] is not None
                assert up["problems"] == []
                assert up["status"] == "ready"
                sources = {s["source"] for s in up["base_stations"]}
                assert len(sources) == 2  # one UDP and one TCP base station
                assert all(s["last_method"] == "REGISTER" for s in up["base_stations"])
                assert {s["transport"] for s in up["base_stations"]} == {"udp", "tcp"}
                for station in up["base_stations"]:
                    assert station["aor"].startswith("sip:")  # the To URI the registrar took
                    assert station["registered_until"] is not None
                assert up["counters"]["relayed"] >= 4  # 401 and 200 for each
                assert up["device_identity"]["days_left"] > 30
                page = await status_page(admin)
                assert 'id="flow-state">up<' in page
                assert 'id="problems"' not in page
                assert all(source in page for source in sources)
                assert page.count("not registered") == 0
                code, ready = await get_json(admin, "/readyz")
                assert (code, ready["status"]) == (200, "ready")
    finally:
        await admin.close()
        environment.store.close()
