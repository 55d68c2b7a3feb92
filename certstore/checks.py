"""The checks every store change passes before a backend sees it.

Backend-free and without I/O: who made a change, whether a pin, an audit entry, a device
identity or a signing request is well formed, what key a piece of revocation information
is cached under and which cached sources go when there are too many. A request that
fails a check raises :class:`ValidationError` (or :class:`NotFound` for an id that cannot
exist) and the store changes nothing. The time to judge against is an argument.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from certstore.errors import NotFound, ValidationError
from certstore.model import Actor, Certificate, Pin, PinDecision, PinMatch
from certstore.revocation import Crl, OcspResponse, RevocationSource
from certstore.store import DeviceIdentity, PendingCsr, PinRequest
from certstore.validation import (
    normalize_fingerprint,
    normalize_scope,
    validate_aware,
    validate_note,
)

DEVICE_KINDS = ("standard", "installed")
MAX_AUDIT_DETAILS = 16 * 1024
MAX_AUDIT_TARGET = 500
# Cached revocation information (fetched CRLs and OCSP answers, uploaded CRLs): at most
# this many sources; the one fetched longest ago goes first (uploaded ones last).
MAX_REVOCATION_SOURCES = 256

_ACTION_RE = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)+$")


def check_actor(actor: object) -> Actor:
    if not isinstance(actor, Actor):
        raise ValidationError("actor", "Every change needs an actor (who and through what).")
    return actor


def check_id(value: object, what: str) -> int:
    """A row id; anything else cannot name a row, so it is not found."""
    if type(value) is not int or value < 1:
        raise NotFound(what, str(value))
    return value


def certificates_only(certificates: Sequence[object]) -> None:
    for cert in certificates:
        if not isinstance(cert, Certificate):
            raise ValidationError("certificates", "Only parsed certificates can be trusted.")


def settings_changes(changes: object) -> Mapping[str, object]:
    if not isinstance(changes, Mapping):
        raise ValidationError("settings", "The settings must be given as names and values.")
    return changes


# -- pins ----------------------------------------------------------------------------


def validated_pin(request: object, *, now: datetime) -> PinRequest:
    """The pin in its normal form (fingerprint, scope, expiry in UTC), or ValidationError
    naming the field. An expiry must be after ``now``; a certificate given with the pin
    must have the pin's fingerprint."""
    if not isinstance(request, PinRequest):
        raise ValidationError("pin", "A pin must be given as a PinRequest.")
    try:
        decision = PinDecision(request.decision)
    except ValueError as exc:
        raise ValidationError("decision", "The decision must be accept or reject.") from exc
    try:
        match = PinMatch(request.match)
    except ValueError as exc:
        raise ValidationError("match", "The match must be certificate or public-key.") from exc
    fingerprint = normalize_fingerprint(request.fingerprint)
    expires_at = None
    if request.expires_at is not None:
        expires_at = validate_aware(request.expires_at, field="expires_at")
        if expires_at <= now:
            raise ValidationError(
                "expires_at",
                f"The expiry {expires_at.isoformat()} is in the past; a pin must end "
                "in the future.",
            )
    cert = request.certificate
    if cert is not None:
        expected = cert.fingerprint if match is PinMatch.CERTIFICATE else cert.spki_fingerprint
        if expected != fingerprint:
            raise ValidationError(
                "certificate",
                f"The certificate does not have the {match.value} fingerprint {fingerprint}.",
            )
    return PinRequest(
        decision=decision,
        match=match,
        fingerprint=fingerprint,
        scope=normalize_scope(request.scope),
        expires_at=expires_at,
        note=validate_note(request.note),
        certificate=cert,
    )


def pin_details(pin: Pin) -> dict[str, object]:
    """A pin as its audit events describe it."""
    return {
        "decision": pin.decision.value,
        "match": pin.match.value,
        "fingerprint": pin.fingerprint,
        "scope": pin.scope,
        "expires_at": pin.expires_at.isoformat() if pin.expires_at else None,
    }


# -- audit entries -------------------------------------------------------------------


def audit_action(action: object) -> str:
    if not isinstance(action, str) or not _ACTION_RE.fullmatch(action) or len(action) > 100:
        raise ValidationError(
            "action",
            f"The audit action {action!r} must look like area.verb (e.g. device.export).",
        )
    return action


