"""A live flow closed when a new CRL revokes its certificate; CRL upload by the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from certstore.model import Actor, Reason
from certstore.revocation import RevocationSource, SourceKind
from gateway.errors import TrustRejected
from gateway.tls.policy import TlsTarget
from tests.integration.trust_env import make_env
from tests.pki import CertFactory
from tests.revocation_support import make_crl
from tests.tls_servers import OpensslServer

ADMIN = Actor(name="admin", interface="cli")


async def test_new_crl_closes_the_live_flow_and_records_it(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    factory = CertFactory(now)
    root = factory.ca("Live Root")
    leaf = factory.leaf(root)
    env = make_env(tmp_path / "store.db")
    env.trust(root)
    with OpensslServer(leaf) as server:
        target = TlsTarget.sips(
            "sip.example.test", connect_host="127.0.0.1", connect_port=server.port
        )
        reader, writer = await env.connector.open_connection(target)
        assert len(env.connector.registry) == 1
        env.store.put_revocation(
            make_crl(root, [leaf], now=now),
            kind=SourceKind.CRL,
            source=RevocationSource.UPLOADED,
            url=None,
            actor=ADMIN,
        )
        (closed,) = await env.connector.revalidate_and_record()
        assert closed.revoked_by is not None
        assert closed.revoked_by.verdict.reasons == (Reason.REVOKED,)
        assert "according to uploaded" in closed.revoked_by.verdict.findings[0].message
        with pytest.raises(TrustRejected, match="no longer trusted"):
            await asyncio.wait_for(reader.read(), 5.0)  # the flow ends with the reason
        writer.close()
        with pytest.raises(TrustRejected) as info:
            await env.connector.open_connection(target)
        assert info.value.verdict.reasons == (Reason.REVOKED,)
    (entry,) = env.rejected()
    assert entry.reasons == (Reason.REVOKED,)
    assert entry.leaf.fingerprint == leaf.fingerprint


def _sipsgate() -> list[str]:
    exe = shutil.which("sipsgate", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "gateway.cli"]


def test_cli_crl_add_list_and_remove(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    factory = CertFactory(now)
    root = factory.ca("CLI CRL Root")
    crl_file = tmp_path / "root.crl"
    crl_file.write_bytes(make_crl(root, [factory.leaf(root)], now=now))
    env = {**os.environ, "SIPSGATE_GATEWAY_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_sipsgate(), "certs", "crl", *args],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    added = run("add", str(crl_file), "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["source"] == "uploaded"
    listed = json.loads(run("list", "--json").stdout)
    assert [s["entries"] for s in listed] == [1]
    assert "next update" in run("list").stdout
    garbage = tmp_path / "junk.crl"
    garbage.write_bytes(b"junk")
    bad = run("add", str(garbage))
    assert bad.returncode != 0 and "not a readable CRL" in bad.stderr
    assert len(json.loads(run("list", "--json").stdout)) == 1
    fingerprint = listed[0]["fingerprint"]
    unknown = run("remove", "0" * 64)
    assert unknown.returncode != 0 and "uploaded CRL" in unknown.stderr
    removed = run("remove", fingerprint[:12], "--json")  # a prefix will do
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout)["fingerprint"] == fingerprint
    assert json.loads(run("list", "--json").stdout) == []
