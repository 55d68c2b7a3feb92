"""Revocation as information: CRLs and OCSP responses read, checked and looked up.

A CRL or an OCSP response is only *information* about a certificate. It is read into a
frozen value here (:func:`parse_crl`, :func:`parse_ocsp`), bounded in size, and it
speaks for a certificate only once checked against that certificate's issuer: signed
by the issuer (or, for OCSP, by a delegated responder the issuer certified for
id-kp-OCSPSigning), about this very certificate (the OCSP certID, the CRL's issuer
name and scope), and current (thisUpdate not in the future, nextUpdate not passed,
each with :data:`CLOCK_SKEW` of allowance). Information that fails a check is set
aside with a sentence saying why; it never raises and never decides by itself.

:func:`revocation_status` answers for one certificate and its issuer from the facts
it is given (a stapled response, cached OCSP answers, CRLs); ``now`` is a parameter.
No I/O, no clock, no logging. Signature checks are memoised in a bounded map keyed by
fingerprints, which changes how fast an answer comes, never the answer.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from certstore.errors import InputTooLarge, ParseError
from certstore.model import Certificate, RevocationMode

__all__ = [
    "CLOCK_SKEW",
    "MAX_CRL_BYTES",
    "MAX_OCSP_BYTES",
    "CertRevocation",
    "Crl",
    "OcspResponse",
    "OcspSingle",
    "RevocationFacts",
    "RevocationMode",
    "RevocationSource",
    "RevocationStatus",
    "RevokedEntry",
    "parse_crl",
    "parse_ocsp",
    "revocation_status",
]

# Clocks of responders, CAs and gateways differ; a few minutes either way is tolerated.
CLOCK_SKEW = timedelta(minutes=5)
# An OCSP answer without nextUpdate says "fresh now": used for at most this long.
OCSP_MAX_AGE_WITHOUT_NEXT_UPDATE = timedelta(hours=1)
# Bounds: a hostile server cannot make the gateway hold more than this per source.
MAX_CRL_BYTES = 8 * 1024 * 1024
MAX_OCSP_BYTES = 64 * 1024


class RevocationSource(StrEnum):
    """Where a piece of revocation information came from."""

    STAPLED = "stapled"  # the peer's OCSP response in the TLS handshake
    OCSP_URL = "ocsp-url"  # fetched from the certificate's AIA OCSP URL
    CRL_URL = "crl-url"  # fetched from the certificate's CRL distribution point
    UPLOADED = "uploaded"  # a CRL file an administrator uploaded


class RevocationStatus(StrEnum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class RevokedEntry:
    """One serial number a CRL or an OCSP response says is revoked."""

    revoked_at: datetime
    reason: str | None  # RFC 5280 CRLReason name, e.g. "keyCompromise"; None if not given


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Crl:
    """A CRL as read, not yet checked against an issuer (see :func:`revocation_status`)."""

    der: bytes = field(repr=False)
    fingerprint: str  # SHA-256 of the DER
    issuer: str  # RFC 4514, for messages
    issuer_der: bytes = field(repr=False)  # the issuer name, to find the CRL for a certificate
    this_update: datetime
    next_update: datetime | None
    number: int | None
    source: RevocationSource
    url: str | None
    revoked: Mapping[int, RevokedEntry] = field(repr=False)
    # A defect of the CRL itself (RFC 5280 §5): it is never used; "" when none.
    defect: str = ""
    only_user_certs: bool = False
    only_ca_certs: bool = False
    partial: bool = False  # onlySomeReasons or an indirect CRL: not a complete answer
    crl: x509.CertificateRevocationList = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class OcspSingle:
    """One SingleResponse: the status of one certificate (certID) at thisUpdate."""

    serial: int
    hash_algorithm: str  # of the certID hashes, e.g. "sha1"
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    status: RevocationStatus
    revoked: RevokedEntry | None
    this_update: datetime
    next_update: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class OcspResponse:
    """A successful OCSP response as read, not yet checked against an issuer."""

    der: bytes = field(repr=False)
    fingerprint: str
    source: RevocationSource
    url: str | None
    produced_at: datetime
    singles: tuple[OcspSingle, ...]
    responder_name_der: bytes | None = field(repr=False)
    responder_key_hash: bytes | None = field(repr=False)
    certificates: tuple[x509.Certificate, ...] = field(repr=False, compare=False)
    response: ocsp.OCSPResponse = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class CertRevocation:
    """What the decision learned about one certificate of the path."""

    depth: int  # 0 = leaf
    fingerprint: str
    status: RevocationStatus
    source: RevocationSource | None = None  # of the information that decided
    url: str | None = None
    this_update: datetime | None = None
    next_update: datetime | None = None
    revoked: RevokedEntry | None = None
    # Why no status could be had, or which information was set aside and why.
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RevocationFacts:
    """The cached revocation information every handshake may use, indexed once."""

    crls: tuple[Crl, ...] = ()
    ocsp: tuple[OcspResponse, ...] = ()
    crls_by_issuer: Mapping[bytes, tuple[Crl, ...]] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )
    ocsp_by_serial: Mapping[int, tuple[OcspResponse, ...]] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )

    @classmethod
    def build(
        cls, *, crls: Iterable[Crl] = (), ocsp: Iterable[OcspResponse] = ()
    ) -> RevocationFacts:
        crls_t, ocsp_t = tuple(crls), tuple(ocsp)
        by_issuer: dict[bytes, list[Crl]] = {}
        for crl in crls_t:
            by_issuer.setdefault(crl.issuer_der, []).append(crl)
        by_serial: dict[int, list[OcspResponse]] = {}
        for response in ocsp_t:
            for serial in dict.fromkeys(s.serial for s in response.singles):
                by_serial.setdefault(serial, []).append(response)
        return cls(
            crls=crls_t,
            ocsp=ocsp_t,
            crls_by_issuer=MappingProxyType({k: tuple(v) for k, v in by_issuer.items()}),
            ocsp_by_serial=MappingProxyType({k: tuple(v) for k, v in by_serial.items()}),
        )

    @property
    def empty(self) -> bool:
        return not self.crls and not self.ocsp


EMPTY_FACTS = RevocationFacts()


class SourceKind(StrEnum):
    CRL = "crl"
    OCSP = "ocsp"


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedSource:
    """One cached piece of revocation information, as the store lists it."""

    key: str  # the URL it was fetched from; "uploaded:<issuer>" for an uploaded CRL
    kind: SourceKind
    source: RevocationSource
    url: str | None
    issuer: str  # the CRL issuer, or the OCSP answer's responder ("" when unknown)
    this_update: datetime
    next_update: datetime | None
    fetched_at: datetime
    size: int  # bytes
    entries: int  # revoked serials of a CRL, single responses of an OCSP answer
    fingerprint: str


def read_source(
    der: bytes, *, kind: SourceKind, source: RevocationSource, url: str | None
) -> Crl | OcspResponse:
    """Parse stored or fetched bytes (raises like :func:`parse_crl` / :func:`parse_ocsp`)."""
    if kind is SourceKind.CRL:
        return parse_crl(der, source=source, url=url)
    return parse_ocsp(der, source=source, url=url)


def describe_source(parsed: Crl | OcspResponse, *, key: str, fetched_at: datetime) -> CachedSource:
    if isinstance(parsed, Crl):
        return CachedSource(
            key=key,
            kind=SourceKind.CRL,
            source=parsed.source,
            url=parsed.url,
            issuer=parsed.issuer,
            this_update=parsed.this_update,
            next_update=parsed.next_update,
            fetched_at=fetched_at,
            size=len(parsed.der),
            entries=len(parsed.revoked),
            fingerprint=parsed.fingerprint,
        )
    next_updates = [s.next_update for s in parsed.singles if s.next_update is not None]
    this_updates = [s.this_update for s in parsed.singles] or [parsed.produced_at]
    return CachedSource(
        key=key,
        kind=SourceKind.OCSP,
        source=parsed.source,
        url=parsed.url,
        issuer="",
        this_update=min(this_updates),
        next_update=min(next_updates) if next_updates else None,
        fetched_at=fetched_at,
        size=len(parsed.der),
        entries=len(parsed.singles),
        fingerprint=parsed.fingerprint,
    )


# -- reading ---------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _reason_name(flag: x509.ReasonFlags | None) -> str | None:
    return None if flag is None else str(flag.value)


def parse_crl(data: bytes, *, source: RevocationSource, url: str | None = None) -> Crl:
    """Read a CRL (DER or PEM). Raises :class:`ParseError` or :class:`InputTooLarge`.

    Structural defects that RFC 5280 §5 forbids (no CRL number, a critical CRL
    number, a delta CRL, an unknown critical extension) do not raise: the CRL is
    returned with ``defect`` set, so the operator sees why it is not used.
    """
    if len(data) > MAX_CRL_BYTES:
        raise InputTooLarge("CRL", len(data), MAX_CRL_BYTES)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(data)
        else:
            crl = x509.load_der_x509_crl(data)
        der = crl.public_bytes(Encoding.DER)
        this_update = crl.last_update_utc
        next_update = crl.next_update_utc
        issuer = crl.issuer
        extensions = crl.extensions
        revoked: dict[int, RevokedEntry] = {}
        for entry in crl:
            reason: x509.ReasonFlags | None = None
            with contextlib.suppress(x509.ExtensionNotFound):
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            revoked[entry.serial_number] = RevokedEntry(
                revoked_at=entry.revocation_date_utc, reason=_reason_name(reason)
            )
    except InputTooLarge:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ParseError(f"The data is not a readable CRL (DER or PEM): {exc}.") from exc
    defect = ""
    number: int | None = None
    only_user = only_ca = partial = False
    handled = {ExtensionOID.ISSUING_DISTRIBUTION_POINT}
    for ext in extensions:
        oid = ext.oid
        if oid == ExtensionOID.CRL_NUMBER:
            number = ext.value.crl_number
            if ext.critical:
                defect = "its CRL number extension is marked critical, which RFC 5280 forbids"
        elif oid == ExtensionOID.DELTA_CRL_INDICATOR:
            defect = "it is a delta CRL, which sipsgate does not combine with a base CRL"
        elif oid == ExtensionOID.ISSUING_DISTRIBUTION_POINT:
            idp = ext.value
            only_user = idp.only_contains_user_certs
            only_ca = idp.only_contains_ca_certs
            partial = idp.only_some_reasons is not None or idp.indirect_crl
            if idp.only_contains_attribute_certs:
                partial = True
        elif ext.critical and oid not in handled:
            defect = f"it has a critical extension sipsgate does not process ({oid.dotted_string})"
    if number is None and not defect:
        defect = "it has no CRL number, which RFC 5280 requires"
    return Crl(
        der=der,
        fingerprint=hashlib.sha256(der).hexdigest(),
        issuer=issuer.rfc4514_string(),
        issuer_der=issuer.public_bytes(),
        this_update=_utc(this_update),
        next_update=_utc(next_update) if next_update is not None else None,
        number=number,
        source=source,
        url=url,
        revoked=MappingProxyType(revoked),
        defect=defect,
        only_user_certs=only_user,
        only_ca_certs=only_ca,
        partial=partial,
        crl=crl,
    )


_OCSP_STATUS = {
    ocsp.OCSPCertStatus.GOOD: RevocationStatus.GOOD,
    ocsp.OCSPCertStatus.REVOKED: RevocationStatus.REVOKED,
    ocsp.OCSPCertStatus.UNKNOWN: RevocationStatus.UNKNOWN,
}


def parse_ocsp(data: bytes, *, source: RevocationSource, url: str | None = None) -> OcspResponse:
    """Read a DER OCSP response. Raises :class:`ParseError` (also for an unsuccessful
    response status, which carries no information) or :class:`InputTooLarge`."""
    if len(data) > MAX_OCSP_BYTES:
        raise InputTooLarge("OCSP response", len(data), MAX_OCSP_BYTES)
    try:
        response = ocsp.load_der_ocsp_response(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ParseError(f"The data is not a readable OCSP response: {exc}.") from exc
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise ParseError(
            f"The OCSP responder answered {response.response_status.name.lower()}, "
            "with no certificate status."
        )
    try:
        singles: list[OcspSingle] = []
        for single in response.responses:
            status = _OCSP_STATUS[single.certificate_status]
            entry = None
            if status is RevocationStatus.REVOKED:
                revoked_at = single.revocation_time_utc
                entry = RevokedEntry(
                    revoked_at=_utc(revoked_at) if revoked_at else _utc(single.this_update_utc),
                    reason=_reason_name(single.revocation_reason),
                )
            next_update = single.next_update_utc
            singles.append(
                OcspSingle(
                    serial=single.serial_number,
                    hash_algorithm=single.hash_algorithm.name,
                    issuer_name_hash=single.issuer_name_hash,
                    issuer_key_hash=single.issuer_key_hash,
                    status=status,
                    revoked=entry,
                    this_update=_utc(single.this_update_utc),
                    next_update=_utc(next_update) if next_update is not None else None,
                )
            )
        produced_at = _utc(response.produced_at_utc)
        name = response.responder_name
        key_hash = response.responder_key_hash
        certificates = tuple(response.certificates)
    except (ValueError, TypeError, KeyError, UnsupportedAlgorithm) as exc:
        raise ParseError(f"The OCSP response cannot be read: {exc}.") from exc
    return OcspResponse(
        der=data,
        fingerprint=hashlib.sha256(data).hexdigest(),
        source=source,
        url=url,
        produced_at=produced_at,
        singles=tuple(singles),
        responder_name_der=name.public_bytes() if name is not None else None,
        responder_key_hash=key_hash,
        certificates=certificates,
        response=response,
    )


# -- checking --------------------------------------------------------------------------------


class _Memo:
    """A bounded map of time-independent check results, oldest dropped first."""

    __slots__ = ("_entries", "maxsize")

    def __init__(self, maxsize: int = 4096) -> None:
        self.maxsize = maxsize
        self._entries: dict[tuple[str, ...], object] = {}

    def get(self, key: tuple[str, ...]) -> object:
        return self._entries.get(key, _MISSING)

    def put(self, key: tuple[str, ...], value: object) -> None:
        entries = self._entries
        while len(entries) >= self.maxsize:
            try:
                del entries[next(iter(entries))]
            except (StopIteration, KeyError, RuntimeError):  # another thread got there
                break
        entries[key] = value

    def clear(self) -> None:
        self._entries.clear()


_MISSING = object()
check_memo = _Memo()


def _verify(
    key: object, signature: bytes, data: bytes, digest: hashes.HashAlgorithm | None
) -> str | None:
    try:
        if isinstance(key, rsa.RSAPublicKey) and digest is not None:
            key.verify(signature, data, PKCS1v15(), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey) and digest is not None:
            key.verify(signature, data, ec.ECDSA(digest))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        elif isinstance(key, dsa.DSAPublicKey) and digest is not None:
            key.verify(signature, data, digest)
        else:
            return "its signature algorithm does not fit the signer's key"
    except InvalidSignature:
        return "its signature was not made by the issuer's key"
    except (UnsupportedAlgorithm, ValueError, TypeError) as exc:
        return f"its signature could not be checked ({exc})"
    return None


def _crl_signature(crl: Crl, issuer: Certificate) -> str | None:
    """Time-independent checks of ``crl`` against ``issuer``; memoised."""
    key = ("crl", crl.fingerprint, issuer.fingerprint)
    cached = check_memo.get(key)
    if cached is not _MISSING:
        return cached  # type: ignore[return-value]
    result: str | None
    if crl.issuer_der != issuer.subject_der:
        result = f"it is issued by {crl.issuer}, not by {issuer.subject}"
    elif issuer.key_usage is not None and "cRLSign" not in issuer.key_usage:
        result = f"its issuer {issuer.subject} may not sign CRLs (its key usage lacks cRLSign)"
    else:
        try:
            valid = crl.crl.is_signature_valid(issuer.x509.public_key())  # type: ignore[arg-type]
            result = None if valid else "its signature was not made by the issuer's key"
        except (UnsupportedAlgorithm, ValueError, TypeError) as exc:
            result = f"its signature could not be checked ({exc})"
    check_memo.put(key, result)
    return result


def _window(
    what: str, this_update: datetime, next_update: datetime | None, now: datetime
) -> str | None:
    if this_update > now + CLOCK_SKEW:
        return f"{what} is dated {_time(this_update)}, in the future"
    if next_update is None:
        if what.startswith("the OCSP") and now > this_update + OCSP_MAX_AGE_WITHOUT_NEXT_UPDATE:
            return f"{what} of {_time(this_update)} has no next update and is too old"
        return None
    if now > next_update + CLOCK_SKEW:
        return f"{what} expired at its next update {_time(next_update)} (stale or replayed)"
    return None


def _serial(cert: Certificate) -> int:
    # From the parsed value: reading the x509 object again warns on negative serials.
    return int(cert.serial, 16)


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _crl_answer(
    crl: Crl, cert: Certificate, issuer: Certificate, now: datetime
) -> tuple[RevocationStatus | None, str]:
    """(status, "") when ``crl`` speaks for ``cert``; (None, why not) otherwise."""
    where = f"the CRL {crl.url or '(uploaded)'}"
    if crl.defect:
        return None, f"{where} is not used: {crl.defect}"
    problem = _crl_signature(crl, issuer) or _window("it", crl.this_update, crl.next_update, now)
    if problem:
        return None, f"{where} is not used: {problem}"
    if (
        crl.partial
        or (crl.only_ca_certs and not cert.is_ca)
        or (crl.only_user_certs and cert.is_ca)
    ):
        return None, f"{where} does not cover this certificate (its distribution point scope)"
    if _serial(cert) in crl.revoked:
        return RevocationStatus.REVOKED, ""
    return RevocationStatus.GOOD, ""


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _key_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING contents of ``cert`` (what an OCSP key hash covers)."""
    der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    offset = _skip_header(der, 0)  # into the SPKI SEQUENCE
    algorithm_end = _skip_header(der, offset)
    offset = algorithm_end + _length(der, offset)
    bits_start = _skip_header(der, offset)
    return der[bits_start + 1 : bits_start + _length(der, offset)]


