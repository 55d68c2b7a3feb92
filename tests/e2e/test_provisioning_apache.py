"""Provisioning from Debian's Apache 2.4 with ``SSLVerifyClient require`` and
``mod_auth_digest``, through a real ``sipsgate run`` relaying SIP to kamailio.

With the standard (self-signed) device identity Apache refuses the client
certificate: under TLS 1.3 after the handshake, at the first read. The gateway must
record that result with the reason and the fix, keep running and keep relaying, at
start and at every later fetch. With an identity the test's CA issued, installed
through the product's own CSR flow, the document is fetched and applied.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certstore.model import Actor, TrustSource
from certstore.sqlite import SqliteStore
from certstore.x509 import parse_der
from tests.apache_server import ApacheProvisioning
from tests.gateway_process import REPO, start_gateway, write_config
from tests.pki import CertFactory, Issued
from tests.sip_peers import DOMAIN, KamailioRegistrar, Sipp

pytestmark = pytest.mark.slow
USER = "7C2F80C6E5C2"
PASSWORD = "s3cret-digest-pass"
ACCEPT_ALL = "SystemSettings.global.Security_Certificates_AcceptAllCertificates"
WILDCARDS = "SystemSettings.global.Security_Certificates_AllowWildcards"
REFUSED = "refused sipsgate's client certificate; install a certificate its CA issued"
ADMIN = Actor(name="test", interface="cli")


def document() -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<ProviderFrame><Provider>\n'
        f'  <param name="{ACCEPT_ALL}" value="0"/>\n'
        '  <param name="Security.global.HTTPAuthUsername" value="prov-user-2"/>\n'
        "</Provider></ProviderFrame>\n"
    ).encode()


@dataclass(frozen=True)
class Pki:
    server_root: Issued  # issued Apache's certificate; sipsgate trusts it
    apache: Issued
    device_ca: Issued  # the CA Apache trusts for client certificates
    provider_root: Issued
    provider: Issued  # kamailio's certificate


@pytest.fixture(scope="module")
def pki() -> Pki:
    factory = CertFactory()
    server_root = factory.ca("Provisioning Root CA (apache e2e)")
    provider_root = factory.ca("Provider Root CA (apache e2e)")
    return Pki(
        server_root=server_root,
        apache=factory.leaf(server_root, cn="127.0.0.1", dns=(), ips=("127.0.0.1",)),
        device_ca=factory.ca("Device CA (apache e2e)"),
        provider_root=provider_root,
        provider=factory.leaf(provider_root, cn=DOMAIN, dns=(DOMAIN,)),
    )


@pytest.fixture
def kamailio(pki: Pki) -> Iterator[KamailioRegistrar]:
    with KamailioRegistrar(pki.provider) as server:
        yield server


def sipsgate(workdir: Path, *args: str, ok: bool = True) -> tuple[int, Any]:
    """`sipsgate ... --json` on the workdir's config, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPSGATE_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--json", "--config", "sipsgate.toml"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if ok:
        assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), f"no JSON from sipsgate {' '.join(args)}: {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)


def prepare(workdir: Path, pki: Pki, url: str) -> None:
    """A config with provisioning.url, a store trusting Apache's CA, digest credentials."""
    data_dir = workdir / "var"
    data_dir.mkdir(mode=0o700)
    config = workdir / "sipsgate.toml"
    write_config(config, data_dir, ["127.0.0.1:0"])
    with config.open("a", encoding="utf-8") as out:
        out.write(f'\n[provisioning]\nurl = "{url}"\ninterval = "1h"\n')
    store = SqliteStore(data_dir / "sipsgate.db")
    try:
        store.add_trust(
            [parse_der(pki.server_root.der), parse_der(pki.provider_root.der)],
            source=TrustSource.UPLOADED,
            actor=ADMIN,
        )
        store.update_settings(
            {"http_auth_username": USER, "http_auth_password": PASSWORD}, actor=ADMIN
        )
    finally:
        store.close()


