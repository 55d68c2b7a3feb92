"""Names a peer chose are shown, never obeyed: terminal escapes and bidi overrides in a
certificate are made visible by ``sipsgate probe``, ``certs ...`` and the pages alike."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.admin_support import AdminHarness, login
from tests.pki import CertFactory, Issued
from tests.tls_servers import TlsEchoServer, server_context

ROOT = Path(__file__).resolve().parents[2]
HOST = "sip.example.test"
# Clears the screen, turns red, rings the bell and reverses the rest of the line.
HOSTILE_CN = "\x1b[2J\x1b[31mevil\x07\u202egpj.exe\u2066x"
FORBIDDEN = ("\x1b", "\x07", "\u202e", "\u2066")


def assert_visible(text: str) -> None:
    for char in FORBIDDEN:
        assert char not in text, f"{char!r} reached the output"
    assert "\u241b[2J\u241b[31mevil\u2407\\u202egpj.exe\\u2066x" in text


@pytest.fixture(scope="module")
def hostile() -> Issued:
    factory = CertFactory()
    root = factory.ca(HOSTILE_CN)
    return factory.leaf(root, cn=HOSTILE_CN, dns=(HOST,))


async def sipsgate(workdir: Path, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIPSGATE_GATEWAY_DATA_DIR": str(workdir)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL, env=env, cwd=workdir,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_shows_hostile_names_visibly(tmp_path: Path, hostile: Issued) -> None:
    """probe, certs rejected list/show/trust, certs add/list/show."""
    async with TlsEchoServer(server_context(hostile)) as server:
        code, out, _ = await sipsgate(
            tmp_path, "probe", f"sips:{HOST}", "--connect", f"127.0.0.1:{server.port}"
        )
    assert code == 1
    assert_visible(out)
    code, out, err = await sipsgate(tmp_path, "certs", "rejected", "list")
    assert code == 0, err
    assert_visible(out)
    code, out, err = await sipsgate(tmp_path, "certs", "rejected", "show", "1")
    assert code == 0, err
    assert_visible(out)
    code, out, err = await sipsgate(tmp_path, "certs", "rejected", "trust", "1")
    assert code == 0, err
    assert_visible(out)
    code, out, err = await sipsgate(tmp_path, "certs", "list")
    assert code == 0, err
    assert_visible(out)
    code, out, err = await sipsgate(tmp_path, "certs", "show", hostile.fingerprint)
    assert code == 0, err
    assert_visible(out)


async def test_pages_show_hostile_names_visibly(admin: AdminHarness, hostile: Issued) -> None:
    api = admin.client(basic=True)
    async with api.post("/api/v1/trust", data=hostile.parents[0].pem) as response:
        assert response.status == 201
    browser = admin.client()
    await login(browser)
    for path in ("/trust", f"/trust/{hostile.parents[0].fingerprint}"):
        async with browser.get(path) as response:
            assert response.status == 200
            assert_visible(await response.text())
