"""The whole product on the wire: a real `sipsgate run` process relays a SIPp base
station's REGISTER to kamailio over TLS, and the certificate workflow runs through
the `sipsgate` command while the gateway keeps running.

The flow of the product in one test: the upstream's chain is rejected → the base
station gets 503 and the chain is in the rejected list → an admin trusts it with
the CLI → the next REGISTER succeeds, without a restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_process import REPO, start_gateway
from tests.pki import CertFactory, Issued
from tests.sip_peers import DOMAIN, KamailioRegistrar, Sipp

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def provider() -> tuple[Issued, Issued]:
    """The provider's root and the server certificate issued by it."""
    factory = CertFactory()
    root = factory.ca("Provider Root CA (gateway e2e)")
    return root, factory.leaf(root, cn=DOMAIN, dns=(DOMAIN,))


@pytest.fixture
def kamailio(provider: tuple[Issued, Issued]) -> Iterator[KamailioRegistrar]:
    with KamailioRegistrar(provider[1]) as server:
        yield server


def sipsgate(workdir: Path, *args: str) -> Any:
    """Run `sipsgate ... --json` on the gateway's store, as an operator would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPSGATE_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--json", "--config", "sipsgate.toml"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


async def test_rejected_upstream_then_trusted_then_registered(
    tmp_path: Path, kamailio: KamailioRegistrar, provider: tuple[Issued, Issued]
) -> None:
    gateway = await start_gateway(
        tmp_path,
        extra_env={
            "SIPSGATE_SIP_UPSTREAM": f"sips:{DOMAIN}",
            "SIPSGATE_SIP_UPSTREAM_ADDRESS": f"127.0.0.1:{kamailio.port}",
        },
    )
    try:
        relay = (await gateway.relay_listeners())["udp"]

        refused = await Sipp("register_503.xml", relay, service="bs1", auth=False).run()
        assert refused.ok, f"the base station was not told 503: {refused!r}"

        (entry,) = sipsgate(tmp_path, "certs", "rejected", "list")
        assert entry["peer"]["host"] == DOMAIN and entry["peer"]["transport"] == "sips"
        assert "unknown-issuer" in entry["reasons"]
        assert entry["chain"][0]["fingerprint"] == provider[1].fingerprint

        # The server sends only its own certificate: the operator compares its
        # fingerprint with the provider's and trusts it (the top of the chain).
        trusted = sipsgate(tmp_path, "certs", "trust", str(entry["id"]))
        assert [c["fingerprint"] for c in trusted["added"]] == [provider[1].fingerprint]
        assert sipsgate(tmp_path, "certs", "rejected", "list") == []

        registered = await Sipp("register.xml", relay, service="bs1").run()
        assert registered.ok, f"REGISTER after trusting failed: {registered!r}"
        await gateway.wait_for_log("sip.upstream.connected")
    finally:
        assert await gateway.stop() == 0
