"""Test certificates made on the spot: CA → intermediate → leaf and every oddity.

``CertFactory`` issues with ``cryptography``; SHA-1 and version-1 certificates are
made with the ``openssl`` command line, since cryptography refuses to sign SHA-1
and cannot write v1 certificates.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeySpec = Literal["ec", "rsa2048", "rsa1024"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_KEY_CACHE: dict[tuple[KeySpec, int], PrivateKey] = {}


def make_key(spec: KeySpec, slot: int | None = None) -> PrivateKey:
    """A private key; ``slot`` reuses one per (spec, slot) to keep RSA tests fast."""
    if slot is not None and (spec, slot) in _KEY_CACHE:
        return _KEY_CACHE[(spec, slot)]
    key: PrivateKey
    if spec == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(spec[3:]))
    if slot is not None:
        _KEY_CACHE[(spec, slot)] = key
    return key


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate with its key and the chain above it (issuer first, no root)."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    parents: tuple[Issued, ...] = ()

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def fingerprint(self) -> str:
        return sha256(self.der).hexdigest()

    @property
    def spki_fingerprint(self) -> str:
        spki = self.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return sha256(spki).hexdigest()

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def chain(self, *, include_root: bool = False) -> tuple[Issued, ...]:
        """This certificate, then the intermediates above it (leaf first)."""
        above = self.parents if include_root else self.parents[:-1]
        return (self, *above)

    def chain_pem(self, *, include_root: bool = False) -> bytes:
        return b"".join(c.pem for c in self.chain(include_root=include_root))

    def write(self, directory: Path, name: str, *, include_root: bool = False) -> tuple[Path, Path]:
        """Write ``name.crt`` (chain, leaf first) and ``name.key``; return both paths."""
        cert_path = directory / f"{name}.crt"
        key_path = directory / f"{name}.key"
        cert_path.write_bytes(self.chain_pem(include_root=include_root))
        key_path.write_bytes(self.key_pem)
        key_path.chmod(0o600)
        return cert_path, key_path


def _name(cn: str | None, org: str = "sipsgate tests") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if cn is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


class CertFactory:
    """Issues test certificates relative to ``now``."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now or dt.datetime.now(dt.UTC)
        self._serial = 1000

    def _next_serial(self) -> int:
        self._serial += 1
        return x509.random_serial_number()

    def ca(
        self,
        cn: str = "sipsgate Test Root CA",
        *,
        issuer: Issued | None = None,
        key: KeySpec = "ec",
        valid_days: tuple[int, int] = (-30, 3650),
        path_length: int | None = None,
        extra_extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
        subject: x509.Name | None = None,
    ) -> Issued:
        """A CA certificate: self-signed root when ``issuer`` is None, else intermediate.

        ``extra_extensions`` are (extension, critical) pairs added as given; ``subject``
        replaces the usual ``O=sipsgate tests, CN=cn`` name.
        """
        private = make_key(key)
        name = subject if subject is not None else _name(cn)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer.cert.subject if issuer else name)
            .public_key(private.public_key())
            .serial_number(self._next_serial())
            .not_valid_before(self.now + dt.timedelta(days=valid_days[0]))
            .not_valid_after(self.now + dt.timedelta(days=valid_days[1]))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(private.public_key()), critical=False
            )
        )
        signer = issuer.key if issuer else private
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                critical=False,
            )
        for extension, critical in extra_extensions:
            builder = builder.add_extension(extension, critical=critical)
        cert = builder.sign(signer, hashes.SHA256())
        parents = (issuer, *issuer.parents) if issuer else ()
        return Issued(cert, private, parents)

    def leaf(
        self,
        issuer: Issued | None,
        *,
        cn: str | None = "sip.example.test",
        dns: tuple[str, ...] = ("sip.example.test",),
        ips: tuple[str, ...] = (),
        uris: tuple[str, ...] = (),
        san: bool = True,
        key: KeySpec | PrivateKey = "ec",
        valid_days: tuple[int, int] = (-1, 365),
        server_auth: bool = True,
        client_auth: bool = False,
        extra_extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
        subject: x509.Name | None = None,
    ) -> Issued:
        """An end-entity certificate; self-signed when ``issuer`` is None.

        ``extra_extensions`` are (extension, critical) pairs added as given; ``subject``
        replaces the usual ``O=sipsgate tests, CN=cn`` name.
        """
        private = make_key(key) if isinstance(key, str) else key
        name = subject if subject is not None else _name(cn)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer.cert.subject if issuer else name)
            .public_key(private.public_key())
            .serial_number(self._next_serial())
            .not_valid_before(self.now + dt.timedelta(days=valid_days[0]))
            .not_valid_after(self.now + dt.timedelta(days=valid_days[1]))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        general: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        general += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        general += [x509.UniformResourceIdentifier(u) for u in uris]
        if san and general:
            builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
        usages = []
        if server_auth:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client_auth:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                critical=False,
            )
        for extension, critical in extra_extensions:
            builder = builder.add_extension(extension, critical=critical)
        cert = builder.sign(issuer.key if issuer else private, hashes.SHA256())
        parents = (issuer, *issuer.parents) if issuer else ()
        return Issued(cert, private, parents)

    def openssl_leaf(
        self,
        issuer: Issued | None,
        *,
        cn: str = "sip.example.test",
        dns: tuple[str, ...] = ("sip.example.test",),
        digest: str = "sha256",
        version1: bool = False,
        valid_days: int = 365,
    ) -> Issued:
        """A leaf signed by the ``openssl`` command (SHA-1 signatures, v1 certificates).

        A v1 certificate carries no extensions (so no SAN): its identity is its CN.
        """
        private = make_key("rsa2048", slot=7)
        signer = issuer.key if issuer else private
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            key_path = d / "leaf.key"
            key_path.write_bytes(
                private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            (d / "ca.key").write_bytes(
                signer.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            ext = d / "ext.cnf"
            ext.write_text(
                "[v3]\nbasicConstraints=critical,CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n"
                + (f"subjectAltName={','.join('DNS:' + n for n in dns)}\n" if dns else "")
            )
            subj = f"/O=sipsgate tests/CN={cn}"
            subprocess.run(
                ["openssl", "req", "-new", "-key", str(key_path), "-subj", subj,
                 "-out", str(d / "leaf.csr")],
                check=True, capture_output=True, timeout=30,
            )  # fmt: skip
            cmd = ["openssl", "x509", "-req", "-in", str(d / "leaf.csr"), f"-{digest}",
                   "-days", str(valid_days), "-out", str(d / "leaf.crt"),
                   "-set_serial", str(self._next_serial())]  # fmt: skip
            if issuer is not None:
                (d / "ca.crt").write_bytes(issuer.pem)
                cmd += ["-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key")]
            else:
                cmd += ["-signkey", str(key_path)]
            if not version1:
                cmd += ["-extfile", str(ext), "-extensions", "v3"]
            subprocess.run(cmd, check=True, capture_output=True, timeout=30)
            cert = x509.load_pem_x509_certificate((d / "leaf.crt").read_bytes())
        parents = (issuer, *issuer.parents) if issuer else ()
        return Issued(cert, private, parents)
