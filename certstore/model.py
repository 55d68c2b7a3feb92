"""Frozen values of the certificate world: certificates, trust entries, pins, rejected
chains, settings, peers and verdicts.

Everything here is immutable and free of I/O. The names of enum values are the
product contract (DESIGN §4, §5, §7): they appear in JSON, in the CLI and in logs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

    from certstore.revocation import CertRevocation


class RevocationMode(StrEnum):
    """The ``revocation`` setting (DESIGN §4)."""

    OFF = "off"
    SOFT_FAIL = "soft-fail"  # check where status can be had; unknown never blocks a call
    HARD_FAIL = "hard-fail"  # a certificate whose status is unknown is rejected


class CertStatus(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"


class TrustKind(StrEnum):
    CA = "ca"
    SERVER = "server"


class TrustSource(StrEnum):
    BUILTIN = "builtin"
    UPLOADED = "uploaded"
    TRUSTED_FROM_REJECTED = "trusted-from-rejected"
    PROVISIONED = "provisioned"
    DEVICE = "device"  # the device's own chain, added by "trust" on the device identity


class PinDecision(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


class PinMatch(StrEnum):
    CERTIFICATE = "certificate"  # SHA-256 of the certificate's DER
    PUBLIC_KEY = "public-key"  # SHA-256 of the SubjectPublicKeyInfo: survives renewal


class Transport(StrEnum):
    SIPS = "sips"
    HTTPS = "https"


class VerdictKind(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


class Rule(StrEnum):
    """Which step of the decision order (DESIGN §5) produced the verdict."""

    PINNED_REJECT = "pinned-reject"
    PINNED_ACCEPT = "pinned-accept"
    ACCEPT_ALL = "accept-all"
    FIRST_USE = "first-use"
    CHAIN_VALID = "chain-valid"
    UNTRUSTED = "untrusted"


class Reason(StrEnum):
    """Why a chain failed verification. A verdict carries every reason found."""

    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    SELF_SIGNED = "self-signed"
    UNKNOWN_ISSUER = "unknown-issuer"
    BAD_SIGNATURE = "bad-signature"
    NAME_MISMATCH = "name-mismatch"
    NOT_A_CA = "not-a-ca"
    WEAK_KEY = "weak-key"
    BAD_USAGE = "bad-usage"
    # Added beyond the first contract: a SHA-1/MD5 signature is not a weak *key*, and
    # the operator's fix (re-issue with SHA-256) differs from a key-size fix.
    WEAK_SIGNATURE = "weak-signature"
    # Trust on first use saw a different public key for a destination it had pinned.
    KEY_CHANGED = "key-changed"
    # The peer sent no certificate at all.
    NO_CERTIFICATE = "no-certificate"
    # An administrator's reject pin matched the leaf (rule pinned-reject): a rejection
    # always carries at least one reason, even when the chain itself is flawless.
    PINNED_REJECT = "pinned-reject"
    # RFC 5280 §4.2.1.10: a name of a certificate lies outside what a CA above it
    # permits, or inside what it excludes; or the constraint cannot be processed.
    NAME_CONSTRAINTS = "name-constraints"
    # A certificate carries a critical extension the validator does not process.
    UNKNOWN_CRITICAL_EXTENSION = "unknown-critical-extension"
    # A key sipsgate refuses whatever its size: DSA, EC with explicit curve parameters.
    UNSUPPORTED_KEY = "unsupported-key"
    # The chain needs more path-building or name-comparison work than the budget allows.
    CHAIN_TOO_COMPLEX = "chain-too-complex"
    # The issuer withdrew a certificate of the path (a CRL or an OCSP answer says so).
    REVOKED = "revoked"
    # Setting revocation = hard-fail, and no usable information about a certificate.
    REVOCATION_UNKNOWN = "revocation-unknown"


# A distinguished name compared for name constraints: its RDNs in order, each a
# sorted tuple of (attribute OID, value casefolded with spaces collapsed).
ComparableName = tuple[tuple[tuple[str, str], ...], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneralSubtree:
    """One subtree of a name constraints extension (RFC 5280 §4.2.1.10)."""

    kind: str  # "DNS", "IP", "email", "URI", "DirName", else the form's name ("otherName", ...)
    value: str  # as an operator reads it, e.g. "example.com", "10.0.0.0/8", "CN=foo"
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None  # kind "IP"
    name: ComparableName = ()  # kind "DirName"

    def describe(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class NameConstraints:
    """The name constraints a CA certificate imposes on every certificate below it."""

    permitted: tuple[GeneralSubtree, ...]
    excluded: tuple[GeneralSubtree, ...]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Certificate:
    """One X.509 certificate with every detail an operator is shown (DESIGN §3).

    Two certificates are equal when their DER is (compared by SHA-256).
    """

    der: bytes = field(repr=False)
    fingerprint: str  # lowercase hex SHA-256 of the DER: the certificate's identity
    fingerprint_sha1: str  # shown for compatibility with older devices' displays only
    spki_fingerprint: str  # lowercase hex SHA-256 of the SubjectPublicKeyInfo DER
    version: int  # 1 or 3
    subject: str  # RFC 4514
    subject_fields: tuple[tuple[str, str], ...]
    subject_der: bytes = field(repr=False)
    issuer: str
    issuer_fields: tuple[tuple[str, str], ...]
    issuer_der: bytes = field(repr=False)
    common_name: str | None
    serial: str  # lowercase hex, no separators
    not_before: datetime  # aware, UTC
    not_after: datetime  # aware, UTC
    public_key_type: str  # "RSA", "EC", "Ed25519", "Ed448", "DSA"
    public_key_size: int  # bits
    public_key_curve: str | None  # e.g. "secp256r1"
    signature_algorithm: str  # e.g. "sha256WithRSAEncryption" or the dotted OID
    signature_hash: str | None  # e.g. "sha256"; None for Ed25519
    san_dns: tuple[str, ...]
    san_ip: tuple[str, ...]
    san_uri: tuple[str, ...]
    san_email: tuple[str, ...]
    has_san: bool
    key_usage: tuple[str, ...] | None  # None when the extension is absent
    extended_key_usage: tuple[str, ...] | None  # names or dotted OIDs; None when absent
    is_ca: bool
    path_length: int | None
    basic_constraints_present: bool
    subject_key_id: str | None  # hex
    authority_key_id: str | None  # hex
    self_signed: bool  # issuer == subject (and AKI, when present, == SKI)
    weak_key: bool  # RSA/DSA under 2048 bits, EC under 224 bits
    weak_signature: bool  # MD5 or SHA-1 signature
    # For path validation (name constraints, critical extensions, refused keys).
    critical_extensions: tuple[str, ...] = ()  # dotted OIDs of extensions marked critical
    name_constraints: NameConstraints | None = None
    subject_name: ComparableName = ()
    subject_emails: tuple[str, ...] = ()  # emailAddress attributes of the subject
    san_dir_names: tuple[ComparableName, ...] = ()
    san_other: tuple[str, ...] = ()  # SAN entries of other forms, e.g. "otherName:1.2.3"
    explicit_curve: bool = False  # EC key given with explicit curve parameters
    # The parsed object, for signature checks by the decision; not part of the value.
    x509: x509.Certificate = field(repr=False, compare=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Certificate):
            return NotImplemented
        return self.fingerprint == other.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def status_at(self, now: datetime) -> CertStatus:
        if now < self.not_before:
            return CertStatus.NOT_YET_VALID
        if now > self.not_after:
            return CertStatus.EXPIRED
        return CertStatus.VALID

    @property
    def display_name(self) -> str:
        return self.common_name or self.subject or self.fingerprint[:16]


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """The other end of a TLS connection, as the decision sees it.

    ``host`` is the identity that must be in the certificate (the SIP domain or the
    HTTPS host name or IP literal), not necessarily the address that was dialled.
    """

    host: str
    port: int
    transport: Transport
    sni: str | None = None

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host.strip("[]"))
        except ValueError:
            return False
        return True

    @property
    def normalized_host(self) -> str:
        host = self.host.strip("[]").rstrip(".").lower()
        if self.is_ip:
            return str(ipaddress.ip_address(host))
        return host

    @property
    def destination(self) -> str:
        """``host:port`` as pins are scoped (IPv6 in brackets)."""
        host = self.normalized_host
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who made a change, and through which interface (for the audit log)."""

    name: str
    interface: str  # "cli", "api", "web", "provisioning", "gateway"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustEntry:
    certificate: Certificate
    kind: TrustKind
    source: TrustSource
    added_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Pin:
    """An admin's (or trust on first use's) decision about one certificate or key."""

    id: int
    decision: PinDecision
    match: PinMatch
    fingerprint: str  # of the certificate or of the SPKI, per ``match``
    scope: str | None  # None: any peer; "host" or "host:port"
    expires_at: datetime | None
    note: str
    created_at: datetime
    created_by: str

    def is_active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at

    @property
    def first_use(self) -> bool:
        return self.created_by == FIRST_USE_ACTOR