def _skip_header(der: bytes, offset: int) -> int:
    first = der[offset + 1]
    return offset + 2 + (first & 0x7F if first >= 0x80 else 0)


def _length(der: bytes, offset: int) -> int:
    first = der[offset + 1]
    if first < 0x80:
        return first
    count = first & 0x7F
    return int.from_bytes(der[offset + 2 : offset + 2 + count], "big")


def _cert_id_matches(single: OcspSingle, cert: Certificate, issuer: Certificate) -> bool:
    factory = _HASHES.get(single.hash_algorithm)
    if factory is None or single.serial != _serial(cert):
        return False
    key = ("certid", single.hash_algorithm, issuer.fingerprint)
    cached = check_memo.get(key)
    if cached is _MISSING:
        name_hash = hashes.Hash(factory())
        name_hash.update(issuer.subject_der)
        key_hash = hashes.Hash(factory())
        key_hash.update(_key_bits(issuer.x509))
        cached = (name_hash.finalize(), key_hash.finalize())
        check_memo.put(key, cached)
    digests: tuple[bytes, bytes] = cached  # type: ignore[assignment]
    return single.issuer_name_hash == digests[0] and single.issuer_key_hash == digests[1]


def _ocsp_signer(
    response: OcspResponse, issuer: Certificate
) -> tuple[str | None, datetime | None, datetime | None]:
    """Who signed ``response``: (problem, delegated responder's not_before, not_after);
    time-independent, memoised."""
    key = ("ocsp", response.fingerprint, issuer.fingerprint)
    cached = check_memo.get(key)
    if cached is not _MISSING:
        return cached  # type: ignore[return-value]
    result = _find_ocsp_signer(response, issuer)
    check_memo.put(key, result)
    return result


