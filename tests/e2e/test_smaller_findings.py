"""The smaller findings against ``sipsgate run``: open redirect after login, bad JSON and
out-of-range times, a flood of login forms, a restore beyond what the runtime stores,
an open data directory, and the same checks in ``certs restore``."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp

from certstore.backup import checksum
from tests.admin_support import PASSWORD, csrf_token
from tests.gateway_process import REPO, start_gateway
from tests.pki import CertFactory

API = "/api/v1"
OUT_OF_RANGE = "0001-01-01T00:00:00+14:00"


async def test_next_with_a_tab_does_not_leave_the_site(tmp_path: Path) -> None:
    gateway = await start_gateway(tmp_path)
    try:
        async with gateway.session(basic=False) as browser:
            async with browser.get("/login", params={"next": "/\t/evil.example/x"}) as page:
                assert 'name="next" value="/"' in await page.text()
            token = await csrf_token(browser, "/login")
            async with browser.post(
                "/login",
                data={"csrf_token": token, "password": PASSWORD, "next": "/\t/evil.example/x"},
                allow_redirects=False,
            ) as response:
                assert response.status == 303
                assert response.headers["Location"] == "/"
    finally:
        assert await gateway.stop() == 0


async def test_bad_json_and_out_of_range_times_are_4xx_not_500(tmp_path: Path) -> None:
    gateway = await start_gateway(tmp_path)
    try:
        async with gateway.session() as api:
            async with api.post(
                f"{API}/decisions", data="[" * 100_000, headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 400
                assert (await response.json())["error"]["code"] == "invalid-json"
            pin = {"decision": "accept", "fingerprint": "ab" * 32, "expires_at": OUT_OF_RANGE}
            async with api.post(f"{API}/decisions", json=pin) as response:
                assert 400 <= response.status < 500
                message = (await response.json())["error"]["message"]
                assert "outside the years 1 to 9999" in message
        assert not any("Traceback" in line for line in gateway.stderr_lines)
        assert not any('"admin.request.crashed"' in line for line in gateway.stderr_lines)
    finally:
        assert await gateway.stop() == 0


async def test_a_flood_of_login_forms_evicts_no_one(tmp_path: Path) -> None:
    gateway = await start_gateway(tmp_path)
    try:
        async with gateway.session(basic=False) as admin:
            token = await csrf_token(admin, "/login")
            connector = aiohttp.TCPConnector(ssl=gateway.client_context(), limit=8)
            async with aiohttp.ClientSession(
                base_url=gateway.url, connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            ) as flood:

                async def form() -> int:
                    async with flood.get("/login") as response:
                        await response.read()
                        return response.status

                statuses = await asyncio.wait_for(
                    asyncio.gather(*(form() for _ in range(2500))), 240
                )
            assert set(statuses) == {200}
            async with admin.post(
                "/login",
                data={"csrf_token": token, "password": PASSWORD, "next": "/trust"},
                allow_redirects=False,
            ) as response:
                assert response.status == 303
    finally:
        assert await gateway.stop() == 0


async def test_an_open_data_directory_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    gateway = await start_gateway(tmp_path)
    try:
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert '"gateway.data_dir.tightened"' in "\n".join(gateway.stderr_lines)
    finally:
        assert await gateway.stop() == 0


def sipsgate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SIPSGATE_GATEWAY_DATA_DIR": str(tmp_path / "data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def rejected_entry(chain: list[bytes], count: int, seen: str) -> dict[str, object]:
    return {
        "id": 1,
        "chain": [base64.b64encode(der).decode() for der in chain],
        "reasons": ["unknown-issuer"],
        "peer": {"host": "sip.example.test", "port": 5061, "transport": "sips", "sni": None},
        "first_seen": seen,
        "last_seen": seen,
        "count": count,
        "overridden": False,
        "previous": None,
    }


def test_certs_restore_refuses_what_the_runtime_never_stores(tmp_path: Path) -> None:
    """Out-of-range times, chains longer than recorded, absurd counts: a clear error
    (exit 1, no traceback) and nothing changed."""
    out = tmp_path / "backup.json"
    run = sipsgate(tmp_path, "certs", "backup", "--out", str(out))
    assert run.returncode == 0, run.stderr
    good = json.loads(out.read_text())
    factory = CertFactory()
    root = factory.ca("Restore Test Root")
    chain = [factory.leaf(root, cn=f"c{n}.example").der for n in range(11)]
    now = "2026-01-01T00:00:00+00:00"
    cases = {
        "time": [rejected_entry(chain[:1], 1, OUT_OF_RANGE)],
        "length": [rejected_entry(chain, 1, now)],
        "count": [rejected_entry(chain[:1], 2**62, now)],
    }
    for name, rejected in cases.items():
        body = {**good, "rejected": rejected}
        body["checksum"] = checksum(body)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(body))
        run = sipsgate(tmp_path, "certs", "restore", str(path))
        assert run.returncode == 1, (name, run.stdout, run.stderr)
        assert "Traceback" not in run.stderr, run.stderr
        assert run.stderr.startswith("sipsgate: "), run.stderr
    listed = sipsgate(tmp_path, "certs", "rejected", "list", "--json")
    assert json.loads(listed.stdout) == []
