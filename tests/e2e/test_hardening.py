"""``sipsgate run`` under hostile clients: what an unauthenticated client can make the
gateway hold, how the login throttle holds under concurrency, what ends a session."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from tests.admin_support import basic_header, csrf_token, login
from tests.gateway_process import REPO, GatewayProcess, start_gateway

API = "/api/v1"
MB = 1024 * 1024


def peak_rss(gateway: GatewayProcess) -> int:
    """The highest resident set size the gateway process has had, in bytes."""
    status = Path(f"/proc/{gateway.process.pid}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


async def chunked(total: int, piece: int = 256 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    block = b"a" * piece
    while sent < total:
        yield block
        sent += piece


async def post_chunked(
    client: aiohttp.ClientSession, path: str, total: int, headers: dict[str, str] | None = None
) -> int:
    """The status of a chunked POST of ``total`` bytes (0: the connection was cut)."""
    try:
        async with client.post(
            path,
            data=chunked(total),
            headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
            allow_redirects=False,
        ) as response:
            await response.read()
            return response.status
    except aiohttp.ClientError:
        return 0


class TestBodyLimitBeforeLogin:
    async def test_parallel_chunked_login_bodies_are_cut_off(self, tmp_path: Path) -> None:
        """Chunked bodies on the public login form are refused at the small login limit,
        so twelve parallel 16 MiB bodies leave the gateway's peak memory where it was."""
        gateway = await start_gateway(tmp_path)
        try:
            before = peak_rss(gateway)
            async with gateway.session(basic=False) as client:
                statuses = await asyncio.wait_for(
                    asyncio.gather(*(post_chunked(client, "/login", 16 * MB) for _ in range(12))),
                    120,
                )
                assert set(statuses) <= {413, 0}, statuses
                assert 413 in statuses
                async with client.get("/healthz") as response:
                    assert response.status == 200
            grown = peak_rss(gateway) - before
            assert grown < 40 * MB, f"peak RSS grew by {grown // MB} MiB"
        finally:
            assert await gateway.stop() == 0

    async def test_session_routes_cap_chunked_bodies_at_max_upload(self, tmp_path: Path) -> None:
        """A logged-in form post of a chunked body over admin.max_upload is 413, and the
        large limit of the restore routes is not given before authentication."""
        gateway = await start_gateway(tmp_path)
        try:
            async with gateway.session(basic=False) as client:
                assert (await login(client)).status == 303
                status = await post_chunked(client, "/settings", 3 * MB)
                assert status == 413
                status = await post_chunked(client, "/pins", 3 * MB)
                assert status == 413
            async with gateway.session(basic=False) as anonymous:
                status = await post_chunked(anonymous, f"{API}/restore", 3 * MB)
                assert status == 401
            async with gateway.session(basic=False) as wrong:
                status = await post_chunked(
                    wrong,
                    f"{API}/restore",
                    3 * MB,
                    headers={"Authorization": basic_header(password="not the password")},
                )
                assert status == 401
        finally:
            assert await gateway.stop() == 0


class TestThrottleUnderConcurrency:
    async def test_concurrent_wrong_basic_logins_are_admitted_only_up_to_the_limit(
        self, tmp_path: Path
    ) -> None:
        """50 concurrent wrong HTTP Basic attempts from one address: only the free
        attempts are checked (401), every other one is throttled (429) before argon2."""
        gateway = await start_gateway(tmp_path)
        try:
            wrong = {"Authorization": basic_header(password="not the password")}
            async with gateway.session(basic=False) as client:

                async def attempt() -> int:
                    async with client.get(f"{API}/trust", headers=wrong) as response:
                        await response.read()
                        return response.status

                statuses = await asyncio.wait_for(
                    asyncio.gather(*(attempt() for _ in range(50))), 60
                )
            assert statuses.count(401) <= 5, statuses
            assert statuses.count(429) >= 45, statuses
            assert set(statuses) <= {401, 429}
            failed = [line for line in gateway.stderr_lines if '"admin.login.failed"' in line]
            assert len(failed) == statuses.count(401)
        finally:
            assert await gateway.stop() == 0

    async def test_a_logged_in_admin_is_served_during_a_login_flood(self, tmp_path: Path) -> None:
        """While 60 wrong form logins arrive at once, the admin's session requests are
        answered without waiting for the attacker's password checks."""
        gateway = await start_gateway(tmp_path)
        try:
            admin = await gateway.logged_in()
            async with admin, gateway.session(basic=False) as attacker:
                token = await csrf_token(attacker, "/login")

                async def wrong_login() -> int:
                    async with attacker.post(
                        "/login",
                        data={"csrf_token": token, "password": "wrong password", "next": "/"},
                        allow_redirects=False,
                    ) as response:
                        await response.read()
                        return response.status

                flood = asyncio.gather(*(wrong_login() for _ in range(60)))
                loop = asyncio.get_running_loop()
                waits = []
                for _ in range(5):
                    started = loop.time()
                    async with admin.get(f"{API}/trust") as response:
                        assert response.status == 200
                    waits.append(loop.time() - started)
                statuses = await asyncio.wait_for(flood, 60)
            assert statuses.count(401) <= 5, statuses
            assert max(waits) < 2.0, waits
        finally:
            assert await gateway.stop() == 0


class TestPasswordChangeEndsSessions:
    async def test_sessions_opened_with_the_old_password_end(self, tmp_path: Path) -> None:
        """`sipsgate admin set-password` while the gateway runs: the old cookie neither
        shows a page nor changes a setting; a login with the new password works."""
        gateway = await start_gateway(tmp_path)
        try:
            admin = await gateway.logged_in()
            async with admin:
                token = await csrf_token(admin, "/settings")
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway.cli", "admin", "set-password",
                    "--config", str(gateway.config_path),
                    cwd=gateway.workdir, env={**os.environ, "PYTHONPATH": str(REPO)},
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                await asyncio.wait_for(process.communicate(b"a brand new password\n"), 60)
                assert process.returncode == 0
                async with admin.get("/trust", allow_redirects=False) as response:
                    assert response.status == 303
                    assert response.headers["Location"].startswith("/login")
                async with admin.post(
                    "/settings",
                    data={"csrf_token": token, "accept_all_certificates": "on"},
                    allow_redirects=False,
                ) as response:
                    assert response.status == 401
                async with admin.get(
                    f"{API}/settings", headers={"X-CSRF-Token": token}
                ) as response:
                    assert response.status == 401
            async with gateway.session(basic=False) as fresh:
                assert (await login(fresh, password="a brand new password")).status == 303
                async with fresh.get("/trust") as response:
                    assert response.status == 200
        finally:
            assert await gateway.stop() == 0