def _responder_is(response: OcspResponse, cert: x509.Certificate) -> bool:
    if response.responder_name_der is not None:
        return cert.subject.public_bytes() == response.responder_name_der
    bits_hash = hashlib.sha1(_key_bits(cert)).digest()  # noqa: S324 (RFC 6960 KeyHash)
    return bits_hash == response.responder_key_hash


def _find_ocsp_signer(
    response: OcspResponse, issuer: Certificate
) -> tuple[str | None, datetime | None, datetime | None]:
    raw = response.response
    try:
        signature = raw.signature
        data = raw.tbs_response_bytes
        digest = raw.signature_hash_algorithm
    except (ValueError, UnsupportedAlgorithm) as exc:
        return f"its signature cannot be read ({exc})", None, None
    if _responder_is(response, issuer.x509):
        problem = _verify(issuer.x509.public_key(), signature, data, digest)
        return problem, None, None
    for responder in response.certificates:
        if not _responder_is(response, responder):
            continue
        if responder.issuer.public_bytes() != issuer.subject_der:
            return "its responder certificate is not issued by the certificate's issuer", None, None
        try:
            responder_digest = responder.signature_hash_algorithm
        except UnsupportedAlgorithm as exc:
            return f"its responder certificate cannot be checked ({exc})", None, None
        problem = _verify(
            issuer.x509.public_key(),
            responder.signature,
            responder.tbs_certificate_bytes,
            responder_digest,
        )
        if problem:
            return f"its responder certificate is not signed by the issuer: {problem}", None, None
        try:
            usages = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            usages = None
        if usages is None or ExtendedKeyUsageOID.OCSP_SIGNING not in usages:
            return "its responder certificate is not authorised for OCSP signing", None, None
        problem = _verify(responder.public_key(), signature, data, digest)
        if problem:
            return problem.replace("the issuer's key", "its responder's key"), None, None
        return None, responder.not_valid_before_utc, responder.not_valid_after_utc
    return "it is signed by neither the issuer nor a responder the issuer authorised", None, None


