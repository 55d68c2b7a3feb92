"""Small certificate builders for the store tests (EC P-256: fast to make and to parse)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certstore.model import Certificate
from certstore.x509 import parse_der

# One key signs and is certified by every test certificate unless a test asks for its
# own: key generation dominates the cost of building thousands of certificates.
SHARED_KEY = ec.generate_private_key(ec.SECP256R1())
_serials = itertools.count(1000)
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_cert(
    cn: str = "test.example",
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    issuer: Certificate | None = None,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    ca: bool = False,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    dns: tuple[str, ...] = (),
) -> Certificate:
    """A certificate for ``cn``; self-signed unless ``issuer`` (and its key) is given."""
    key = key or SHARED_KEY
    signer = issuer_key or key
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name = issuer.x509.subject if issuer is not None else subject
    not_before = not_before or BASE_TIME - timedelta(days=30)
    not_after = not_after or BASE_TIME + timedelta(days=365)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(next(_serials))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    cert = builder.sign(signer, hashes.SHA256())
    return parse_der(cert.public_bytes(serialization.Encoding.DER))


def make_chain(host: str = "sip.example.net") -> tuple[Certificate, Certificate, Certificate]:
    """(leaf, intermediate, root), each with its own name."""
    root = make_cert(f"Root for {host}", ca=True)
    intermediate = make_cert(f"Intermediate for {host}", ca=True, issuer=root)
    leaf = make_cert(host, issuer=intermediate, dns=(host,))
    return leaf, intermediate, root
