"""A peer certificate between 64 and 100 KiB (OpenSSL's limit on a peer's certificate
list) is decided on like any other, explained, and recorded in the rejected list."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

from tests.pki import CertFactory, Issued
from tests.tls_servers import TlsEchoServer, server_context

ROOT = Path(__file__).resolve().parents[2]
HOST = "sip.example.test"


def large_leaf(size: int) -> Issued:
    """A leaf for HOST padded to about ``size`` bytes with a private extension."""
    factory = CertFactory()
    root = factory.ca("Large Certificate Test Root")
    key = ec.generate_private_key(ec.SECP256R1())
    padding = b"\x04\x83" + size.to_bytes(3, "big") + b"x" * size  # an OCTET STRING
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(factory.now - dt.timedelta(days=1))
        .not_valid_after(factory.now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), padding),
            critical=False,
        )
        .sign(root.key, hashes.SHA256())
    )
    return Issued(cert, key, (root,))


async def sipsgate(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIPSGATE_GATEWAY_DATA_DIR": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL, env=env, cwd=tmp_path,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_70_kib_certificate_is_rejected_with_its_reason_and_recorded(
    tmp_path: Path,
) -> None:
    leaf = large_leaf(70_000)
    assert 64 * 1024 < len(leaf.der) < 100 * 1024
    async with TlsEchoServer(server_context(leaf)) as server:
        code, out, err = await sipsgate(
            tmp_path, "probe", f"sips:{HOST}", "--connect", f"127.0.0.1:{server.port}", "--json"
        )
    assert code == 1, (out, err)
    result = json.loads(out)
    assert result["verdict"] == "reject"
    assert "unknown-issuer" in result["reasons"]
    assert result["recorded"] is True
    code, out, err = await sipsgate(tmp_path, "certs", "rejected", "list", "--json")
    assert code == 0, err
    (entry,) = json.loads(out)
    assert entry["chain"][0]["fingerprint"] == leaf.fingerprint
