"""Login, sessions, CSRF, throttling, headers and body limits of the admin endpoint."""

from __future__ import annotations

import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from certstore.model import TrustSource
from gateway.admin.auth import SESSION_COOKIE, LoginThrottle, write_password
from tests.admin_support import (
    PASSWORD,
    PKI,
    TEST_ACTOR,
    AdminHarness,
    basic_header,
    csrf_token,
    login,
    open_store,
    start_admin,
)

HEADERS = {
    "Strict-Transport-Security": "max-age=31536000",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def session_id(session: aiohttp.ClientSession) -> str | None:
    for cookie in session.cookie_jar:
        if cookie.key == SESSION_COOKIE:
            return cookie.value
    return None


class TestLogin:
    async def test_login_sets_a_strict_cookie_and_opens_the_pages(
        self, admin: AdminHarness
    ) -> None:
        browser = admin.client()
        response = await login(browser)
        assert response.status == 303
        assert response.headers["Location"] == "/trust"
        cookie = response.cookies[SESSION_COOKIE]
        assert cookie["secure"]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Strict"
        assert cookie["path"] == "/"
        async with browser.get("/trust") as page:
            assert page.status == 200
            assert "Trust list" in await page.text()

    async def test_wrong_password_is_refused(self, admin: AdminHarness) -> None:
        browser = admin.client()
        response = await login(browser, password="wrong password")
        assert response.status == 401
        async with browser.get("/trust", allow_redirects=False) as page:
            assert page.status == 303
            assert page.headers["Location"].startswith("/login")

    async def test_session_id_changes_at_login(self, admin: AdminHarness) -> None:
        """A session id planted before login (fixation) is worthless after it."""
        browser = admin.client()
        async with browser.get("/login") as page:
            assert page.status == 200
        before = session_id(browser)
        assert before
        await login(browser)
        after = session_id(browser)
        assert after
        assert after != before
        attacker = admin.client()
        attacker.cookie_jar.update_cookies({SESSION_COOKIE: before}, admin.server.make_url("/"))
        async with attacker.get("/trust", allow_redirects=False) as page:
            assert page.status == 303

    async def test_logout_ends_the_session(self, admin: AdminHarness) -> None:
        browser = admin.client()
        await login(browser)
        stolen = session_id(browser)
        token = await csrf_token(browser, "/trust")
        async with browser.post("/logout", data={"csrf_token": token}, allow_redirects=False) as r:
            assert r.status == 303
        replay = admin.client()
        assert stolen is not None
        replay.cookie_jar.update_cookies({SESSION_COOKIE: stolen}, admin.server.make_url("/"))
        async with replay.get("/trust", allow_redirects=False) as page:
            assert page.status == 303

    async def test_next_is_never_an_open_redirect(self, admin: AdminHarness) -> None:
        browser = admin.client()
        token = await csrf_token(browser, "/login")
        async with browser.post(
            "/login",
            data={"csrf_token": token, "password": PASSWORD, "next": "//evil.example/"},
            allow_redirects=False,
        ) as response:
            assert response.headers["Location"] == "/"  # the landing page (status)

    async def test_basic_auth_on_the_api(self, admin: AdminHarness) -> None:
        client = admin.client()
        async with client.get("/api/v1/trust") as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Basic")
            assert (await response.json())["error"]["code"] == "unauthorized"
        headers = {"Authorization": basic_header(password="nope")}
        async with client.get("/api/v1/trust", headers=headers) as response:
            assert response.status == 401
        headers = {"Authorization": basic_header(user="root")}
        async with client.get("/api/v1/trust", headers=headers) as response:
            assert response.status == 401
        headers = {"Authorization": "Basic !!!"}
        async with client.get("/api/v1/trust", headers=headers) as response:
            assert response.status == 401
        async with client.get("/api/v1/trust", headers={"Authorization": basic_header()}) as r:
            assert r.status == 200

    async def test_a_changed_password_file_takes_effect(self, admin: AdminHarness) -> None:
        write_password(admin.data_dir, "a brand new password")
        client = admin.client()
        async with client.get("/api/v1/trust", headers={"Authorization": basic_header()}) as r:
            assert r.status == 401
        headers = {"Authorization": basic_header(password="a brand new password")}
        async with client.get("/api/v1/trust", headers=headers) as response:
            assert response.status == 200


class TestCsrf:
    async def test_form_post_without_token_is_403(self, admin: AdminHarness) -> None:
        browser = admin.client()
        await login(browser)
        async with browser.post("/trust/clear", data={"confirmed": "1"}) as response:
            assert response.status == 403
            assert "expired" in await response.text()

    async def test_form_post_with_wrong_token_is_403(self, admin: AdminHarness) -> None:
        cert = PKI.leaf(None, cn="keep.example")
        admin.store.add_trust([cert.model], source=TrustSource.UPLOADED, actor=TEST_ACTOR)
        browser = admin.client()
        await login(browser)
        other = admin.client()
        await login(other)
        foreign = await csrf_token(other, "/trust")
        for token in ("x" * 43, foreign):
            async with browser.post(
                "/trust/clear", data={"csrf_token": token, "confirmed": "1"}
            ) as response:
                assert response.status == 403
        assert len(admin.store.list_trust()) == 1
        good = await csrf_token(browser, "/trust")
        async with browser.post(
            "/trust/clear", data={"csrf_token": good, "confirmed": "1"}, allow_redirects=False
        ) as response:
            assert response.status == 303
        assert admin.store.list_trust() == ()

    async def test_api_with_a_session_needs_the_csrf_header(self, admin: AdminHarness) -> None:
        browser = admin.client()
        await login(browser)
        async with browser.get("/api/v1/trust") as response:
            assert response.status == 200
        async with browser.delete("/api/v1/trust") as response:
            assert response.status == 403
            assert (await response.json())["error"]["code"] == "csrf-failed"
        token = await csrf_token(browser, "/trust")
        async with browser.delete("/api/v1/trust", headers={"X-CSRF-Token": token}) as response:
            assert response.status == 200

    async def test_login_form_needs_its_token(self, admin: AdminHarness) -> None:
        browser = admin.client()
        async with browser.get("/login"):
            pass
        async with browser.post(
            "/login", data={"password": PASSWORD}, allow_redirects=False
        ) as response:
            assert response.status == 403


@pytest.fixture
async def throttled_admin(tmp_path: Path) -> AsyncIterator[AdminHarness]:
    data = tmp_path / "var"
    data.mkdir()
    store = open_store(data)
    throttle = LoginThrottle(time.monotonic, free_failures=3, base_seconds=30.0)
    harness = await start_admin(store, data, throttle=throttle)
    yield harness
    await harness.close()
    store.close()


class TestThrottle:
    async def test_form_logins_are_throttled(self, throttled_admin: AdminHarness) -> None:
        browser = throttled_admin.client()
        statuses = [(await login(browser, password=f"guess {i}")).status for i in range(3)]
        assert statuses == [401, 401, 401]
        response = await login(browser, password=PASSWORD)
        assert response.status == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 30
        async with browser.get("/trust", allow_redirects=False) as page:
            assert page.status == 303  # the right password during the lockout did not log in

    async def test_basic_auth_is_throttled_too(self, throttled_admin: AdminHarness) -> None:
        client = throttled_admin.client()
        wrong = {"Authorization": basic_header(password="guess")}
        for _ in range(3):
            async with client.get("/api/v1/trust", headers=wrong) as response:
                assert response.status == 401
        async with client.get("/api/v1/trust", headers={"Authorization": basic_header()}) as r:
            assert r.status == 429
            assert int(r.headers["Retry-After"]) >= 1
            assert (await r.json())["error"]["code"] == "too-many-attempts"


class TestHeaders:
    @pytest.mark.parametrize(
        "path",
        [
            "/healthz",
            "/login",
            "/trust",
            "/api/v1/trust",
            "/api/v1/nothing-here",
            "/static/admin.css",
            "/no-such-page",
        ],
    )
    async def test_security_headers_on_every_response(self, admin: AdminHarness, path: str) -> None:
        client = admin.client()
        await login(client)
        async with client.get(path, allow_redirects=False) as response:
            for name, value in HEADERS.items():
                assert response.headers.get(name) == value, (path, name)
            csp = response.headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp
            assert "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp

    async def test_pages_have_no_inline_script_or_style(self, admin: AdminHarness) -> None:
        client = admin.client()
        await login(client)
        for path in ("/login", "/trust", "/rejected", "/pins", "/settings", "/audit"):
            async with client.get(path) as response:
                text = await response.text()
            assert "<script>" not in text
            assert " style=" not in text
            assert "<style" not in text
            assert " onclick=" not in text


class TestBodyLimits:
    async def test_ten_megabytes_is_413_and_nothing_is_stored(self, admin: AdminHarness) -> None:
        api = admin.client(basic=True)
        cert = PKI.leaf(None, cn="big.example")
        body = cert.pem + b"#" * (10 * 1024 * 1024)
        async with api.post("/api/v1/trust", data=io.BytesIO(body)) as response:
            assert response.status == 413
            error = (await response.json())["error"]
            assert error["code"] == "too-large"
            assert str(1024 * 1024) in error["message"]
        assert admin.store.list_trust() == ()

    async def test_chunked_body_over_the_limit_is_413(self, admin: AdminHarness) -> None:
        api = admin.client(basic=True)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(40):
                yield b"#" * (64 * 1024)

        async with api.post("/api/v1/trust", data=chunks()) as response:
            assert response.status == 413
        assert admin.store.list_trust() == ()

    async def test_big_form_upload_is_413_with_a_page(self, admin: AdminHarness) -> None:
        browser = admin.client()
        await login(browser)
        token = await csrf_token(browser, "/trust")
        form = aiohttp.FormData()
        form.add_field("csrf_token", token)
        form.add_field("file", io.BytesIO(b"#" * (2 * 1024 * 1024)), filename="big.pem")
        async with browser.post("/trust/upload", data=form) as response:
            assert response.status == 413
            assert response.content_type == "text/html"
        assert admin.store.list_trust() == ()

    async def test_path_traversal_in_multipart_filename_is_harmless(
        self, admin: AdminHarness, tmp_path: Path
    ) -> None:
        api = admin.client(basic=True)
        cert = PKI.leaf(None, cn="traversal.example")
        before = sorted(os.listdir(tmp_path))
        form = aiohttp.FormData()
        form.add_field(
            "file",
            cert.pem,
            filename="../../../../tmp/evil.pem",
            content_type="application/x-pem-file",
        )
        async with api.post("/api/v1/trust", data=form) as response:
            assert response.status == 201
        bad = aiohttp.FormData()
        bad.add_field("file", b"garbage", filename="../../<script>alert(1)</script>.pem")
        async with api.post("/api/v1/trust", data=bad) as response:
            assert response.status == 400
            message = (await response.json())["error"]["message"]
        assert "<script>" not in message
        assert ".." not in message
        assert sorted(os.listdir(tmp_path)) == before
        assert [e.certificate for e in admin.store.list_trust()] == [cert.model]
