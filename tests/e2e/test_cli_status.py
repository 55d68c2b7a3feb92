"""``sipsgate status`` against a real ``sipsgate run``: readiness without a password,
the full view with it, and a clear answer when nothing listens."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.admin_support import PASSWORD
from tests.gateway_process import REPO, GatewayProcess, start_gateway

pytestmark = pytest.mark.slow


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    process = await start_gateway(tmp_path)
    try:
        yield process
    finally:
        assert await process.stop() == 0


async def status_cli(
    gateway: GatewayProcess, *args: str, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPSGATE_")}
    env["PYTHONPATH"] = str(REPO)
    if password is not None:
        env["SIPSGATE_ADMIN_PASSWORD"] = password
    command = [sys.executable, "-m", "gateway.cli", "status", "--config", str(gateway.config_path)]
    return await asyncio.to_thread(
        subprocess.run,
        [*command, *args],
        env=env,
        cwd=gateway.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_full_status_with_the_password(gateway: GatewayProcess) -> None:
    done = await status_cli(gateway, "--url", gateway.url, "--json", password=PASSWORD)
    assert done.returncode == 1, done.stderr  # no upstream configured: degraded
    view = json.loads(done.stdout)
    assert view["status"] == "degraded"
    assert view["reason"] == "No upstream configured"
    assert view["upstream"]["state"] == "not-configured"
    assert "sip.upstream" in view["problems"][0]
    assert view["device_identity"]["days_left"] > 30
    assert view["base_stations"] == []

    text = await status_cli(gateway, "--url", gateway.url, password=PASSWORD)
    assert text.stdout.startswith("Status: degraded — No upstream configured\n")
    assert "0 base stations seen" in text.stdout


async def test_readiness_without_the_password(gateway: GatewayProcess) -> None:
    done = await status_cli(gateway, "--url", gateway.url)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Status: degraded — No upstream configured"
    assert "SIPSGATE_ADMIN_PASSWORD" in lines[1]


async def test_wrong_password_is_said(gateway: GatewayProcess) -> None:
    done = await status_cli(gateway, "--url", gateway.url, password="not-the-password")
    assert done.returncode == 1
    assert "refused the status: The user name or password is wrong." in done.stderr


async def test_nothing_listening(gateway: GatewayProcess) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        done = await status_cli(gateway, "--url", f"https://127.0.0.1:{port}")
    assert done.returncode == 1
    assert done.stdout.startswith(f"Status: not answering at https://127.0.0.1:{port} (")
