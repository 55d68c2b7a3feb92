""" "Test this connection" from the browser and the API: a real TLS server on loopback,
the gateway's connector, the rejected list, the chain picture and the audit log."""

from __future__ import annotations

import asyncio
import html
import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from certstore.model import Reason
from certstore.sqlite import SqliteStore
from gateway.config import build_config
from gateway.tls.advice import FIXES
from tests.admin_support import PKI, AdminHarness, login, start_admin
from tests.tls_servers import TlsEchoServer, server_context

API = "/api/v1"
SVG = "{http://www.w3.org/2000/svg}"
HOST = "sip.example.net"


def token_of(page: str) -> str:
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


async def probe_form(browser: aiohttp.ClientSession, **fields: str) -> tuple[int, str]:
    async with browser.get("/probe") as response:
        assert response.status == 200
        token = token_of(await response.text())
    async with browser.post("/probe", data={"csrf_token": token, **fields}) as response:
        return response.status, html.unescape(await response.text())


def picture(page: str) -> ET.Element:
    (svg,) = re.findall(r'<svg [^>]*class="chain-picture".*?</svg>', page, flags=re.S)
    return ET.fromstring(svg)  # noqa: S314 (our own page, under test)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_browser_probe_rejects_unknown_ca_then_trusting_from_the_result_lets_it_through(
    admin: AdminHarness,
) -> None:
    ca = PKI.ca("Probe Provider CA")
    leaf = PKI.leaf(ca, cn=HOST)
    async with TlsEchoServer(server_context(leaf, extra_chain=[ca])) as server:
        browser = admin.client()
        await login(browser)
        uri = f"sips:{HOST}:5061"
        status, page = await probe_form(browser, uri=uri, connect=f"127.0.0.1:{server.port}")
        assert status == 200
        assert 'id="probe-verdict">reject<' in page
        assert f'Dialled</dt><dd class="mono">127.0.0.1:{server.port} (SNI {HOST})' in page
        assert "unknown-issuer</span> the chain does not lead to a certificate" in page
        svg = picture(page)
        assert svg.get("data-verdict") == "failing"
        bad = [g for g in svg.iter(f"{SVG}g") if g.get("data-state") == "bad"]
        assert any("unknown issuer" in "".join(g.itertext()) for g in bad)
        # The same actions as the rejected chain's page, on the chain just recorded.
        (entry,) = admin.store.list_rejected()
        assert f'value="{ca.model.fingerprint}" checked' in page  # the CA, pre-selected
        assert f'action="/rejected/{entry.id}/trust"' in page
        assert f'action="/rejected/{entry.id}/accept"' in page
        assert f'value="{HOST}:5061"' in page  # the accept's destination, filled in
        event = admin.store.audit(limit=1)[0]
        assert event.action == "connection.test"
        assert event.target == uri
        assert event.actor.startswith("admin")

        # Trust the CA from the result's own form, then test again: accepted.
        form = {"csrf_token": token_of(page), "fingerprint": ca.model.fingerprint}
        async with browser.post(f"/rejected/{entry.id}/trust", data=form) as response:
            assert response.status == 200
            assert "1 certificate added to the trust list" in html.unescape(await response.text())
        status, page = await probe_form(browser, uri=uri, connect=f"127.0.0.1:{server.port}")
        assert 'id="probe-verdict">accept<' in page
        assert picture(page).get("data-verdict") == "valid"


@pytest.mark.parametrize(
    ("uri", "connect", "said"),
    [
        ("", "", "Enter the URI to test"),
        ("sip:sip.example.net", "", "is not a sips: or https:// URI"),
        ("sips://sip.example.net:5061", "", "a sips: URI has no '//'"),
        ("ftp://sip.example.net", "", "is not a sips: or https:// URI"),
        (
            "sips:sip.example.net",
            "127.0.0.1:99999",
            "The address to dial '127.0.0.1:99999' has port",
        ),
        ("sips:bad host", "", "neither a host name nor an IP address"),
    ],
)
async def test_bad_input_gets_a_clear_error_and_changes_nothing(
    admin: AdminHarness, uri: str, connect: str, said: str
) -> None:
    browser = admin.client()
    await login(browser)
    before = admin.store.audit(limit=1)[0].id
    status, page = await probe_form(browser, uri=uri, connect=connect)
    assert status == 422
    assert said in page
    assert f'id="probe-uri" value="{uri}"' in page  # kept, to correct
    api = admin.client(basic=True)
    async with api.post(f"{API}/probe", json={"uri": uri, "connect": connect}) as response:
        assert response.status == 422
        body = await response.json()
    assert body["error"]["code"] == "invalid-uri"
    assert said in body["error"]["message"]
    assert admin.store.audit(limit=1)[0].id == before
    assert not admin.store.list_rejected()


