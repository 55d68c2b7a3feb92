"""The device identity in real TLS: a CSR signed by an ``openssl`` CA, installed with its
intermediate out of order, served by a TLS server that ``openssl s_client`` verifies,
and presented as a client certificate."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certstore import device
from certstore.device_service import DeviceService
from certstore.store import DeviceIdentity
from tests.device_support import ADMIN, FakeStore, openssl


@dataclass
class OpensslCa:
    root_pem: Path
    inter_pem: Path
    inter_key: Path
    dir: Path

    def sign(self, csr_pem: bytes, name: str = "leaf", *, extfile: str | None = None) -> bytes:
        csr = self.dir / f"{name}.csr"
        out = self.dir / f"{name}.pem"
        csr.write_bytes(csr_pem)
        args = [
            "x509", "-req", "-in", str(csr), "-CA", str(self.inter_pem),
            "-CAkey", str(self.inter_key), "-set_serial", "0x1234abcd", "-days", "30",
            "-sha256", "-out", str(out),
        ]  # fmt: skip
        if extfile is None:
            args += ["-copy_extensions", "copyall"]
        else:
            ext = self.dir / f"{name}.ext"
            ext.write_text(extfile)
            args += ["-extfile", str(ext)]
        openssl(*args)
        return out.read_bytes()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> OpensslCa:
    """A root and an intermediate CA made with the openssl command line."""
    d = tmp_path_factory.mktemp("ca")
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(d / "root.key"), "-out", str(d / "root.pem"), "-days", "30",
        "-subj", "/CN=Openssl Test Root", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(d / "inter.key"), "-out", str(d / "inter.csr"),
        "-subj", "/CN=Openssl Test Intermediate",
    )  # fmt: skip
    (d / "inter.ext").write_text(
        "basicConstraints=critical,CA:TRUE,pathlen:0\n"
        "keyUsage=critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    openssl(
        "x509", "-req", "-in", str(d / "inter.csr"), "-CA", str(d / "root.pem"),
        "-CAkey", str(d / "root.key"), "-set_serial", "0x42", "-days", "30", "-sha256",
        "-extfile", str(d / "inter.ext"), "-out", str(d / "inter.pem"),
    )  # fmt: skip
    return OpensslCa(
        root_pem=d / "root.pem", inter_pem=d / "inter.pem", inter_key=d / "inter.key", dir=d
    )


def install_signed(ca: OpensslCa, key: str = "ec-p256") -> tuple[DeviceService, DeviceIdentity]:
    store = FakeStore()
    service = DeviceService(store, name="gw")
    service.ensure_standard_identity(actor=ADMIN)
    spec = device.build_spec(
        subject={"CN": "localhost", "O": "sipsgate test"},
        key=key,
        san_dns=["localhost"],
        san_ip=["127.0.0.1"],
    )
    pending = service.create_csr(spec, actor=ADMIN)
    leaf = ca.sign(pending.csr_pem, f"leaf-{key}")
    # The root first, the intermediate last: the install puts them in order.
    upload = ca.root_pem.read_bytes() + leaf + ca.inter_pem.read_bytes()
    outcome = service.install(upload, actor=ADMIN)
    return service, outcome.identity


def write_identity(identity: DeviceIdentity, d: Path) -> tuple[Path, Path]:
    chain = d / "chain.pem"
    key = d / "key.pem"
    chain.write_bytes(device.export_chain(identity.chain))
    key.write_bytes(identity.private_key_pem)
    key.chmod(0o600)
    return chain, key


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[object]:
    """Start a one-connection TLS server; yields a starter taking (chain, key, client CA)."""
    threads: list[threading.Thread] = []
    sockets: list[socket.socket] = []
    seen: dict[str, object] = {}

    def start(chain: Path, key: Path, client_ca: Path | None = None) -> int:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(chain, key)
        if client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(client_ca)
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(30)
        sockets.append(listener)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(30)
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    seen["peer"] = tls.getpeercert()
                    tls.sendall(b"hello\n")
            except (OSError, ssl.SSLError) as exc:
                seen["error"] = exc

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return int(listener.getsockname()[1])

    start.seen = seen  # type: ignore[attr-defined]
    yield start
    for s in sockets:
        s.close()
    for t in threads:
        t.join(timeout=30)


class TestServedIdentity:
    @pytest.mark.parametrize("key", ["ec-p256", "rsa-2048"])
    def test_s_client_verifies(
        self, ca: OpensslCa, tls_server: object, tmp_path: Path, key: str
    ) -> None:
        """openssl s_client verifies the installed chain against the test root: code 0."""
        _, identity = install_signed(ca, key)
        assert [c.common_name for c in identity.chain] == [
            "localhost",
            "Openssl Test Intermediate",
            "Openssl Test Root",
        ]
        chain, key_file = write_identity(identity, tmp_path)
        port = tls_server(chain, key_file)  # type: ignore[operator]
        proc = subprocess.run(
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-servername",
                "localhost",
                "-verify_hostname",
                "localhost",
                "-verify_return_error",
                "-CAfile",
                str(ca.root_pem),
            ],
            input=b"",
            capture_output=True,
            timeout=60,
            check=False,
        )
        out = proc.stdout.decode() + proc.stderr.decode()
        # The exit code is left alone: the test server closes without close_notify,
        # which s_client may report as an unexpected EOF after a verified handshake.
        assert "Verification: OK" in out
        assert "Verified peername: localhost" in out
        assert "Verify return code: 0 (ok)" in out
        assert "CN = localhost" in out

    def test_s_client_refuses_other_root(
        self, ca: OpensslCa, tls_server: object, tmp_path: Path
    ) -> None:
        """Failure twin: against another root, s_client refuses the same server."""
        _, identity = install_signed(ca)
        chain, key_file = write_identity(identity, tmp_path)
        other = tmp_path / "other.pem"
        other.write_bytes(
            device.export_chain(
                device.generate_standard_identity("x", [], identity.created_at).chain
            )
        )
        port = tls_server(chain, key_file)  # type: ignore[operator]
        proc = subprocess.run(
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-verify_return_error",
                "-CAfile",
                str(other),
            ],
            input=b"",
            capture_output=True,
            timeout=60,
            check=False,
        )
        out = proc.stdout.decode() + proc.stderr.decode()
        assert proc.returncode != 0
        assert "Verify return code: 0 (ok)" not in out
        assert "self-signed certificate in certificate chain" in out or "verify error" in out

    def test_openssl_verifies_chain(self, ca: OpensslCa, tmp_path: Path) -> None:
        """openssl verify accepts the stored chain for TLS server and client purposes."""
        _, identity = install_signed(ca)
        leaf = tmp_path / "leaf.pem"
        leaf.write_bytes(device.export_chain(identity.chain[:1]))
        untrusted = tmp_path / "untrusted.pem"
        untrusted.write_bytes(device.export_chain(identity.chain[1:2]))
        for purpose in ("sslserver", "sslclient"):
            out = openssl(
                "verify", "-CAfile", str(ca.root_pem), "-untrusted", str(untrusted),
                "-purpose", purpose, str(leaf),
            )  # fmt: skip
            assert ": OK" in out


class TestClientCertificate:
    def test_presented_to_a_server(self, ca: OpensslCa, tls_server: object, tmp_path: Path) -> None:
        """The identity works as a TLS client certificate a server verifies."""
        _, identity = install_signed(ca)
        chain, key_file = write_identity(identity, tmp_path)
        server_dir = tmp_path / "server"
        server_dir.mkdir()
        server = device.generate_standard_identity("localhost", ["localhost"], identity.created_at)
        s_chain = server_dir / "chain.pem"
        s_key = server_dir / "key.pem"
        s_chain.write_bytes(device.export_chain(server.chain))
        s_key.write_bytes(server.private_key_pem)
        port = tls_server(s_chain, s_key, client_ca=ca.root_pem)  # type: ignore[operator]

        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(s_chain)
        client.load_cert_chain(chain, key_file)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
            client.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.recv(16) == b"hello\n"
        seen = tls_server.seen  # type: ignore[attr-defined]
        assert "error" not in seen
        subject = dict(item[0] for item in seen["peer"]["subject"])
        assert subject["commonName"] == "localhost"
