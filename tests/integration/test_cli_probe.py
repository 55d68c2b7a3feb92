"""``sipsgate probe`` run for real, in a subprocess, against loopback TLS servers."""

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
from gateway.cli.probe import parse_target
from gateway.config import SipSection
from gateway.tls.probe import follow_config
from tests.integration.conftest import Hierarchy
from tests.tls_servers import WAIT, TlsEchoServer, server_context

ROOT = Path(__file__).resolve().parents[2]
HOST = "sip.example.test"


@dataclass
class Cli:
    config: Path
    store_path: Path

    def store(self) -> SqliteStore:
        return SqliteStore(self.store_path)


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, object]:
        value = json.loads(self.out)
        assert isinstance(value, dict)
        return value


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "sipsgate.toml"
    config.write_text(f'[gateway]\ndata_dir = "{data}"\n\n[tls]\nhandshake_timeout = "5s"\n')
    return Cli(config, data / "sipsgate.db")


async def probe(cli: Cli, *args: str) -> Run:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())",
        "probe", *args, "--config", str(cli.config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL, env=env, cwd=cli.config.parent,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def trust_root(cli: Cli, h: Hierarchy) -> None:
    store = cli.store()
    try:
        store.add_trust(
            [parse_der(h.root.der)],
            source=TrustSource.UPLOADED,
            actor=Actor(name="test", interface="cli"),
        )
    finally:
        store.close()


def rejected_count(cli: Cli) -> int:
    store = cli.store()
    try:
        return len(store.list_rejected())
    finally:
        store.close()


class TestProbe:
    async def test_accepted_exits_0_and_shows_the_chain(
        self, cli: Cli, hierarchy: Hierarchy
    ) -> None:
        """A trusted server: exit 0, verdict, rule and both certificates printed."""
        trust_root(cli, hierarchy)
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            run = await probe(cli, f"sips:{HOST}", "--connect", f"127.0.0.1:{server.port}")
        assert run.code == 0, run.err
        assert "Verdict:  ACCEPT" in run.out
        assert "Rule:     chain-valid" in run.out
        assert hierarchy.leaf.fingerprint in run.out
        assert hierarchy.intermediate.fingerprint in run.out
        assert "TLSv1.3" in run.out

    async def test_rejected_exits_1_with_json_and_is_recorded(
        self, cli: Cli, hierarchy: Hierarchy
    ) -> None:
        """An untrusted server: exit 1, the JSON contract, and one rejected entry."""
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            run = await probe(
                cli, f"sips:{HOST}", "--connect", f"127.0.0.1:{server.port}", "--json"
            )
            await asyncio.wait_for(server.failed.wait(), WAIT)
        assert run.code == 1, run.err
        doc = run.json()
        assert doc["verdict"] == "reject"
        assert doc["rule"] == "untrusted"
        assert "unknown-issuer" in doc["reasons"]  # type: ignore[operator]
        assert doc["peer"] == {"host": HOST, "port": 5061, "transport": "sips", "sni": HOST}
        chain = doc["chain"]
        assert isinstance(chain, list)
        assert [c["fingerprint"] for c in chain] == [
            hierarchy.leaf.fingerprint,
            hierarchy.intermediate.fingerprint,
        ]
        assert {"subject", "issuer", "not_before", "not_after", "status"} <= set(chain[0])
        assert doc["recorded"] is True
        assert isinstance(doc["rejected_id"], int)
        assert rejected_count(cli) == 1

    async def test_human_output_gives_each_reason_with_its_fix(
        self, cli: Cli, hierarchy: Hierarchy
    ) -> None:
        """Reasons come as sentences with the command to run."""
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            run = await probe(cli, f"sips:{HOST}", "--connect", f"127.0.0.1:{server.port}")
        assert run.code == 1
        assert "Verdict:  REJECT" in run.out
        assert (
            "unknown-issuer: the chain does not lead to a certificate on the trust list" in run.out
        )
        assert "sipsgate certs trust" in run.out
        assert "Recorded in the rejected list as #" in run.out

    async def test_no_record_leaves_the_rejected_list_alone(
        self, cli: Cli, hierarchy: Hierarchy
    ) -> None:
        """--no-record: same verdict, nothing stored."""
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            run = await probe(
                cli,
                f"sips:{HOST}",
                "--connect",
                f"127.0.0.1:{server.port}",
                "--json",
                "--no-record",
            )
        assert run.code == 1
        assert run.json()["recorded"] is False
        assert rejected_count(cli) == 0

    async def test_https_uses_port_443_as_the_identity(
        self, cli: Cli, hierarchy: Hierarchy
    ) -> None:
        """https:// defaults the peer port to 443 while --connect dials elsewhere."""
        trust_root(cli, hierarchy)
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            run = await probe(
                cli, f"https://{HOST}", "--connect", f"127.0.0.1:{server.port}", "--json"
            )
        assert run.code == 0, run.err
        assert run.json()["peer"] == {"host": HOST, "port": 443, "transport": "https", "sni": HOST}

    async def test_wrong_host_exits_1(self, cli: Cli, hierarchy: Hierarchy) -> None:
        """A trusted chain for another name is rejected as name-mismatch."""
        trust_root(cli, hierarchy)
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            run = await probe(
                cli, "sips:other.example.test", "--connect", f"127.0.0.1:{server.port}", "--json"
            )
        assert run.code == 1
        assert run.json()["reasons"] == ["name-mismatch"]

    async def test_refused_connection_exits_2(self, cli: Cli) -> None:
        """Nothing listening: exit 2 and an error object in JSON."""
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        run = await probe(cli, f"sips:{HOST}", "--connect", f"127.0.0.1:{port}", "--json")
        assert run.code == 2
        doc = run.json()
        assert doc["verdict"] is None
        assert doc["error"]["code"] == "connect"  # type: ignore[index]
        human = await probe(cli, f"sips:{HOST}", "--connect", f"127.0.0.1:{port}")
        assert human.code == 2
        assert "NO CONNECTION" in human.out
        assert f"nothing is listening on 127.0.0.1:{port} (connection refused)" in human.out
        assert "Connect call failed" not in human.out + doc["error"]["message"]  # type: ignore[index]
        assert "('127.0.0.1'" not in human.out

    async def test_bad_uri_exits_2(self, cli: Cli) -> None:
        """A URI that is neither sips: nor https:// is a usage error."""
        run = await probe(cli, "sip:plain.example.test")
        assert run.code == 2
        assert "not a sips: or https:// URI" in run.err


def configure_upstream(cli: Cli, address: str) -> None:
    """The config of a gateway whose provider is HOST, dialled at ``address``."""
    text = cli.config.read_text()
    cli.config.write_text(
        text + f'\n[sip]\nupstream = "sips:{HOST}"\nupstream_address = "{address}"\n'
    )


class TestProbeFollowsTheConfig:
    @pytest.mark.parametrize("uri", [f"sips:{HOST}:5061", f"sips:{HOST}", f"SIPS:{HOST.upper()}"])
    async def test_the_configured_upstream_is_dialled_at_upstream_address(
        self, cli: Cli, hierarchy: Hierarchy, uri: str
    ) -> None:
        """The command the relay's log and 503 name reaches the server the relay dials."""
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            configure_upstream(cli, f"127.0.0.1:{server.port}")
            run = await probe(cli, uri, "--json")
            human = await probe(cli, uri, "--no-record")
        assert run.code == 1, run.out + run.err
        doc = run.json()
        assert doc["reasons"] == ["unknown-issuer"]
        assert doc["address"] == {
            "host": "127.0.0.1",
            "port": server.port,
            "source": "sip.upstream_address",
        }
        assert doc["peer"]["host"].lower() == HOST  # type: ignore[index]
        assert human.code == 1, human.out + human.err
        assert f"(dialled 127.0.0.1:{server.port}, SNI {HOST})" in human.out
        assert "from sip.upstream_address (this is the configured upstream)" in human.out
        # The rejected entry keeps both: the identity checked and the address dialled.
        store = cli.store()
        try:
            (entry,) = store.list_rejected()
        finally:
            store.close()
        assert (entry.peer.host.lower(), entry.peer.port) == (HOST, 5061)
        assert entry.address == f"127.0.0.1:{server.port}"
        assert doc["rejected_id"] == entry.id

    async def test_connect_wins_over_the_config(self, cli: Cli, hierarchy: Hierarchy) -> None:
        """--connect is dialled as written, even for the configured upstream."""
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            configure_upstream(cli, "127.0.0.1:9")  # nothing listens on the discard port
            run = await probe(
                cli, f"sips:{HOST}", "--connect", f"127.0.0.1:{server.port}", "--json"
            )
        assert run.code == 1, run.err
        assert run.json()["address"] == {
            "host": "127.0.0.1",
            "port": server.port,
            "source": "--connect",
        }

    @pytest.mark.parametrize(
        "uri", [f"sips:{HOST}:5062", "sips:other.example.test", f"https://{HOST}"]
    )
    def test_other_destinations_are_dialled_as_written(self, uri: str) -> None:
        """Only the configured upstream (same scheme, host and port) follows the config."""
        sip = SipSection(upstream=f"sips:{HOST}", upstream_address="127.0.0.1:9")
        target = parse_target(uri)
        assert follow_config(target, sip) == (target, "uri")
        followed, source = follow_config(parse_target(f"sips:{HOST}."), sip)
        assert (followed.address, source) == (("127.0.0.1", 9), "sip.upstream_address")


class TestProbeInTheAuditLog:
    async def test_a_probe_is_credited_to_the_cli(self, cli: Cli, hierarchy: Hierarchy) -> None:
        """The rejection a probe records, and a first-use pin it makes, name the CLI."""
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            run = await probe(cli, f"sips:{HOST}", "--connect", f"127.0.0.1:{server.port}")
            assert run.code == 1, run.err
            store = cli.store()
            try:
                store.update_settings(
                    {"trust_on_first_use": True}, actor=Actor(name="test", interface="cli")
                )
            finally:
                store.close()
            first_use = await probe(
                cli, "sips:other.example.test", "--connect", f"127.0.0.1:{server.port}"
            )
        assert first_use.code == 0, first_use.out + first_use.err
        store = cli.store()
        try:
            events = {e.action: e for e in store.audit()}
        finally:
            store.close()
        assert events["rejected.record"].interface == "cli"
        assert events["rejected.record"].actor != "gateway"
        assert events["pin.add"].interface == "cli"
        assert events["pin.add"].actor == "trust-on-first-use"
