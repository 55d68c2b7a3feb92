"""Name constraints end to end: a constrained CA in the trust list, ``sipsgate probe``
against real loopback TLS servers under it, and the rejected list."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography import x509

from certstore.model import Actor, Reason, TrustSource
from certstore.x509 import parse_der
from tests.integration.test_cli_probe import Cli, probe
from tests.pki import CertFactory, Issued
from tests.tls_servers import WAIT, TlsEchoServer, server_context

ALLOWED = "sip.example.test"
EXCLUDED = "sip.blocked.example.test"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "sipsgate.toml"
    config.write_text(f'[gateway]\ndata_dir = "{data}"\n\n[tls]\nhandshake_timeout = "5s"\n')
    return Cli(config, data / "sipsgate.db")


@pytest.fixture(scope="module")
def constrained_ca() -> Issued:
    """A CA that may issue below example.test, except below blocked.example.test."""
    nc = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("example.test")],
        excluded_subtrees=[x509.DNSName("blocked.example.test")],
    )
    return CertFactory().ca("Constrained Provider CA", extra_extensions=[(nc, True)])


def trust(cli: Cli, ca: Issued) -> None:
    store = cli.store()
    try:
        store.add_trust(
            [parse_der(ca.der)], source=TrustSource.UPLOADED, actor=Actor(name="t", interface="cli")
        )
    finally:
        store.close()


async def test_allowed_name_accepted(cli: Cli, constrained_ca: Issued) -> None:
    """A server named inside the permitted subtree: exit 0, rule chain-valid."""
    trust(cli, constrained_ca)
    leaf = CertFactory().leaf(constrained_ca, cn=ALLOWED, dns=(ALLOWED,))
    async with TlsEchoServer(server_context(leaf)) as server:
        run = await probe(cli, f"sips:{ALLOWED}", "--connect", f"127.0.0.1:{server.port}")
    assert run.code == 0, run.out + run.err
    assert "Rule:     chain-valid" in run.out


async def test_excluded_name_rejected_and_recorded(cli: Cli, constrained_ca: Issued) -> None:
    """A server named inside the excluded subtree: exit 1, reason name-constraints with a
    sentence naming the CA, the constraint and the name, and the chain in the rejected list."""
    trust(cli, constrained_ca)
    leaf = CertFactory().leaf(constrained_ca, cn=EXCLUDED, dns=(EXCLUDED,))
    async with TlsEchoServer(server_context(leaf)) as server:
        run = await probe(cli, f"sips:{EXCLUDED}", "--connect", f"127.0.0.1:{server.port}")
        await asyncio.wait_for(server.failed.wait(), WAIT)
    assert run.code == 1, run.out + run.err
    assert "name-constraints: the CA may not issue for this name" in run.out
    sentence = next(line for line in run.out.splitlines() if "excludes DNS:" in line)
    assert "CN=Constrained Provider CA" in sentence
    assert "excludes DNS:blocked.example.test" in sentence
    assert f"names DNS:{EXCLUDED}" in sentence

    store = cli.store()
    try:
        rejected = store.list_rejected()
    finally:
        store.close()
    assert len(rejected) == 1
    assert rejected[0].reasons == (Reason.NAME_CONSTRAINTS,)
    assert [c.fingerprint for c in rejected[0].chain] == [leaf.fingerprint]
