"""The provisioning part of the admin endpoint: ``GET /api/v1/provisioning``,
``POST /api/v1/provisioning/fetch`` and the Provisioning section of the Settings page.

A real :class:`ProvisioningService` over the real SQLite store fetches from the real
HTTPS digest-auth provisioning server of ``tests/provisioning_server.py`` on loopback,
through the production connector and trust policy.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from certstore.model import Settings, TrustSource
from certstore.sqlite import SqliteStore
from certstore.x509 import parse_der
from gateway.config import Config, build_config
from gateway.provisioning.client import RetryPolicy
from gateway.provisioning.service import ProvisioningService, build_client
from tests.admin_support import (
    PASSWORD as ADMIN_PASSWORD,
)
from tests.admin_support import (
    TEST_ACTOR,
    AdminHarness,
    csrf_token,
    login,
    start_admin,
)
from tests.integration.conftest import Hierarchy
from tests.provisioning_server import ProvisioningServer

API = "/api/v1"
MAC = "7C2F80C6E5C2"
DIGEST_USER = "7C2F80C6E5C2"
DIGEST_PASSWORD = "s3cret-digest-pass"
ACCEPT_ALL = "SystemSettings.global.Security_Certificates_AcceptAllCertificates"
UNKNOWN = "SystemSettings.global.Language"
NEW_PASSWORD = "n3w-digest-secret"


def document(*params: tuple[str, str]) -> bytes:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<ProviderFrame>", "<Provider>"]
    lines += [f'  <param name="{n}" value="{v}"/>' for n, v in params]
    lines += ["</Provider>", "</ProviderFrame>", ""]
    return "\n".join(lines).encode()


DOCUMENT = document((ACCEPT_ALL, "1"), (UNKNOWN, "German"))


def provisioning_config(data_dir: Path, url: str) -> Config:
    raw: dict[str, Any] = {
        "gateway": {"data_dir": str(data_dir)},
        "provisioning": {"url": url, "interval": "1h"},
    }
    return build_config(raw, env={})


def provisioning_service(config: Config, store: SqliteStore) -> ProvisioningService:
    client = build_client(config, store, mac=lambda: MAC, retry=RetryPolicy(attempts=1))
    return ProvisioningService(client, interval=float(config.provisioning.interval))


@dataclass
class Rig:
    admin: AdminHarness
    server: ProvisioningServer
    hierarchy: Hierarchy
    responses: list[str]

    @property
    def store(self) -> SqliteStore:
        store = self.admin.store
        assert isinstance(store, SqliteStore)
        return store

    def trust_server(self) -> None:
        self.store.add_trust(
            [parse_der(self.hierarchy.root.der)], source=TrustSource.UPLOADED, actor=TEST_ACTOR
        )

    def credentials(self, password: str = DIGEST_PASSWORD) -> None:
        self.store.update_settings(
            {"http_auth_username": DIGEST_USER, "http_auth_password": password},
            actor=TEST_ACTOR,
        )

    def state(self) -> tuple[Settings, list[str], int]:
        """What a failed run must leave alone."""
        fingerprints = sorted(e.certificate.fingerprint for e in self.store.list_trust())
        return self.store.get_settings(), fingerprints, self.store.generation()

    async def call(
        self, session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
    ) -> tuple[int, Any]:
        """A request whose body is kept, so no test can miss a secret in any answer."""
        async with session.request(method, path, allow_redirects=False, **kwargs) as response:
            text = await response.text()
        self.responses.append(text)
        body = json.loads(text) if text and response.content_type == "application/json" else text
        return response.status, body

    def assert_no_secret(self) -> None:
        for text in self.responses:
            for secret in (DIGEST_PASSWORD, NEW_PASSWORD, "wrong-password"):
                assert secret not in text


def localhost_server(hierarchy: Hierarchy) -> ProvisioningServer:
    leaf = hierarchy.factory.leaf(hierarchy.intermediate, cn="localhost", dns=("localhost",))
    return ProvisioningServer(leaf, username=DIGEST_USER, password=DIGEST_PASSWORD)


@pytest.fixture
async def rig(store: SqliteStore, data_dir: Path, hierarchy: Hierarchy) -> AsyncIterator[Rig]:
    async with localhost_server(hierarchy) as server:
        server.serve(DOCUMENT, '"v1"')
        config = provisioning_config(data_dir, server.url())
        service = provisioning_service(config, store)
        harness = await start_admin(store, data_dir, config=config, provisioning=service)
        rig = Rig(admin=harness, server=server, hierarchy=hierarchy, responses=[])
        try:
            yield rig
        finally:
            rig.assert_no_secret()
            await harness.close()


@pytest.fixture
async def api(rig: Rig) -> aiohttp.ClientSession:
    return rig.admin.client(basic=True)


class TestFetch:
    async def test_fetch_applies_the_document_and_get_shows_it(
        self, rig: Rig, api: aiohttp.ClientSession
    ) -> None:
        rig.trust_server()
        rig.credentials()
        status, before = await rig.call(api, "GET", f"{API}/provisioning")
        assert status == 200
        assert before == {
            "configured": True,
            "url": rig.server.url(),
            "interval_seconds": 3600.0,
            "last_result": None,
        }

        status, result = await rig.call(api, "POST", f"{API}/provisioning/fetch")
        assert status == 200, result
        assert result["status"] == "applied", result["errors"]
        assert result["ok"] is True
        assert result["trigger"] == "demand"
        assert result["http_status"] == 200
        assert result["url"] == rig.server.url(f"/provisioning/{MAC}.xml")
        changes = result["apply"]["changes"]
        assert [(c["parameter"], c["old"], c["new"]) for c in changes] == [(ACCEPT_ALL, "0", "1")]
        assert [u["name"] for u in result["apply"]["unknown"]] == [UNKNOWN]
        assert rig.store.get_settings().accept_all_certificates is True
        assert [s.status for s in rig.server.seen] == [401, 200]  # the digest handshake

        status, after = await rig.call(api, "GET", f"{API}/provisioning")
        assert status == 200
        assert after["last_result"] == result

    async def test_unchanged_document_is_not_modified_unless_forced(
        self, rig: Rig, api: aiohttp.ClientSession
    ) -> None:
        rig.trust_server()
        rig.credentials()
        status, first = await rig.call(api, "POST", f"{API}/provisioning/fetch", json={})
        assert (status, first["status"]) == (200, "applied")
        audit_before = rig.store.audit(limit=1)[0].id

        status, again = await rig.call(api, "POST", f"{API}/provisioning/fetch")
        assert (status, again["status"], again["http_status"]) == (200, "not-modified", 304)
        assert again["apply"] is None

        forced = {"force": True}
        status, result = await rig.call(api, "POST", f"{API}/provisioning/fetch", json=forced)
        assert (status, result["status"], result["http_status"]) == (200, "unchanged", 200)
        assert "If-None-Match" not in rig.server.seen[-1].headers
        assert rig.store.audit(limit=1)[0].id == audit_before  # nothing written twice

    async def test_a_document_changing_the_password_never_shows_it(
        self, rig: Rig, api: aiohttp.ClientSession
    ) -> None:
        rig.trust_server()
        rig.credentials()
        rig.server.serve(document(("Security.global.HTTPAuthPassword", NEW_PASSWORD)), '"v2"')
        status, result = await rig.call(api, "POST", f"{API}/provisioning/fetch")
        assert (status, result["status"]) == (200, "applied")
        assert result["apply"]["changes"][0]["new"] == "[redacted]"
        assert rig.store.get_settings().http_auth_password == NEW_PASSWORD
        await rig.call(api, "GET", f"{API}/provisioning")
        # rig.assert_no_secret() runs on every answer at teardown

    async def test_wrong_credentials_are_a_result_with_401_and_change_nothing(
        self, rig: Rig, api: aiohttp.ClientSession
    ) -> None:
        rig.trust_server()
        rig.credentials(password="wrong-password")
        before = rig.state()
        status, result = await rig.call(api, "POST", f"{API}/provisioning/fetch")
        assert status == 200  # the call succeeded; the run did not
        assert result["status"] == "unauthorized"
        assert result["ok"] is False
        assert result["http_status"] == 401
        assert result["apply"] is None
        assert "refused the stored HTTP digest credentials" in result["errors"][0]
        assert rig.state() == before
        status, shown = await rig.call(api, "GET", f"{API}/provisioning")
        assert shown["last_result"]["status"] == "unauthorized"
        assert shown["last_result"]["http_status"] == 401

    async def test_untrusted_server_certificate_is_a_rejected_result(
        self, rig: Rig, api: aiohttp.ClientSession
    ) -> None:
        rig.credentials()
        before = rig.state()
        status, result = await rig.call(api, "POST", f"{API}/provisioning/fetch")
        assert (status, result["status"], result["ok"]) == (200, "rejected", False)
        assert result["errors"]
        assert rig.server.seen == []  # nothing was sent to a rejected server
        rejected = rig.store.list_rejected()
        assert [r.peer.transport.value for r in rejected] == ["https"]
        settings, trust, _ = rig.state()
        assert (settings, trust) == before[:2]

    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            (b"[1]", 400, "invalid-json"),
            (b"{not json", 400, "invalid-json"),
            (b'{"force": "yes"}', 422, None),
            (b'{"force": true, "url": "https://elsewhere/"}', 422, None),
        ],
    )
    async def test_bad_bodies_are_refused_before_fetching(
        self, rig: Rig, api: aiohttp.ClientSession, body: bytes, status: int, code: str | None
    ) -> None:
        headers = {"Content-Type": "application/json"}
        got, answer = await rig.call(
            api, "POST", f"{API}/provisioning/fetch", data=body, headers=headers
        )
        assert got == status
        assert set(answer) == {"error"}
        if code is not None:
            assert answer["error"]["code"] == code
        assert rig.server.seen == []


class TestApplyIsRecorded:
    async def test_a_document_applied_through_the_api_is_the_last_result(
        self, rig: Rig, api: aiohttp.ClientSession
    ) -> None:
        status, applied = await rig.call(api, "POST", f"{API}/provisioning/apply", data=DOCUMENT)
        assert (status, applied["status"]) == (200, "applied")
        assert "trigger" not in applied  # the apply answer keeps its shape
        status, shown = await rig.call(api, "GET", f"{API}/provisioning")
        last = shown["last_result"]
        assert (last["trigger"], last["status"], last["url"]) == ("api", "applied", None)
        assert last["apply"] == applied

    async def test_a_dry_run_is_not_recorded(self, rig: Rig, api: aiohttp.ClientSession) -> None:
        status, checked = await rig.call(
            api, "POST", f"{API}/provisioning/apply?dry_run=true", data=DOCUMENT
        )
        assert (status, checked["dry_run"]) == (200, True)
        status, shown = await rig.call(api, "GET", f"{API}/provisioning")
        assert shown["last_result"] is None


class TestNotAvailable:
    async def test_not_configured_is_409_and_records_nothing(
        self, store: SqliteStore, data_dir: Path
    ) -> None:
        config = provisioning_config(data_dir, "")
        harness = await start_admin(
            store, data_dir, config=config, provisioning=provisioning_service(config, store)
        )
        try:
            api = harness.client(basic=True)
            async with api.post(f"{API}/provisioning/fetch") as response:
                assert response.status == 409
                body = await response.json()
            assert body["error"]["code"] == "provisioning-not-configured"
            async with api.get(f"{API}/provisioning") as response:
                assert response.status == 200
                shown = await response.json()
            assert shown == {
                "configured": False,
                "url": None,
                "interval_seconds": 3600.0,
                "last_result": None,
            }
        finally:
            await harness.close()

    async def test_without_the_service_both_routes_answer_409(self, admin: AdminHarness) -> None:
        api = admin.client(basic=True)
        for method, path in (("GET", "/provisioning"), ("POST", "/provisioning/fetch")):
            async with api.request(method, f"{API}{path}") as response:
                assert response.status == 409, path
                body = await response.json()
            assert body["error"]["code"] == "provisioning-not-running"
            assert "not running in this process" in body["error"]["message"]

    async def test_credentials_in_the_configured_url_are_never_shown(
        self, store: SqliteStore, data_dir: Path
    ) -> None:
        config = provisioning_config(data_dir, "https://user:hunter2@prov.example.net/{mac}.xml")
        harness = await start_admin(
            store, data_dir, config=config, provisioning=provisioning_service(config, store)
        )
        try:
            api = harness.client(basic=True)
            async with api.get(f"{API}/provisioning") as response:
                text = await response.text()
            assert json.loads(text)["url"] == "https://prov.example.net/{mac}.xml"
            assert "hunter2" not in text
        finally:
            await harness.close()


class TestAuthentication:
    @pytest.mark.parametrize(
        ("method", "path"), [("GET", "/provisioning"), ("POST", "/provisioning/fetch")]
    )
    async def test_both_routes_need_an_admin(self, rig: Rig, method: str, path: str) -> None:
        anonymous = rig.admin.client()
        status, body = await rig.call(anonymous, method, f"{API}{path}")
        assert status == 401
        assert body["error"]["code"] == "unauthorized"
        wrong = rig.admin.client()
        wrong_auth = {"Authorization": aiohttp.encode_basic_auth("admin", "not-" + ADMIN_PASSWORD)}
        status, _ = await rig.call(wrong, method, f"{API}{path}", headers=wrong_auth)
        assert status == 401
        assert rig.server.seen == []

    async def test_a_session_needs_the_csrf_header_to_fetch(self, rig: Rig) -> None:
        rig.trust_server()
        rig.credentials()
        browser = rig.admin.client()
        await login(browser)
        status, body = await rig.call(browser, "POST", f"{API}/provisioning/fetch")
        assert (status, body["error"]["code"]) == (403, "csrf-failed")
        assert rig.server.seen == []
        token = await csrf_token(browser, "/settings")
        status, result = await rig.call(
            browser, "POST", f"{API}/provisioning/fetch", headers={"X-CSRF-Token": token}
        )
        assert (status, result["status"]) == (200, "applied")


class TestSettingsPage:
    async def test_the_page_shows_the_url_and_no_result_yet(self, rig: Rig) -> None:
        browser = rig.admin.client()
        await login(browser)
        status, html = await rig.call(browser, "GET", "/settings")
        assert status == 200
        assert "<h2>Provisioning</h2>" in html
        assert rig.server.url() in html
        assert "No provisioning run yet." in html
        assert 'action="/settings/provisioning/fetch"' in html
        assert "<script>" not in html and "style=" not in html  # strict CSP: no inline code

    async def test_fetch_now_with_the_token_runs_and_the_page_shows_the_result(
        self, rig: Rig
    ) -> None:
        rig.trust_server()
        rig.credentials()
        browser = rig.admin.client()
        await login(browser)
        token = await csrf_token(browser, "/settings")
        status, _ = await rig.call(
            browser, "POST", "/settings/provisioning/fetch", data={"csrf_token": token}
        )
        assert status == 303
        assert rig.store.get_settings().accept_all_certificates is True
        status, html = await rig.call(browser, "GET", "/settings")
        assert status == 200
        assert "Provisioning fetch: applied. 1 setting changed" in html  # the flash message
        assert '<span class="badge prov-ok">applied</span>' in html
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time> \(demand\)", html)
        assert f"{ACCEPT_ALL}</span>: 0 → 1" in html
        assert UNKNOWN in html  # the unknown name is listed
        assert rig.server.url(f"/provisioning/{MAC}.xml") in html

    async def test_fetch_now_without_the_token_is_refused(self, rig: Rig) -> None:
        rig.trust_server()
        rig.credentials()
        browser = rig.admin.client()
        await login(browser)
        status, _ = await rig.call(browser, "POST", "/settings/provisioning/fetch", data={})
        assert status == 403
        status, _ = await rig.call(
            browser, "POST", "/settings/provisioning/fetch", data={"csrf_token": "forged"}
        )
        assert status == 403
        assert rig.server.seen == []
        assert rig.store.get_settings().accept_all_certificates is False

    async def test_a_failed_fetch_is_shown_with_its_error(self, rig: Rig) -> None:
        rig.trust_server()
        rig.credentials(password="wrong-password")
        browser = rig.admin.client()
        await login(browser)
        token = await csrf_token(browser, "/settings")
        form = {"csrf_token": token, "force": "on"}
        status, _ = await rig.call(browser, "POST", "/settings/provisioning/fetch", data=form)
        assert status == 303
        status, html = await rig.call(browser, "GET", "/settings")
        assert '<div class="flash error" role="status">Provisioning fetch: unauthorized.' in html
        assert '<span class="badge prov-failed">unauthorized</span> HTTP 401' in html
        assert "refused the stored HTTP digest credentials" in html

    async def test_not_configured_shows_no_fetch_button(
        self, store: SqliteStore, data_dir: Path
    ) -> None:
        config = provisioning_config(data_dir, "")
        harness = await start_admin(
            store, data_dir, config=config, provisioning=provisioning_service(config, store)
        )
        try:
            browser = harness.client()
            await login(browser)
            async with browser.get("/settings") as response:
                html = await response.text()
            assert "not configured" in html
            assert "/settings/provisioning/fetch" not in html
            token = await csrf_token(browser, "/settings")
            async with browser.post(
                "/settings/provisioning/fetch", data={"csrf_token": token}
            ) as response:
                assert response.status == 200  # followed back to the page
                html = await response.text()
            assert "provisioning.url is not set" in html
        finally:
            await harness.close()

    async def test_without_the_service_the_page_says_so(self, admin: AdminHarness) -> None:
        browser = admin.client()
        await login(browser)
        async with browser.get("/settings") as response:
            html = await response.text()
        assert "Provisioning is not running in this process." in html
