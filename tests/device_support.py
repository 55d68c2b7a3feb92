"""Helpers for the device identity tests: an in-memory store with just the device, CSR,
trust and audit parts of the CertStore protocol, the test PKI at ``NOW``, and a runner
for the ``openssl`` command line."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

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
from tests.pki import CertFactory

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ADMIN = Actor(name="admin", interface="cli")
PKI = CertFactory(now=NOW, organization=None)


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


def pem_of(cert: x509.Certificate | Certificate) -> bytes:
    if isinstance(cert, Certificate):
        cert = cert.x509
    return cert.public_bytes(serialization.Encoding.PEM)


def public_key_of(key_pem: bytes) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return key.public_key()


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