def audit_text(details: Mapping[str, object]) -> str:
    """The stored form of an audit event's details (canonical JSON)."""
    return json.dumps(details, sort_keys=True, separators=(",", ":"), default=str)


def logged_event(target: object, details: Mapping[str, object]) -> dict[str, object]:
    """The details of an event logged from outside (``log_event``) as they will be
    stored, after checking the target and that the details are small JSON data."""
    if not isinstance(target, str) or len(target) > MAX_AUDIT_TARGET:
        raise ValidationError(
            "target", f"The audit target must be text of at most {MAX_AUDIT_TARGET} characters."
        )
    try:
        text = json.dumps(dict(details), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValidationError("details", f"The audit details are not JSON data: {exc}.") from exc
    if len(text) > MAX_AUDIT_DETAILS:
        raise ValidationError(
            "details",
            f"The audit details are {len(text)} characters; at most {MAX_AUDIT_DETAILS}.",
        )
    loaded: dict[str, object] = json.loads(text)
    return loaded


# -- device identity and signing request -------------------------------------------------


def _public_key_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _private_key_matches(pem: bytes, public_key_der: bytes, *, field: str) -> None:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:
        raise ValidationError(
            field, "The private key is encrypted; the store keeps unencrypted PKCS#8 keys."
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValidationError(field, "The private key is not a readable PEM private key.") from exc
    if _public_key_der(key.public_key()) != public_key_der:
        raise ValidationError(
            field, "The private key does not belong to the certificate (the public keys differ)."
        )


def checked_identity(identity: object, action: str) -> tuple[DeviceIdentity, str]:
    """The identity and its audit action (``device.<action>``), after checking its kind,
    that it has a chain, and that the key belongs to the chain's first certificate."""
    if not isinstance(identity, DeviceIdentity):
        raise ValidationError("identity", "The device identity must be a DeviceIdentity.")
    if identity.kind not in DEVICE_KINDS:
        raise ValidationError(
            "kind",
            f"The device identity kind must be standard or installed, not {identity.kind!r}.",
        )
    if not identity.chain:
        raise ValidationError("chain", "The device identity needs at least one certificate.")
    _private_key_matches(
        identity.private_key_pem,
        _public_key_der(identity.certificate.x509.public_key()),
        field="private_key",
    )
    action = audit_action(action if action.startswith("device.") else f"device.{action}")
    validate_aware(identity.created_at, field="created_at")
    return identity, action


def checked_csr(csr: object) -> tuple[PendingCsr, str]:
    """The signing request and its subject (for the audit log), after checking that it
    reads and that the key belongs to it."""
    if not isinstance(csr, PendingCsr):
        raise ValidationError("csr", "The signing request must be a PendingCsr.")
    try:
        request = x509.load_pem_x509_csr(csr.csr_pem)
        request_key = request.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValidationError("csr_pem", "The signing request is not a readable PEM CSR.") from exc
    _private_key_matches(csr.private_key_pem, _public_key_der(request_key), field="private_key")
    validate_aware(csr.created_at, field="created_at")
    return csr, request.subject.rfc4514_string()


# -- revocation information --------------------------------------------------------------


def revocation_key(parsed: Crl | OcspResponse, *, source: RevocationSource, url: str | None) -> str:
    """Where a piece of revocation information is cached, so that a newer one replaces
    it: an uploaded CRL by its issuer, a fetched OCSP answer by its URL and the serial
    it answers for (one responder answers for many certificates), a fetched CRL by URL."""
    if isinstance(parsed, Crl) and source is RevocationSource.UPLOADED:
        return f"uploaded:{parsed.issuer}"
    if isinstance(parsed, OcspResponse) and url and parsed.singles:
        return f"{url}#{parsed.singles[0].serial:x}"
    if url:
        return url
    raise ValidationError("url", "Fetched revocation information needs its URL.")


def revocation_evictions(
    sources: Sequence[tuple[str, RevocationSource, datetime]], limit: int
) -> list[str]:
    """The keys of the cached sources (key, source, fetched at) that go so that at most
    ``limit`` stay: fetched ones before uploaded ones, each fetched longest ago first."""
    extra = len(sources) - limit
    if extra <= 0:
        return []
    ordered = sorted(sources, key=lambda s: (s[1] is RevocationSource.UPLOADED, s[2], s[0]))
    return [key for key, _, _ in ordered[:extra]]
