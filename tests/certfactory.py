"""Real test certificates, made on the spot: CAs, intermediates and leaves with every
option the trust decision cares about.

``issue(...)`` is the one builder; ``make_root``, ``make_intermediate`` and
``make_leaf`` are short forms with the usual defaults. Keys are cached per (key
specification, label) for the test session because RSA key generation is slow; the
label defaults to the subject's common name, so two certificates with different names
get different keys, and re-issuing a name re-uses its key (as a CA renewal would).

cryptography refuses to sign with SHA-1 and cannot make X.509 version 1 certificates;
:func:`openssl_issue` makes those with the ``openssl`` command line.

Certificates are valid from 2020-01-01 to 2049-12-31 unless a test says otherwise, so
``NOW`` (and any real date in that span) finds them valid.
"""

from __future__ import annotations

import functools
import ipaddress
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certstore.model import Certificate
from certstore.x509 import parse_der

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2049, 12, 31, tzinfo=UTC)

KeySpec = Literal[
    "ec-p256", "ec-p384", "ec-p192", "rsa-1024", "rsa-2048", "ed25519", "ed448", "dsa-2048"
]
PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)

CA_KEY_USAGE = ("keyCertSign", "cRLSign", "digitalSignature")
LEAF_KEY_USAGE = ("digitalSignature", "keyEncipherment")

_EKU_OIDS = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "anyExtendedKeyUsage": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}
_KU_ARGS = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
}


@functools.cache
def private_key(spec: KeySpec = "ec-p256", label: str = "default") -> PrivateKey:
    """A private key of ``spec``, the same one for every call with the same label."""
    if spec == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if spec == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if spec == "ec-p192":
        return ec.generate_private_key(ec.SECP192R1())
    if spec == "rsa-1024":
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (weak on purpose)
    if spec == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if spec == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if spec == "ed448":
        return ed448.Ed448PrivateKey.generate()
    if spec == "dsa-2048":
        return dsa.generate_private_key(key_size=2048)
    raise ValueError(f"unknown key specification {spec!r}")


