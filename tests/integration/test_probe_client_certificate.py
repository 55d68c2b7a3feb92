"""``sipsgate probe`` against servers that demand a client certificate: OpenSSL's
``s_server -Verify`` and GnuTLS's ``gnutls-serv --require-client-cert``, TLS 1.2 and
1.3, with the standard (self-signed) device identity they refuse and with one their
CA issued. Under TLS 1.3 the refusal arrives after the handshake; the probe must
still report it, with the reason and the fix. Malformed targets are usage errors.
"""

from __future__ import annotations

import datetime as dt
from contextlib import AbstractContextManager

import pytest

from certstore.model import Actor
from certstore.store import DeviceIdentity
from certstore.x509 import parse_der
from tests.integration import test_cli_probe
from tests.integration.conftest import Hierarchy
from tests.integration.test_cli_probe import HOST, Cli, probe, trust_root
from tests.pki import Issued
from tests.tls_servers import GnutlsServer, OpensslServer

cli = test_cli_probe.cli  # the same fixture: a config and a store in tmp_path
REFUSED = "refused sipsgate's client certificate; install a certificate its CA issued"
ADMIN = Actor(name="test", interface="cli")


def install_identity(cli: Cli, device: Issued, kind: str) -> None:
    store = cli.store()
    try:
        store.set_device_identity(
            DeviceIdentity(
                kind=kind,
                chain=tuple(parse_der(c.der) for c in device.chain()),
                private_key_pem=device.key_pem,
                created_at=dt.datetime.now(dt.UTC),
            ),
            actor=ADMIN,
            action="create",
        )
    finally:
        store.close()


def server(
    peer: str, leaf: Issued, client_ca: Issued, version: str
) -> AbstractContextManager[OpensslServer | GnutlsServer]:
    if peer == "openssl":
        return OpensslServer(
            leaf, client_ca=client_ca, extra_args=[f"-tls{version.replace('.', '_')}"]
        )
    return GnutlsServer(leaf, client_ca=client_ca, version=version)


@pytest.fixture
def client_ca(hierarchy: Hierarchy) -> Issued:
    return hierarchy.factory.ca("Client CA of the server")


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("peer", ["openssl", "gnutls"])
class TestClientCertificate:
    async def test_refused_identity_is_reported_with_the_fix(
        self, cli: Cli, hierarchy: Hierarchy, client_ca: Issued, peer: str, version: str
    ) -> None:
        """The standard identity is refused: exit 2, code client-certificate-refused,
        the reason sentence (never advice about TLS versions)."""
        trust_root(cli, hierarchy)
        standard = hierarchy.factory.leaf(None, cn="sipsgate", dns=("sipsgate",), client_auth=True)
        install_identity(cli, standard, "standard")
        with server(peer, hierarchy.leaf, client_ca, version) as srv:
            connect = f"127.0.0.1:{srv.port}"
            run = await probe(cli, f"sips:{HOST}", "--connect", connect, "--json")
            human = await probe(cli, f"sips:{HOST}", "--connect", connect)
        assert run.code == 2, run.out + run.err
        error = run.json()["error"]
        assert isinstance(error, dict)
        assert error["code"] == "client-certificate-refused"
        assert REFUSED in error["message"]
        assert "TLS 1.2 or 1.3" not in error["message"]
        assert human.code == 2
        assert "NO CONNECTION" in human.out and REFUSED in human.out

    async def test_identity_issued_by_its_ca_is_accepted(
        self, cli: Cli, hierarchy: Hierarchy, client_ca: Issued, peer: str, version: str
    ) -> None:
        """Its twin: an identity the server's CA issued gets through: exit 0."""
        trust_root(cli, hierarchy)
        device = hierarchy.factory.leaf(client_ca, cn="sipsgate", dns=(), client_auth=True)
        install_identity(cli, device, "installed")
        with server(peer, hierarchy.leaf, client_ca, version) as srv:
            run = await probe(cli, f"sips:{HOST}", "--connect", f"127.0.0.1:{srv.port}", "--json")
        assert run.code == 0, run.out + run.err
        assert run.json()["verdict"] == "accept"


class TestMalformedTargets:
    @pytest.mark.parametrize(
        "uri", ["sips://sip.example.test:5061", "sips:sip.example.test/path", "sips:a b"]
    )
    async def test_malformed_target_is_a_usage_error(self, cli: Cli, uri: str) -> None:
        """sips://host and other malformed targets: exit 2, a sentence with the form."""
        run = await probe(cli, uri, "--json")
        assert run.code == 2
        assert run.out == ""  # nothing was dialled, so there is no result
        assert "HOST[:PORT]" in run.err and "e.g." in run.err
