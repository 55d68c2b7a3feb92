"""Plain-dict renderings of the device identity and the pending signing request, for the
JSON API and ``sipsgate device ... --json``. Field names follow DESIGN §7 (certificate
summary: ``fingerprint``, ``subject``, ``issuer``, ``not_before``, ``not_after``,
``status``, ``is_ca``, ``self_signed``; details add every field of §3); certificates
render through :mod:`certstore.render` like everywhere else.

Private keys never appear here; only facts about them (type, size, weak).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certstore.device import load_csr
from certstore.render import certificate_details, iso
from certstore.store import DeviceIdentity, PendingCsr
from certstore.x509 import (
    EKU_NAMES,
    OID_SHORT_NAMES,
    key_usage_names,
    rfc4514_name,
    spki_fingerprint_of_key,
)


def _iso(value: datetime) -> str:
    text = iso(value)
    assert text is not None
    return text


def device_details(identity: DeviceIdentity, now: datetime) -> dict[str, Any]:
    """The current identity: its kind, the device certificate and the whole chain."""
    leaf = identity.certificate
    return {
        "kind": identity.kind,
        "created_at": _iso(identity.created_at),
        "certificate": certificate_details(leaf, now),
        "chain": [certificate_details(c, now) for c in identity.chain],
        "weak_key": leaf.weak_key,
        # What the operator may do next (innovaphone: Renew for standard, Clear for installed).
        "can_renew": identity.kind == "standard",
        "can_clear": identity.kind != "standard",
    }


def _csr_key_facts(csr: x509.CertificateSigningRequest) -> dict[str, Any]:
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return {
            "type": "RSA",
            "size": key.key_size,
            "curve": None,
            "weak": key.key_size < 2048,
            "public_key_fingerprint": spki_fingerprint_of_key(key),
        }
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {
            "type": "EC",
            "size": key.curve.key_size,
            "curve": key.curve.name,
            "weak": key.curve.key_size < 224,
            "public_key_fingerprint": spki_fingerprint_of_key(key),
        }
    return {"type": type(key).__name__, "size": 0, "curve": None, "weak": False}


def csr_details(pending: PendingCsr) -> dict[str, Any]:
    """The pending signing request: subject, requested names and usages, key facts."""
    csr = load_csr(pending.csr_pem)
    der = csr.public_bytes(serialization.Encoding.DER)
    subject_fields = [
        [OID_SHORT_NAMES.get(a.oid) or a.oid.dotted_string, str(a.value)] for a in csr.subject
    ]
    san: dict[str, list[str]] = {"dns": [], "ip": [], "uri": []}
    key_usage: list[str] | None = None
    eku: list[str] | None = None
    for ext in csr.extensions:
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            san["dns"] = list(value.get_values_for_type(x509.DNSName))
            san["ip"] = [str(a) for a in value.get_values_for_type(x509.IPAddress)]
            san["uri"] = list(value.get_values_for_type(x509.UniformResourceIdentifier))
        elif isinstance(value, x509.KeyUsage):
            key_usage = list(key_usage_names(value))
        elif isinstance(value, x509.ExtendedKeyUsage):
            eku = [EKU_NAMES.get(oid) or oid.dotted_string for oid in value]
    return {
        "subject": rfc4514_name(csr.subject),
        "subject_fields": subject_fields,
        "common_name": next((v for k, v in subject_fields if k == "CN"), None),
        "key_spec": pending.key_spec,
        "public_key": _csr_key_facts(csr),
        "subject_alt_names": san,
        "key_usage": key_usage,
        "extended_key_usage": eku,
        "signature_valid": csr.is_signature_valid,
        "fingerprint": hashlib.sha256(der).hexdigest(),
        "created_at": _iso(pending.created_at),
    }
