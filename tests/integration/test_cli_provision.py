"""``sipsgate provision`` run for real, in a subprocess, against a loopback HTTPS server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from certstore.model import Actor, TrustSource
from certstore.sqlite import SqliteStore
from certstore.x509 import parse_der
from tests.integration.conftest import Hierarchy
from tests.provisioning_server import ProvisioningServer

ROOT = Path(__file__).resolve().parents[2]
ACCEPT_ALL = "SystemSettings.global.Security_Certificates_AcceptAllCertificates"
ADMIN = Actor(name="test", interface="cli")


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, object]:
        value = json.loads(self.out)
        assert isinstance(value, dict)
        return value


@dataclass
class Cli:
    tmp: Path
    data: Path

    def config(self, url: str = "") -> Path:
        path = self.tmp / "sipsgate.toml"
        path.write_text(
            f'[gateway]\nname = "gw-7"\ndata_dir = "{self.data}"\n\n'
            f'[tls]\nhandshake_timeout = "5s"\n\n[provisioning]\nurl = "{url}"\n'
        )
        return path

    def store(self) -> SqliteStore:
        return SqliteStore(self.data / "sipsgate.db")

    async def run(self, *args: str, url: str = "", stdin: bytes | None = None) -> Run:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())",
            "provision", *args, "--config", str(self.config(url)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            env=env, cwd=self.tmp,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return Run(proc.returncode, out.decode(), err.decode())


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    data = tmp_path / "data"
    data.mkdir()
    return Cli(tmp_path, data)


def accept_all(cli: Cli) -> bool:
    with cli.store() as store:
        return store.get_settings().accept_all_certificates


class TestApplyFile:
    async def test_a_file_is_applied_and_becomes_the_last_result(self, cli: Cli) -> None:
        doc = cli.tmp / "prov.txt"
        doc.write_text(f"{ACCEPT_ALL}=1\nSecurity.global.HTTPAuthPassword=hunter2-xyz\nFoo=1\n")
        run = await cli.run("apply", str(doc))
        assert run.code == 0, run.err
        assert f"{ACCEPT_ALL}: 0 -> 1" in run.out
        assert "[redacted] -> [redacted]" in run.out
        assert "Unknown parameter at line 3: Foo" in run.out
        assert "hunter2-xyz" not in run.out + run.err
        assert accept_all(cli)
        status = await cli.run("status", "--json")
        assert status.code == 0
        last = status.json()["last_result"]
        assert isinstance(last, dict)
        assert (last["status"], last["trigger"]) == ("applied", "file")
        assert "hunter2-xyz" not in status.out

    async def test_an_invalid_file_changes_nothing_and_exits_1(self, cli: Cli) -> None:
        doc = cli.tmp / "prov.xml"
        doc.write_text(
            f'<p><param name="{ACCEPT_ALL}" value="1"/>'
            '<param name="Security.global.HTTPAuthUsername" value="a:b"/></p>'
        )
        run = await cli.run("apply", str(doc), "--json")
        assert run.code == 1
        result = run.json()
        assert result["status"] == "invalid"
        assert "Security.global.HTTPAuthUsername" in str(result["errors"])
        assert not accept_all(cli)

    async def test_a_hostile_document_from_stdin_is_refused(self, cli: Cli) -> None:
        bomb = b'<!DOCTYPE p [<!ENTITY a "aaaaaaaaaa">]><p>&a;</p>'
        run = await cli.run("apply", "-", stdin=bomb)
        assert run.code == 1
        assert "DTD or entities" in run.out
        assert not accept_all(cli)

    async def test_dry_run_shows_and_changes_nothing(self, cli: Cli) -> None:
        doc = cli.tmp / "prov.txt"
        doc.write_text(f"{ACCEPT_ALL}=1\n")
        run = await cli.run("apply", str(doc), "--dry-run")
        assert run.code == 0, run.err
        assert "Would change:" in run.out
        assert not accept_all(cli)
        status = await cli.run("status")
        assert "No provisioning has run yet." in status.out


class TestNow:
    async def test_fetch_now_applies_then_is_not_modified(
        self, cli: Cli, hierarchy: Hierarchy
    ) -> None:
        leaf = hierarchy.factory.leaf(hierarchy.intermediate, cn="localhost", dns=("localhost",))
        with cli.store() as store:
            store.add_trust(
                [parse_der(hierarchy.root.der)], source=TrustSource.UPLOADED, actor=ADMIN
            )
            store.update_settings(
                {"http_auth_username": "gw7", "http_auth_password": "pw-7-digest"}, actor=ADMIN
            )
        async with ProvisioningServer(leaf, username="gw7", password="pw-7-digest") as server:
            server.serve(f'<p><param name="{ACCEPT_ALL}" value="1"/></p>'.encode(), '"e1"')
            url = server.url("/prov/{name}.xml")
            first = await cli.run("now", "--json", url=url)
            second = await cli.run("now", url=url)
        assert first.code == 0, first.err
        result = first.json()
        assert result["status"] == "applied"
        assert result["url"] == f"https://localhost:{server.port}/prov/gw-7.xml"
        assert accept_all(cli)
        assert second.code == 0, second.err
        assert "Status:   not-modified" in second.out
        assert server.seen[-1].headers.get("If-None-Match") == '"e1"'

    async def test_an_untrusted_server_exits_1_and_is_recorded(
        self, cli: Cli, hierarchy: Hierarchy
    ) -> None:
        leaf = hierarchy.factory.leaf(hierarchy.intermediate, cn="localhost", dns=("localhost",))
        async with ProvisioningServer(leaf) as server:
            run = await cli.run("now", url=server.url("/p.xml"))
        assert run.code == 1
        assert "Status:   rejected" in run.out
        with cli.store() as store:
            assert len(store.list_rejected()) == 1

    async def test_no_url_exits_1(self, cli: Cli) -> None:
        run = await cli.run("now")
        assert run.code == 1
        assert "not-configured" in run.out