@dataclass(frozen=True, eq=False)
class Issued:
    """A certificate with its private key, in every form a test needs."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)

    @functools.cached_property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @functools.cached_property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @functools.cached_property
    def model(self) -> Certificate:
        """The certificate as sipsgate sees it (parsed once)."""
        return parse_der(self.der)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def name(self) -> x509.Name:
        return self.cert.subject


def name(cn: str | None, *, organization: str | None = None) -> x509.Name:
    attrs = []
    if organization is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if cn is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def issue(
    cn: str | None,
    *,
    issuer: Issued | None = None,
    subject: x509.Name | None = None,
    issuer_name: x509.Name | None = None,
    key: PrivateKey | None = None,
    key_spec: KeySpec = "ec-p256",
    signing_key: PrivateKey | None = None,
    not_before: datetime = NOT_BEFORE,
    not_after: datetime = NOT_AFTER,
    ca: bool | None = None,
    path_length: int | None = None,
    key_usage: Sequence[str] | None = None,
    eku: Sequence[str] | None = None,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    uris: Sequence[str] = (),
    san: bool | None = None,
    san_critical: bool = False,
    digest: Literal["sha256", "sha384", "sha512"] = "sha256",
    pss: bool = False,
    key_ids: bool = True,
    authority_key_id: bytes | None = None,
    serial: int | None = None,
) -> Issued:
    """Issue one certificate.

    ``issuer`` None makes it self-signed. ``ca`` None leaves basicConstraints out.
    ``san`` None adds the extension only when names are given; True forces an (even
    empty-but-for-URIs) extension; False leaves it out. ``signing_key`` signs with
    another key than the issuer's (a forged or broken signature). ``issuer_name``
    overrides the issuer name written into the certificate.
    """
    subject_name = subject if subject is not None else name(cn)
    own_key = key if key is not None else private_key(key_spec, cn or repr(subject_name))
    if issuer is None:
        sign_with = own_key
        written_issuer = subject_name
        issuer_public = own_key.public_key()
    else:
        sign_with = issuer.key
        written_issuer = issuer.cert.subject
        issuer_public = issuer.key.public_key()
    if issuer_name is not None:
        written_issuer = issuer_name
    if signing_key is not None:
        sign_with = signing_key

    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_name)
        .issuer_name(written_issuer)
        .public_key(own_key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
    if key_usage is not None:
        flags = {arg: False for arg in _KU_ARGS.values()}
        for usage in key_usage:
            flags[_KU_ARGS[usage]] = True
        builder = builder.add_extension(
            x509.KeyUsage(encipher_only=False, decipher_only=False, **flags), critical=True
        )
    if eku is not None:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([_EKU_OIDS[u] for u in eku]), critical=False
        )
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    if san or (san is None and names):
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=san_critical)
    if key_ids:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(own_key.public_key()), critical=False
        )
        if authority_key_id is not None:
            aki = x509.AuthorityKeyIdentifier(authority_key_id, None, None)
        else:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public)
        builder = builder.add_extension(aki, critical=False)

    if isinstance(sign_with, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        cert = builder.sign(sign_with, None)
    else:
        algorithm: hashes.HashAlgorithm = {
            "sha256": hashes.SHA256(),
            "sha384": hashes.SHA384(),
            "sha512": hashes.SHA512(),
        }[digest]
        if pss and isinstance(sign_with, rsa.RSAPrivateKey):
            cert = builder.sign(
                sign_with,
                algorithm,
                rsa_padding=padding.PSS(
                    mgf=padding.MGF1(algorithm), salt_length=padding.PSS.DIGEST_LENGTH
                ),
            )
        else:
            cert = builder.sign(sign_with, algorithm)
    return Issued(cert=cert, key=own_key)


def make_root(cn: str = "Test Root CA", **options: object) -> Issued:
    """A self-signed CA: basicConstraints CA, keyCertSign."""
    options.setdefault("ca", True)
    options.setdefault("key_usage", CA_KEY_USAGE)
    return issue(cn, **options)  # type: ignore[arg-type]


def make_intermediate(
    issuer: Issued, cn: str = "Test Intermediate CA", **options: object
) -> Issued:
    """A CA issued by ``issuer``."""
    options.setdefault("ca", True)
    options.setdefault("key_usage", CA_KEY_USAGE)
    return issue(cn, issuer=issuer, **options)  # type: ignore[arg-type]


def make_leaf(issuer: Issued | None, cn: str = "sip.example.net", **options: object) -> Issued:
    """A TLS server certificate; ``dns`` defaults to the common name. ``issuer`` None
    makes it self-signed."""
    options.setdefault("ca", False)
    options.setdefault("key_usage", LEAF_KEY_USAGE)
    options.setdefault("eku", ("serverAuth",))
    if "dns" not in options and "ips" not in options and "uris" not in options:
        options["dns"] = (cn,)
    return issue(cn, issuer=issuer, **options)  # type: ignore[arg-type]


def openssl_issue(
    workdir: Path,
    cn: str,
    *,
    issuer: Issued | None = None,
    key: PrivateKey | None = None,
    digest: Literal["sha1", "sha256"] = "sha256",
    version1: bool = False,
    ca: bool = False,
    dns: Sequence[str] = (),
    days: int = 3650,
) -> Issued:
    """Issue a certificate with the ``openssl`` command line (for SHA-1 and version 1).

    ``version1`` writes no extensions at all, which makes OpenSSL produce an X.509 v1
    certificate. The validity starts at the current time and lasts ``days``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    own_key = key if key is not None else private_key("rsa-2048", f"openssl:{cn}")
    stem = workdir / f"{cn.replace(' ', '_')}-{digest}-{'v1' if version1 else 'v3'}"
    key_path = stem.with_suffix(".key")
    csr_path = stem.with_suffix(".csr")
    out_path = stem.with_suffix(".pem")
    key_path.write_bytes(
        own_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    _openssl("req", "-new", "-key", key_path, "-subj", f"/CN={cn}", "-out", csr_path)
    command: list[str | Path] = [
        "x509",
        "-req",
        "-in",
        csr_path,
        f"-{digest}",
        "-days",
        str(days),
        "-set_serial",
        str(x509.random_serial_number()),
        "-out",
        out_path,
    ]
    if issuer is None:
        command += ["-signkey", key_path]
    else:
        ca_cert = stem.with_suffix(".issuer.pem")
        ca_key = stem.with_suffix(".issuer.key")
        ca_cert.write_bytes(issuer.pem)
        ca_key.write_bytes(issuer.key_pem)
        command += ["-CA", ca_cert, "-CAkey", ca_key]
    if not version1:
        lines = [f"basicConstraints=critical,CA:{'TRUE' if ca else 'FALSE'}"]
        if dns:
            lines.append("subjectAltName=" + ",".join(f"DNS:{d}" for d in dns))
        ext_path = stem.with_suffix(".ext")
        ext_path.write_text("\n".join(lines) + "\n")
        command += ["-extfile", ext_path]
    _openssl(*command)
    cert = x509.load_pem_x509_certificate(out_path.read_bytes())
    return Issued(cert=cert, key=own_key)


def _openssl(*args: str | Path) -> None:
    subprocess.run(
        ["openssl", *(str(a) for a in args)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def days(n: float) -> timedelta:
    return timedelta(days=n)