def _ocsp_answer(
    response: OcspResponse, cert: Certificate, issuer: Certificate, now: datetime
) -> tuple[OcspSingle | None, str]:
    what = (
        "the stapled OCSP response"
        if response.source is RevocationSource.STAPLED
        else f"the OCSP response from {response.url or 'the responder'}"
    )
    single = next((s for s in response.singles if _cert_id_matches(s, cert, issuer)), None)
    if single is None:
        return None, f"{what} is not used: it is about another certificate"
    problem, not_before, not_after = _ocsp_signer(response, issuer)
    if (
        problem is None
        and not_before is not None
        and not_after is not None
        and not not_before - CLOCK_SKEW <= now <= not_after + CLOCK_SKEW
    ):
        problem = "its responder certificate is not valid now"
    if problem is None:
        problem = _window("the OCSP answer", single.this_update, single.next_update, now)
    if problem:
        return None, f"{what} is not used: {problem}"
    if single.status is RevocationStatus.UNKNOWN:
        return None, f"{what} says the responder does not know the certificate"
    return single, ""


def revocation_status(
    cert: Certificate,
    issuer: Certificate,
    depth: int,
    now: datetime,
    facts: RevocationFacts,
    stapled: OcspResponse | None = None,
) -> CertRevocation:
    """The revocation status of ``cert`` (issued by ``issuer``) from ``facts``.

    A verified ``revoked`` from any source wins; else a verified ``good``; else
    ``unknown`` with a note for every piece of information set aside.
    """
    notes: list[str] = []
    good: CertRevocation | None = None
    responses: tuple[OcspResponse, ...] = facts.ocsp_by_serial.get(_serial(cert), ())
    if stapled is not None and depth == 0:
        responses = (stapled, *responses)
    for response in responses:
        single, note = _ocsp_answer(response, cert, issuer, now)
        if single is None:
            notes.append(note)
            continue
        answer = CertRevocation(
            depth=depth,
            fingerprint=cert.fingerprint,
            status=single.status,
            source=response.source,
            url=response.url,
            this_update=single.this_update,
            next_update=single.next_update,
            revoked=single.revoked,
        )
        if single.status is RevocationStatus.REVOKED:
            return answer
        good = good or answer
    for crl in facts.crls_by_issuer.get(cert.issuer_der, ()):
        status, note = _crl_answer(crl, cert, issuer, now)
        if status is None:
            notes.append(note)
            continue
        answer = CertRevocation(
            depth=depth,
            fingerprint=cert.fingerprint,
            status=status,
            source=crl.source,
            url=crl.url,
            this_update=crl.this_update,
            next_update=crl.next_update,
            revoked=crl.revoked.get(_serial(cert)),
        )
        if status is RevocationStatus.REVOKED:
            return answer
        good = good or answer
    if good is not None:
        return good
    if not notes:
        notes.append("no stapled response, cached OCSP answer or CRL speaks for it")
    return CertRevocation(
        depth=depth,
        fingerprint=cert.fingerprint,
        status=RevocationStatus.UNKNOWN,
        notes=tuple(notes),
    )