async def test_refused_client_certificate_is_recorded_and_the_relay_keeps_answering(
    tmp_path: Path, pki: Pki, kamailio: KamailioRegistrar
) -> None:
    """Apache (TLS 1.3) refuses the standard identity at the start-up fetch and later:
    the result says why, the gateway keeps running and REGISTERs are relayed."""
    with ApacheProvisioning(
        pki.apache, client_ca=pki.device_ca, username=USER, password=PASSWORD,
        document=document(), tls_version="1.3",
    ) as apache:  # fmt: skip
        prepare(tmp_path, pki, apache.url)
        gateway = await start_gateway(
            tmp_path,
            extra_env={
                "SIPSGATE_SIP_UPSTREAM": f"sips:{DOMAIN}",
                "SIPSGATE_SIP_UPSTREAM_ADDRESS": f"127.0.0.1:{kamailio.port}",
            },
        )
        try:
            relay = (await gateway.relay_listeners())["udp"]
            started = json.loads(await gateway.wait_for_log('"provisioning.fetch.refused"'))
            assert started["trigger"] == "start"
            assert REFUSED in started["errors"][0]
            assert started["attempts"] == 1  # a refusal is not retried

            registered = await Sipp("register.xml", relay, service="bs1").run()
            assert registered.ok, f"REGISTER after the refused fetch: {registered!r}"

            code, now = sipsgate(tmp_path, "provision", "now", ok=False)
            assert code == 1
            assert now["status"] == "refused"
            assert REFUSED in now["errors"][0]
            assert now["attempts"] == 1

            async with gateway.session() as http:

                async def fetch_now() -> Any:
                    async with http.post("/api/v1/provisioning/fetch") as response:
                        return await response.json()

                # A base station registers while the refused fetch runs.
                later, during = await asyncio.gather(
                    fetch_now(), Sipp("register.xml", relay, service="bs3").run()
                )
                assert during.ok, f"REGISTER during the refused fetch: {during!r}"
                async with http.get("/readyz") as response:
                    assert response.status == 200
                    ready = await response.json()
            assert later["status"] == "refused" and REFUSED in later["errors"][0]
            assert ready["status"] == "ready"
            assert ready["services"]["provisioning"]["failures"] == 0

            _, status = sipsgate(tmp_path, "provision", "status", ok=False)
            assert status["last_result"]["status"] == "refused"
            again = await Sipp("register.xml", relay, service="bs2").run()
            assert again.ok, f"REGISTER after the later refused fetch: {again!r}"
            assert gateway.process.returncode is None
        finally:
            assert await gateway.stop() == 0
        assert any("SSL" in line or "certificate" in line for line in apache.log)


async def test_tls12_refusal_is_reported_with_its_reason_and_not_retried(
    tmp_path: Path, pki: Pki
) -> None:
    """Under TLS 1.2 the refusal comes in the handshake: the reason, not '[Errno None]',
    and one attempt, not three."""
    with ApacheProvisioning(
        pki.apache, client_ca=pki.device_ca, username=USER, password=PASSWORD,
        document=document(), tls_version="1.2",
    ) as apache:  # fmt: skip
        prepare(tmp_path, pki, apache.url)
        sipsgate(tmp_path, "device", "renew")  # the standard, self-signed identity
        code, result = sipsgate(tmp_path, "provision", "now", ok=False)
    assert code == 1
    assert result["status"] == "refused"
    assert result["attempts"] == 1
    (error,) = result["errors"]
    assert REFUSED in error and "Errno" not in error


def sign(csr_pem: bytes, ca: Issued) -> bytes:
    """The test CA's answer to the gateway's signing request (a client certificate),
    followed by the CA's own certificate."""
    cert = CertFactory().sign_csr(ca, x509.load_pem_x509_csr(csr_pem), valid_days=(-1, 365))
    return cert.public_bytes(Encoding.PEM) + ca.pem


async def test_ca_signed_identity_is_accepted_and_the_document_applied(
    tmp_path: Path, pki: Pki
) -> None:
    """The CSR flow (create, sign with the CA Apache trusts, install) → fetch applied."""
    with ApacheProvisioning(
        pki.apache, client_ca=pki.device_ca, username=USER, password=PASSWORD,
        document=document(), tls_version="1.3",
    ) as apache:  # fmt: skip
        prepare(tmp_path, pki, apache.url)
        sipsgate(tmp_path, "device", "renew")
        refused_code, refused = sipsgate(tmp_path, "provision", "now", ok=False)
        assert refused_code == 1 and refused["status"] == "refused"

        csr_file = tmp_path / "device.csr"
        sipsgate(
            tmp_path, "device", "csr", "create", "--cn", "sipsgate-e2e", "--out", str(csr_file)
        )
        answer = tmp_path / "device.pem"
        answer.write_bytes(sign(csr_file.read_bytes(), pki.device_ca))
        installed = sipsgate(tmp_path, "device", "install", str(answer))[1]
        assert json.dumps(installed).count("installed") >= 1

        _, result = sipsgate(tmp_path, "provision", "now")
    assert result["status"] == "applied", result
    changed = {c["parameter"] for c in result["apply"]["changes"]}
    assert "Security.global.HTTPAuthUsername" in changed
    store = SqliteStore(tmp_path / "var" / "sipsgate.db")
    try:
        assert store.get_settings().http_auth_username == "prov-user-2"
    finally:
        store.close()
