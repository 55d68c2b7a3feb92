"""Helpers for the device identity tests: an in-memory store with just the device, CSR,
trust and audit parts of the CertStore protocol, a small CA built with cryptography,
and a runner for the ``openssl`` command line."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certstore.device import PrivateKey
from certstore.model import (
    Actor,
    AddResult,
    AuditEvent,
    Certificate,
    TrustEntry,
    TrustKind,
    TrustSource,
)
from certstore.store import DeviceIdentity, PendingCsr
from certstore.x509 import parse_der

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ADMIN = Actor(name="admin", interface="cli")


class FakeStore:
    """The device/CSR/trust/audit part of :class:`certstore.store.CertStore`, in memory."""

    def __init__(self) -> None:
        self.identity: DeviceIdentity | None = None
        self.csr: PendingCsr | None = None
        self.trust: dict[str, TrustEntry] = {}
        self.events: list[AuditEvent] = []
        self.writes = 0
        self.closed = False

    def _log(self, actor: Actor, action: str, target: str, details: Mapping[str, object]) -> None:
        self.events.append(
            AuditEvent(
                id=len(self.events) + 1,
                at=NOW,
                actor=actor.name,
                interface=actor.interface,
                action=action,
                target=target,
                details=json.dumps(dict(details)),
            )
        )

    def device_identity(self) -> DeviceIdentity | None:
        return self.identity

    def set_device_identity(self, identity: DeviceIdentity, *, actor: Actor, action: str) -> None:
        self.writes += 1
        self.identity = identity
        self._log(actor, action, identity.certificate.fingerprint, {"kind": identity.kind})

    def pending_csr(self) -> PendingCsr | None:
        return self.csr

    def set_pending_csr(self, csr: PendingCsr | None, *, actor: Actor) -> None:
        self.writes += 1
        self.csr = csr
        self._log(actor, "csr.create" if csr else "csr.remove", "csr", {})

    def add_trust(
        self,
        certificates: Sequence[Certificate],
        *,
        source: TrustSource,
        actor: Actor,
        kind: TrustKind | None = None,
    ) -> AddResult:
        added, present = [], []
        for cert in certificates:
            if cert.fingerprint in self.trust:
                present.append(cert)
                continue
            self.trust[cert.fingerprint] = TrustEntry(
                certificate=cert,
                kind=kind or (TrustKind.CA if cert.is_ca else TrustKind.SERVER),
                source=source,
                added_at=NOW,
            )
            added.append(cert)
        self._log(actor, "trust.add", ",".join(c.fingerprint for c in added), {})
        return AddResult(added=tuple(added), already_present=tuple(present))

    def list_trust(self) -> tuple[TrustEntry, ...]:
        return tuple(self.trust.values())

    def log_event(
        self, *, actor: Actor, action: str, target: str, details: Mapping[str, object]
    ) -> None:
        self._log(actor, action, target, details)

    def audit(self, *, limit: int = 50, before_id: int | None = None) -> tuple[AuditEvent, ...]:
        return tuple(reversed(self.events))[:limit]

    def close(self) -> None:
        self.closed = True


def stored_state(store: object) -> tuple[bytes, ...]:
    """The stored identity and request, byte for byte (chain DER, keys, CSR)."""
    identity = store.device_identity()  # type: ignore[attr-defined]
    csr = store.pending_csr()  # type: ignore[attr-defined]
    out: list[bytes] = []
    if identity is not None:
        out += [c.der for c in identity.chain] + [identity.private_key_pem, identity.kind.encode()]
    if csr is not None:
        out += [csr.csr_pem, csr.private_key_pem]
    return tuple(out)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def pem_of(cert: x509.Certificate | Certificate) -> bytes:
    if isinstance(cert, Certificate):
        cert = cert.x509
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Issuer:
    """A CA certificate with its key that can sign further certificates."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    children: list[Issuer] = field(default_factory=list)

    @property
    def pem(self) -> bytes:
        return pem_of(self.cert)

    @property
    def certificate(self) -> Certificate:
        return parse_der(self.cert.public_bytes(serialization.Encoding.DER))

    def intermediate(self, cn: str) -> Issuer:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _ca_cert(name(cn), key.public_key(), self.cert.subject, self.key, self.cert)
        return Issuer(cert=cert, key=key)

    def issue(
        self,
        public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        *,
        cn: str = "gw.example.net",
        not_before: datetime = NOW - timedelta(days=1),
        not_after: datetime = NOW + timedelta(days=90),
        eku: Sequence[x509.ObjectIdentifier] | None = (
            ExtendedKeyUsageOID.SERVER_AUTH,
            ExtendedKeyUsageOID.CLIENT_AUTH,
        ),
        key_usage: str = "digitalSignature",
        dns: Sequence[str] = ("gw.example.net",),
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if key_usage:
            builder = builder.add_extension(_ku(key_usage), critical=True)
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        if dns:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
            )
        return builder.sign(self.key, hashes.SHA256())


def _ku(names: str) -> x509.KeyUsage:
    wanted = set(names.split(","))
    return x509.KeyUsage(
        digital_signature="digitalSignature" in wanted,
        content_commitment=False,
        key_encipherment="keyEncipherment" in wanted,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign="keyCertSign" in wanted,
        crl_sign="cRLSign" in wanted,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_cert(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer_name: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer_cert: x509.Certificate | None,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ku("keyCertSign,cRLSign"), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def make_root(cn: str = "Test Root CA") -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _ca_cert(name(cn), key.public_key(), name(cn), key, None)
    return Issuer(cert=cert, key=key)


def public_key_of(key_pem: bytes) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return key.public_key()


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def openssl(*args: str, data: bytes | None = None) -> str:
    """Run ``openssl`` and return its output (stdout and stderr); fail on a non-zero exit."""
    proc = subprocess.run(
        ["openssl", *args],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    output = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, f"openssl {' '.join(args)} failed:\n{output}"
    return output