async def test_form_without_csrf_token_is_refused(admin: AdminHarness) -> None:
    browser = admin.client()
    await login(browser)
    async with browser.post("/probe", data={"uri": "sips:127.0.0.1:1"}) as response:
        assert response.status == 403
    assert not any(e.action == "connection.test" for e in admin.store.audit(limit=20))


async def test_api_probe_answers_like_probe_json(admin: AdminHarness) -> None:
    ca = PKI.ca("Api Probe CA")
    leaf = PKI.leaf(ca, cn="127.0.0.1", ips=["127.0.0.1"])
    api = admin.client(basic=True)
    async with TlsEchoServer(server_context(leaf, extra_chain=[])) as server:
        body = {"uri": f"sips:127.0.0.1:{server.port}"}
        async with api.post(f"{API}/probe", json=body) as response:
            assert response.status == 200
            result: dict[str, Any] = await response.json()
    assert result["verdict"] == "reject"
    assert result["reasons"] == ["unknown-issuer"]
    assert result["recorded"] is True
    assert result["rejected_id"] == admin.store.list_rejected()[0].id
    assert result["address"] == {"host": "127.0.0.1", "port": server.port, "source": "uri"}
    (advice,) = result["advice"]
    assert advice["reason"] == "unknown-issuer"
    assert f"sipsgate certs trust {result['rejected_id']}" in advice["message"]
    assert result["chain"][0]["fingerprint"] == leaf.model.fingerprint
    assert FIXES[Reason.UNKNOWN_ISSUER]  # the fix table the sentence comes from

    async with api.post(f"{API}/probe", json={"uri": f"sips:127.0.0.1:{closed_port()}"}) as r:
        assert r.status == 200
        refused = await r.json()
    assert refused["verdict"] is None
    assert refused["error"]["code"] == "connect"


async def test_a_silent_server_neither_hangs_the_probe_nor_the_admin(
    store: SqliteStore, data_dir: Path
) -> None:
    """A server that accepts TCP and never answers: the probe ends at the handshake
    timeout, and the admin endpoint answers other requests meanwhile."""
    raw = {"gateway": {"data_dir": str(data_dir)}, "tls": {"handshake_timeout": "2s"}}
    admin = await start_admin(store, data_dir, config=build_config(raw, env={}))
    held: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda _r, w: held.append(w), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        api = admin.client(basic=True)
        probe = asyncio.create_task(
            api.post(f"{API}/probe", json={"uri": f"sips:127.0.0.1:{port}"})
        )
        await asyncio.sleep(0.5)
        assert not probe.done()
        async with admin.client() as other, other.get("/healthz") as health:
            assert health.status == 200  # served while the probe waits
        async with asyncio.timeout(15):
            response = await probe
        assert response.status == 200
        result = await response.json()
        response.release()
        assert result["verdict"] is None
        assert result["error"]["code"] == "timeout"
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()
        await admin.close()


async def test_the_configured_upstream_is_dialled_at_its_upstream_address(
    store: SqliteStore, data_dir: Path
) -> None:
    """As ``sipsgate probe`` does: testing ``sips:DOMAIN`` when DOMAIN is the configured
    upstream dials ``sip.upstream_address`` (DOMAIN need not resolve), and says so."""
    ca = PKI.ca("Upstream Address CA")
    leaf = PKI.leaf(ca, cn=HOST)
    async with TlsEchoServer(server_context(leaf, extra_chain=[ca])) as server:
        raw = {
            "gateway": {"data_dir": str(data_dir)},
            "sip": {"upstream": f"sips:{HOST}", "upstream_address": f"127.0.0.1:{server.port}"},
        }
        admin = await start_admin(store, data_dir, config=build_config(raw, env={}))
        try:
            api = admin.client(basic=True)
            async with api.post(f"{API}/probe", json={"uri": f"sips:{HOST}"}) as response:
                assert response.status == 200
                result: dict[str, Any] = await response.json()
            assert result["reasons"] == ["unknown-issuer"]
            assert result["address"] == {
                "host": "127.0.0.1",
                "port": server.port,
                "source": "sip.upstream_address",
            }
            browser = admin.client()
            await login(browser)
            status, page = await probe_form(browser, uri=f"sips:{HOST}", connect="")
            assert status == 200
            assert f"127.0.0.1:{server.port}" in page
            assert "sip.upstream_address" in page
        finally:
            await admin.close()