# The actor name under which trust on first use creates its pins.
FIRST_USE_ACTOR = "trust-on-first-use"


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectedChain:
    id: int
    chain: tuple[Certificate, ...]  # leaf first, as the peer sent it
    reasons: tuple[Reason, ...]
    peer: Peer
    first_seen: datetime
    last_seen: datetime
    count: int
    overridden: bool  # accepted anyway because accept-all was on
    previous: Certificate | None = None  # trust on first use: the certificate seen before
    # The host:port actually dialled (DNS, sip.upstream_address or --connect may differ
    # from ``peer``, the identity checked); None for entries recorded before it was kept.
    address: str | None = None
    # The gateways of a fleet that saw this chain (``gateway.name``), first sighting
    # first; empty for entries recorded before it was kept.
    seen_by: tuple[str, ...] = ()

    @property
    def leaf(self) -> Certificate:
        return self.chain[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    accept_all_certificates: bool = False
    trust_on_first_use: bool = False
    allow_wildcards: bool = False
    close_flows_on_revoke: bool = True
    revocation: RevocationMode = RevocationMode.SOFT_FAIL
    http_auth_username: str = ""
    # Write-only through every interface: serialisers emit only ``http_auth_password_set``.
    http_auth_password: str = field(default="", repr=False)

    @property
    def http_auth_password_set(self) -> bool:
        return bool(self.http_auth_password)


# Both digest credentials are limited like the devices' own fields (DESIGN §4).
HTTP_AUTH_MAX_LENGTH = 74


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    id: int
    at: datetime
    actor: str
    interface: str
    action: str  # e.g. "trust.add", "pin.remove", "settings.update"
    target: str  # fingerprint, pin id, setting names ...
    details: str  # JSON object text; never holds secrets
    gateway: str | None = None  # ``gateway.name`` of the store that wrote it, if known


@dataclass(frozen=True, slots=True, kw_only=True)
class AddResult:
    added: tuple[Certificate, ...]
    already_present: tuple[Certificate, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One problem found with one certificate of a chain."""

    reason: Reason
    message: str  # a sentence for the operator
    depth: int | None = None  # 0 = leaf; None = about the chain as a whole
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    verdict: VerdictKind
    rule: Rule
    findings: tuple[Finding, ...]  # for accept-all: the failures it overrode
    leaf_fingerprint: str | None
    matched_pin: Pin | None = None
    anchor: Certificate | None = None
    path: tuple[Certificate, ...] = ()  # the validated path, leaf first, anchor last
    previous: Certificate | None = None  # trust on first use: the key seen before
    # What was learned about the revocation of each certificate checked, leaf first.
    revocation: tuple[CertRevocation, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.verdict is VerdictKind.ACCEPT

    @property
    def reasons(self) -> tuple[Reason, ...]:
        """Every distinct reason, in the order first found."""
        return tuple(dict.fromkeys(f.reason for f in self.findings))

    @property
    def overridden(self) -> bool:
        return self.rule is Rule.ACCEPT_ALL and bool(self.findings)

    @property
    def should_record(self) -> bool:
        """Whether the chain belongs in the rejected list (DESIGN §5 step 3 and 6)."""
        return self.rule is Rule.UNTRUSTED or self.overridden
