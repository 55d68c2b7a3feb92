"""Certification path building and validation against the trust list. Pure.

Peers send chains in any order, with duplicates, unrelated extras or the root
included, and CAs are cross-signed. :func:`validate_path` therefore builds candidate
paths from the leaf upwards by issuer name (narrowed by the authority/subject key
identifiers when both are present). The first path (the first issuer of each name) is
checked first: it is the one that passes in nearly every handshake. When it fails, a
depth-first search tries the alternatives, following an issuer the peer sent only when
its key verifies the signature below it, and keeps the first path that passes every
check. When none passes, the best failing path is reported (one that reaches a trust
anchor beats one that does not; then the one with fewer problems), with every problem
found on it.

A trust anchor is any certificate in the trust list: a trusted end-entity (``server``)
certificate anchors itself, a trusted intermediate anchors the paths through it, and a
trusted CA anchors the certificates it issued (matched by name, then by signature).
An anchor is checked like every other certificate of the path: an expired trusted
certificate no longer vouches for anything (DESIGN §4), and the path fails with
``expired``; its name constraints bind the path, and its critical extensions must be
ones sipsgate processes. The anchor's own signature is not checked (nothing vouches
for it but the trust list).

Besides signatures, validity (compared at whole seconds: certificates carry no
fractions) and CA rules, every certificate is checked for critical extensions the
validator does not process (:data:`PROCESSED_CRITICAL_EXTENSIONS`), for keys sipsgate
refuses (DSA, EC with explicit curve parameters), and against the name constraints of
the CAs above it (:mod:`certstore.nameconstraints`). A CA certificate, or one whose key
usage allows certificate signing, is not accepted as the server's certificate unless it
is itself in the trust list.

The work is counted, not timed: paths are at most :data:`MAX_DEPTH` certificates long,
the first :data:`MAX_EXTRA_CERTIFICATES` distinct certificates a peer sends are looked
at, and one validation may make at most :data:`MAX_SIGNATURE_CHECKS` signature checks,
evaluate :data:`MAX_PATHS` complete paths and :data:`MAX_NAME_COMPARISONS` name
comparisons. A search cut short by the budget without a valid path says so
(``chain-too-complex``) next to the problems of the best path it saw."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PSS, PKCS1v15
from cryptography.x509.oid import SignatureAlgorithmOID

from certstore import notation
from certstore.model import Certificate, Finding, Reason, TrustEntry
from certstore.nameconstraints import MAX_NAME_COMPARISONS, Budget, check_name_constraints
from certstore.snapshot import TrustSnapshot

__all__ = [
    "MAX_DEPTH",
    "MAX_EXTRA_CERTIFICATES",
    "MAX_NAME_COMPARISONS",
    "MAX_PATHS",
    "MAX_SIGNATURE_CHECKS",
    "PROCESSED_CRITICAL_EXTENSIONS",
    "PathResult",
    "SignatureCache",
    "describe",
    "format_time",
    "signature_cache",
    "validate_path",
    "verify_signature",
]

MAX_DEPTH = 10  # certificates in one path, leaf and anchor included
MAX_EXTRA_CERTIFICATES = 100  # distinct certificates besides the leaf taken from a chain
MAX_SIGNATURE_CHECKS = 128  # signature checks per validation (cached answers count too)
MAX_PATHS = 64  # complete paths evaluated per validation

# The extensions the validator acts on, so they may be critical. Any other extension
# marked critical (policies, policy constraints, authority information access, a
# critical key identifier, which RFC 5280 forbids ...) rejects the certificate.
PROCESSED_CRITICAL_EXTENSIONS: Mapping[str, str] = {
    "2.5.29.19": "basicConstraints",
    "2.5.29.15": "keyUsage",
    "2.5.29.37": "extendedKeyUsage",
    "2.5.29.17": "subjectAltName",
    "2.5.29.30": "nameConstraints",
}

_EMPTY_NAME = b"\x30\x00"  # the DER of an empty distinguished name

# Records one finding: reason, message, depth in the path, certificate concerned.
_AddFinding = Callable[[Reason, str, int | None, Certificate | None], None]

_SERVER_AUTH = frozenset({"serverAuth", "anyExtendedKeyUsage"})


@dataclass(frozen=True, slots=True, kw_only=True)
class PathResult:
    """The path chosen for a chain and every problem found on it."""

    path: tuple[Certificate, ...]  # leaf first; ends with the anchor when one was reached
    anchor: Certificate | None  # the trust anchor the path reached, even if it failed
    findings: tuple[Finding, ...]

    @property
    def valid(self) -> bool:
        return self.anchor is not None and not self.findings


class SignatureCache:
    """A bounded memo of signature checks, keyed by (certificate, issuer) fingerprints.

    Whether the certificate with DER ``a`` carries a valid signature by the key in the
    certificate with DER ``b`` depends on those two byte strings only, and a SHA-256
    fingerprint names its DER. So a cached answer is the answer a fresh check would
    give: the cache changes how fast :func:`validate_path` is, never what it returns
    (no time, order or history enters the result). It matters because every handshake
    with the same provider checks the same two or three signatures again.

    It holds at most ``maxsize`` entries; when full, the oldest entry is dropped, so a
    peer sending endless fresh chains costs only the checks themselves. ``maxsize`` 0
    turns the cache off (the benchmarks measure both ways).
    """

    __slots__ = ("_entries", "maxsize")

    def __init__(self, maxsize: int = 4096) -> None:
        self.maxsize = maxsize
        self._entries: dict[tuple[str, str], str | None] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def check(self, cert: Certificate, issuer: Certificate) -> str | None:
        """``None`` when ``issuer``'s key signed ``cert``; else why not, as a phrase."""
        if self.maxsize <= 0:
            return verify_signature(cert, issuer)
        key = (cert.fingerprint, issuer.fingerprint)
        try:
            return self._entries[key]
        except KeyError:
            pass
        result = verify_signature(cert, issuer)
        entries = self._entries
        while len(entries) >= self.maxsize:
            try:
                del entries[next(iter(entries))]
            except (StopIteration, KeyError, RuntimeError):  # another thread got there
                break
        entries[key] = result
        return result


# Shared by every decision of the process; see SignatureCache for why that is sound.
signature_cache = SignatureCache()


def verify_signature(cert: Certificate, issuer: Certificate) -> str | None:
    """Check ``cert``'s signature with ``issuer``'s public key, without a cache.

    Returns None when it verifies, else a phrase saying why not. Handles RSA PKCS#1
    v1.5 and RSA-PSS, ECDSA, Ed25519, Ed448 and DSA, with any hash cryptography knows
    (SHA-1 included: a SHA-1 signature verifies here and is flagged weak elsewhere).
    ``verify_directly_issued_by`` is not used: it refuses SHA-1 signatures, and calling
    the key directly is also faster.
    """
    x = cert.x509
    try:
        key = issuer.x509.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        return f"the issuer's public key cannot be read ({exc})"
    try:
        signature = x.signature
        tbs = _tbs_bytes(cert)
        known = _COMMON_ALGORITHMS.get(x.signature_algorithm_oid)
        if isinstance(key, rsa.RSAPublicKey):
            if known is not None and isinstance(known[0], PKCS1v15):
                key.verify(signature, tbs, known[0], known[1])
                return None
            params = x.signature_algorithm_parameters
            digest = x.signature_hash_algorithm
            if not isinstance(params, PKCS1v15 | PSS) or digest is None:
                return _mismatch(cert, "RSA")
            key.verify(signature, tbs, params, digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if known is not None and isinstance(known[0], ec.ECDSA):
                key.verify(signature, tbs, known[0])
                return None
            params = x.signature_algorithm_parameters
            if not isinstance(params, ec.ECDSA):
                return _mismatch(cert, "EC")
            key.verify(signature, tbs, params)
        elif isinstance(key, ed25519.Ed25519PublicKey):
            if x.signature_algorithm_oid != SignatureAlgorithmOID.ED25519:
                return _mismatch(cert, "Ed25519")
            key.verify(signature, tbs)
        elif isinstance(key, ed448.Ed448PublicKey):
            if x.signature_algorithm_oid != SignatureAlgorithmOID.ED448:
                return _mismatch(cert, "Ed448")
            key.verify(signature, tbs)
        elif isinstance(key, dsa.DSAPublicKey):
            digest = x.signature_hash_algorithm
            if digest is None or "dsa" not in cert.signature_algorithm.lower():
                return _mismatch(cert, "DSA")
            key.verify(signature, tbs, digest)
        else:
            return f"sipsgate cannot check signatures made with a {type(key).__name__} key"
    except InvalidSignature:
        return "the signature is not the one the issuer's key would make"
    except (UnsupportedAlgorithm, ValueError, TypeError) as exc:
        return f"the signature could not be checked ({exc})"
    return None


# The signature algorithms nearly every certificate uses, with their padding and hash
# made once (cryptography's ``signature_algorithm_parameters`` builds new objects on
# every call). Anything else (RSA-PSS, Ed25519, ...) takes the general route.
_COMMON_ALGORITHMS: dict[x509.ObjectIdentifier, tuple[object, hashes.HashAlgorithm]] = {
    SignatureAlgorithmOID.RSA_WITH_SHA256: (PKCS1v15(), hashes.SHA256()),
    SignatureAlgorithmOID.RSA_WITH_SHA384: (PKCS1v15(), hashes.SHA384()),
    SignatureAlgorithmOID.RSA_WITH_SHA512: (PKCS1v15(), hashes.SHA512()),
    SignatureAlgorithmOID.RSA_WITH_SHA1: (PKCS1v15(), hashes.SHA1()),  # noqa: S303 (verify only)
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: (ec.ECDSA(hashes.SHA256()), hashes.SHA256()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: (ec.ECDSA(hashes.SHA384()), hashes.SHA384()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: (ec.ECDSA(hashes.SHA512()), hashes.SHA512()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: (ec.ECDSA(hashes.SHA1()), hashes.SHA1()),  # noqa: S303
}


def _tbs_bytes(cert: Certificate) -> bytes:
    """The signed part (TBSCertificate) of ``cert``, sliced from its DER as received.

    The signature covers exactly these bytes; slicing them is also several times
    cheaper than cryptography's ``tbs_certificate_bytes``, which re-encodes.
    """
    der = cert.der
    try:
        start = _header_end(der, 0)  # inside the outer Certificate SEQUENCE
        end = _header_end(der, start)
        length_byte = der[start + 1]
        length = length_byte if length_byte < 128 else int.from_bytes(der[start + 2 : end], "big")
        if der[0] != 0x30 or der[start] != 0x30 or end + length > len(der):
            raise IndexError
        return der[start : end + length]
    except IndexError:
        return cert.x509.tbs_certificate_bytes


def _header_end(der: bytes, offset: int) -> int:
    """Offset just past the tag and length octets of the DER element at ``offset``."""
    length_byte = der[offset + 1]
    if length_byte < 0x80:
        return offset + 2
    count = length_byte & 0x7F
    if count == 0 or count > 4:
        raise IndexError
    return offset + 2 + count


def _mismatch(cert: Certificate, key_type: str) -> str:
    return f"its signature algorithm ({cert.signature_algorithm}) cannot come from a {key_type} key"


def describe(cert: Certificate) -> str:
    """How messages name a certificate: ``CN=...``, else its subject, else its fingerprint."""
    if cert.common_name:
        return f"CN={cert.common_name}"
    if cert.subject:
        return cert.subject
    return f"with SHA-256 fingerprint {cert.fingerprint}"


def format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def validate_path(
    chain: Sequence[Certificate],
    now: datetime,
    snapshot: TrustSnapshot,
    *,
    cache: SignatureCache | None = None,
) -> PathResult:
    """Build and check a path from ``chain[0]`` to a trust anchor of ``snapshot``.

    ``chain`` must not be empty. The peer identity is not checked here (see
    :mod:`certstore.identity`).
    """
    work = _Work(signature_cache if cache is None else cache)
    # Certificates carry whole seconds; a fraction in `now` must not expire one early.
    if now.microsecond:
        now = now.replace(microsecond=0)
    leaf = chain[0]
    pool: dict[bytes, list[Certificate]] = {}
    if len(chain) > 1:
        seen = {leaf.fingerprint}
        for cert in chain[1:]:
            if cert.fingerprint in seen:
                continue
            if len(seen) > MAX_EXTRA_CERTIFICATES:
                break
            seen.add(cert.fingerprint)
            pool.setdefault(cert.subject_der, []).append(cert)

    # The first path of the search, built without the search's machinery: it is the
    # one that passes in nearly every handshake.
    path, anchor = _first_path(leaf, pool, now, snapshot)
    findings = _check(path, anchor, now, work)
    if anchor is not None and not findings:
        return PathResult(path=path, anchor=anchor.certificate, findings=())
    best = PathResult(
        path=path,
        anchor=anchor.certificate if anchor is not None else None,
        findings=tuple(findings),
    )
    best_rank = (anchor is not None, -len(findings))
    first = path
    for path, anchor in _paths(leaf, pool, now, snapshot, work):
        if path == first:
            continue  # checked above
        work.budget.paths -= 1
        if work.budget.paths < 0:
            work.budget.exhausted = f"{MAX_PATHS} complete paths"
            break
        findings = _check(path, anchor, now, work)
        if anchor is not None and not findings:
            return PathResult(path=path, anchor=anchor.certificate, findings=())
        rank = (anchor is not None, -len(findings))
        if rank > best_rank:
            best_rank = rank
            best = PathResult(
                path=path,
                anchor=anchor.certificate if anchor is not None else None,
                findings=tuple(findings),
            )
    if work.budget.exhausted and not any(
        f.reason is Reason.CHAIN_TOO_COMPLEX for f in best.findings
    ):
        stop = Finding(
            reason=Reason.CHAIN_TOO_COMPLEX,
            message=(
                f"The peer sent {len(chain)} certificates, and sipsgate stopped looking for "
                f"a valid path after {work.budget.exhausted}; have the peer send only its "
                "own certificate chain."
            ),
        )
        best = PathResult(path=best.path, anchor=best.anchor, findings=(*best.findings, stop))
    return best


class _Work:
    """The budget of one validation, and its signature answers (so that a link the
    search verified is not verified again when its path is checked, cache or not)."""

    __slots__ = ("_checked", "_sigs", "budget")

    def __init__(self, sigs: SignatureCache) -> None:
        self._sigs = sigs
        self._checked: dict[tuple[str, str], str | None] = {}
        self.budget = Budget(
            signatures=MAX_SIGNATURE_CHECKS, paths=MAX_PATHS, comparisons=MAX_NAME_COMPARISONS
        )

    def signature(self, cert: Certificate, issuer: Certificate) -> str | None:
        key = (cert.fingerprint, issuer.fingerprint)
        try:
            return self._checked[key]
        except KeyError:
            pass
        self.budget.signatures -= 1
        result = self._sigs.check(cert, issuer)
        self._checked[key] = result
        return result


def _preference(cert: Certificate, now: datetime) -> tuple[bool, bool]:
    # Certificates valid now first, then those that carry a subject key identifier
    # (which, after the filtering in _candidates, equals the authority key identifier).
    return (not (cert.not_before <= now <= cert.not_after), cert.subject_key_id is None)


def _candidates(
    cur: Certificate,
    fingerprints: tuple[str, ...],
    pool: Mapping[bytes, list[Certificate]],
    now: datetime,
    snapshot: TrustSnapshot,
) -> tuple[list[TrustEntry], list[Certificate]]:
    """Possible issuers of ``cur``, best first: trusted ones, then ones the peer sent.

    Certificates already on the path are left out (no loops), and so are those whose
    subject key identifier contradicts ``cur``'s authority key identifier.
    """
    issuer_der = cur.issuer_der
    aki = cur.authority_key_id
    # A self-signed certificate can only have been signed by its own key: another
    # certificate with the same name but another key (a device that regenerated its
    # certificate) is not its issuer, whatever the key identifiers say or omit.
    own_key = cur.spki_fingerprint if cur.self_signed else None
    anchors = [
        e
        for e in snapshot.anchors_by_subject.get(issuer_der, ())
        if e.certificate.fingerprint not in fingerprints
        and (aki is None or e.certificate.subject_key_id in (None, aki))
        and (own_key is None or e.certificate.spki_fingerprint == own_key)
    ]
    issuers = (
        [
            c
            for c in pool[issuer_der]
            if c.fingerprint not in fingerprints
            and c.fingerprint not in snapshot.trust_by_fingerprint
            and (aki is None or c.subject_key_id in (None, aki))
            and (own_key is None or c.spki_fingerprint == own_key)
        ]
        if issuer_der in pool
        else []
    )
    if len(anchors) > 1:
        anchors.sort(key=lambda e: _preference(e.certificate, now))
    if len(issuers) > 1:
        issuers.sort(key=lambda c: _preference(c, now))
    return anchors, issuers


def _first_path(
    leaf: Certificate,
    pool: Mapping[bytes, list[Certificate]],
    now: datetime,
    snapshot: TrustSnapshot,
) -> tuple[tuple[Certificate, ...], TrustEntry | None]:
    """The path through the first candidate issuer at every step."""
    trusted = snapshot.trust_by_fingerprint
    path: tuple[Certificate, ...] = (leaf,)
    fingerprints: tuple[str, ...] = (leaf.fingerprint,)
    cur = leaf
    while True:
        entry = trusted.get(cur.fingerprint)
        if entry is not None:
            return path, entry
        if len(path) >= MAX_DEPTH:
            return path, None
        anchors, issuers = _candidates(cur, fingerprints, pool, now, snapshot)
        if anchors:
            return (*path, anchors[0].certificate), anchors[0]
        if not issuers:
            return path, None
        cur = issuers[0]
        path = (*path, cur)
        fingerprints = (*fingerprints, cur.fingerprint)


def _paths(
    leaf: Certificate,
    pool: Mapping[bytes, list[Certificate]],
    now: datetime,
    snapshot: TrustSnapshot,
    work: _Work,
) -> Iterator[tuple[tuple[Certificate, ...], TrustEntry | None]]:
    """Candidate paths from ``leaf`` (depth first), each with the anchor it reached.

    An issuer the peer sent is followed only when its key verifies the certificate
    below it, so that among many certificates the search goes where a path can be; a
    dead end (no candidate at all) is yielded for the report. Stops when the signature
    budget is spent.
    """
    trusted = snapshot.trust_by_fingerprint
    budget = work.budget

    def extend(
        path: tuple[Certificate, ...], fingerprints: tuple[str, ...]
    ) -> Iterator[tuple[tuple[Certificate, ...], TrustEntry | None]]:
        entry = trusted.get(fingerprints[-1])
        if entry is not None:
            yield path, entry
            return
        if len(path) >= MAX_DEPTH:
            yield path, None
            return
        cur = path[-1]
        anchors, issuers = _candidates(cur, fingerprints, pool, now, snapshot)
        for anchor in anchors:
            yield (*path, anchor.certificate), anchor
        for issuer in issuers:
            if budget.signatures <= 0:
                budget.exhausted = f"{MAX_SIGNATURE_CHECKS} signature checks"
                return
            if work.signature(cur, issuer) is not None:
                continue
            yield from extend((*path, issuer), (*fingerprints, issuer.fingerprint))
            if budget.exhausted:
                return
        if not anchors and not issuers:
            yield path, None  # a dead end; issuers whose signature failed are not one:
            # the first path already shows such a link with its bad signature

    return extend((leaf,), (leaf.fingerprint,))


def _role(index: int, size: int, anchored: bool, cert: Certificate) -> str:
    if index == 0:
        return "server certificate"
    if anchored and index == size - 1:
        return "trusted CA certificate"
    if cert.self_signed:
        return "root certificate"
    return "intermediate certificate"


def _check(
    path: tuple[Certificate, ...],
    anchor: TrustEntry | None,
    now: datetime,
    work: _Work,
) -> list[Finding]:
    """Every problem of one candidate path, leaf first."""
    findings: list[Finding] = []
    size = len(path)
    anchored = anchor is not None
    leaf = path[0]
    constrained = False

    def add(reason: Reason, message: str, depth: int | None, cert: Certificate | None) -> None:
        findings.append(
            Finding(
                reason=reason,
                message=message,
                depth=depth,
                fingerprint=cert.fingerprint if cert is not None else None,
            )
        )

    def label(depth: int, cert: Certificate) -> str:
        return f"{_role(depth, size, anchored, cert)} {describe(cert)}"

    for depth, cert in enumerate(path):
        is_anchor = anchored and depth == size - 1
        # Validity at `now`, in whole seconds (DER times carry no fraction; `now`'s was cut).
        if now > cert.not_after:
            message = f"The {label(depth, cert)} expired on {format_time(cert.not_after)}."
            if is_anchor:
                message += (
                    " It is in the trust list, but an expired certificate no longer acts as "
                    "a trust anchor: replace it with its renewed version, or pin the peer."
                )
            add(Reason.EXPIRED, message, depth, cert)
        elif now < cert.not_before:
            add(
                Reason.NOT_YET_VALID,
                f"The {label(depth, cert)} is not valid before "
                f"{format_time(cert.not_before)}; if that date has passed, check the "
                "gateway's clock.",
                depth,
                cert,
            )
        # The signature on this certificate, when its issuer is part of the path.
        if depth + 1 < size:
            issuer = path[depth + 1]
            problem = work.signature(cert, issuer)
            if problem is not None:
                add(
                    Reason.BAD_SIGNATURE,
                    f"The signature on the {label(depth, cert)} does not verify with the key "
                    f"of its issuer {describe(issuer)}: {problem}.",
                    depth,
                    cert,
                )
            if cert.weak_signature:
                add(
                    Reason.WEAK_SIGNATURE,
                    f"The {label(depth, cert)} is signed with "
                    f"{cert.signature_hash or 'a broken hash'} "
                    f"({cert.signature_algorithm}), which no longer protects against "
                    "forgery; have it re-issued with SHA-256 or better.",
                    depth,
                    cert,
                )
        # What an issuer must be.
        if depth > 0:
            _check_issuer(path, depth, is_anchor, label, add)
            constrained = constrained or cert.name_constraints is not None
        if cert.weak_key:
            add(
                Reason.WEAK_KEY,
                f"The {label(depth, cert)} has a {cert.public_key_size}-bit "
                f"{cert.public_key_type} key; sipsgate requires at least 2048 bits for RSA "
                "and DSA keys and 224 bits for EC keys.",
                depth,
                cert,
            )
        if cert.explicit_curve or cert.public_key_type == "DSA":
            what = (
                "an EC key given with explicit curve parameters instead of a named curve"
                if cert.explicit_curve
                else "a DSA key"
            )
            add(
                Reason.UNSUPPORTED_KEY,
                f"The {label(depth, cert)} has {what}, which sipsgate refuses; have it "
                "re-issued with an RSA key or an EC key on a named curve such as P-256.",
                depth,
                cert,
            )
        for oid in cert.critical_extensions:
            if oid not in PROCESSED_CRITICAL_EXTENSIONS:
                add(
                    Reason.UNKNOWN_CRITICAL_EXTENSION,
                    f"The {label(depth, cert)} carries the critical extension "
                    f"{_extension_name(oid)}, which sipsgate does not process; a certificate "
                    "with a critical extension its verifier does not understand must be "
                    "refused (RFC 5280 §4.2).",
                    depth,
                    cert,
                )
    eku = leaf.extended_key_usage
    if eku is not None and not _SERVER_AUTH.intersection(eku):
        add(
            Reason.BAD_USAGE,
            f"The server certificate {describe(leaf)} may only be used for "
            f"{', '.join(eku) or 'nothing'}, not for TLS server authentication (serverAuth).",
            0,
            leaf,
        )
    signs = leaf.key_usage is not None and "keyCertSign" in leaf.key_usage
    # Exempt: the leaf is itself in the trust list. The operator trusted this very
    # certificate; a PBX's self-signed one made by `openssl req -x509` says CA:TRUE, and
    # "trust" from the rejected list files it as a CA entry.
    if (leaf.is_ca or signs) and leaf.version != 1 and not (anchored and size == 1):
        what = (
            "a CA certificate (basicConstraints CA:TRUE)"
            if leaf.is_ca
            else ("a certificate whose key usage allows signing certificates (keyCertSign)")
        )
        add(
            Reason.BAD_USAGE,
            f"The server certificate {describe(leaf)} is {what}; a CA must not act as a "
            "TLS server. If this really is the server's own certificate, trust that "
            "certificate itself or pin it accept.",
            0,
            leaf,
        )
    if constrained or leaf.name_constraints is not None:
        check_name_constraints(path, label, add, work.budget)
    if not anchored:
        top = path[-1]
        depth = size - 1
        if size >= MAX_DEPTH:
            add(
                Reason.UNKNOWN_ISSUER,
                f"The chain above the server certificate {describe(leaf)} is longer than "
                f"{MAX_DEPTH} certificates without reaching a trusted certificate.",
                None,
                None,
            )
        elif top.self_signed and size == 1:
            add(
                Reason.SELF_SIGNED,
                f"The server certificate {describe(top)} is self-signed and not in the trust "
                "list. If it is the right one (compare its SHA-256 fingerprint "
                f"{top.fingerprint} with the peer's), trust it or pin it.",
                0,
                top,
            )
        elif top.self_signed:
            add(
                Reason.UNKNOWN_ISSUER,
                f"The root certificate {describe(top)} that the peer sent is not in the "
                "trust list; add it (or the CA's published root) if you trust that CA.",
                depth,
                top,
            )
        else:
            add(
                Reason.UNKNOWN_ISSUER,
                f"The issuer {top.issuer or 'with an empty name'} of the "
                f"{_role(depth, size, False, top)} {describe(top)} is not in the trust list, "
                "and the peer did not send it; add that CA certificate to the trust list "
                "or have the peer send its intermediate certificates.",
                depth,
                top,
            )
    return findings


def _extension_name(oid: str) -> str:
    name = getattr(x509.ObjectIdentifier(oid), "_name", "Unknown OID")
    return oid if name == "Unknown OID" else f"{name} ({oid})"


def _check_issuer(
    path: tuple[Certificate, ...],
    depth: int,
    is_anchor: bool,
    label: Callable[[int, Certificate], str],
    add: _AddFinding,
) -> None:
    cert = path[depth]
    eku = cert.extended_key_usage
    below = 0
    if cert.path_length is not None:
        below = sum(1 for c in path[1:depth] if c.subject_der != c.issuer_der)
    if (
        (cert.version == 1 and is_anchor)
        or (cert.version != 1 and cert.basic_constraints_present and cert.is_ca)
    ) and not (
        cert.subject_der == _EMPTY_NAME
        or (cert.path_length is not None and below > cert.path_length)
        or (cert.key_usage is not None and "keyCertSign" not in cert.key_usage)
        or (eku is not None and not _SERVER_AUTH.intersection(eku))
    ):
        return  # the usual case: nothing to say, no message to build
    name = label(depth, cert)
    issued = f"issued the certificate {describe(path[depth - 1])}"
    if cert.version == 1:
        # OpenSSL's legacy rule: an X.509 v1 certificate (no extensions at all) may act
        # as a CA only when it is itself a trust anchor.
        if not is_anchor:
            add(
                Reason.NOT_A_CA,
                f"The {name} {issued}, but it is an X.509 version 1 certificate, which can "
                "act as a CA only when it is itself in the trust list.",
                depth,
                cert,
            )
    elif not (cert.basic_constraints_present and cert.is_ca):
        state = "false" if cert.basic_constraints_present else "missing"
        add(
            Reason.NOT_A_CA,
            f"The {name} {issued}, but it is not a CA certificate (basicConstraints CA is "
            f"{state}).",
            depth,
            cert,
        )
    if cert.subject_der == _EMPTY_NAME:
        add(
            Reason.NOT_A_CA,
            f"The {name} {issued}, but its subject name is empty, and a CA certificate "
            "must name its subject (RFC 5280 §4.1.2.6).",
            depth,
            cert,
        )
    if cert.path_length is not None and below > cert.path_length:
        add(
            Reason.NOT_A_CA,
            f"The {name} allows at most "
            f"{notation.plural(cert.path_length, 'intermediate CA certificate')} below it "
            f"(path length constraint), but this path has {below}.",
            depth,
            cert,
        )
    if cert.key_usage is not None and "keyCertSign" not in cert.key_usage:
        add(
            Reason.BAD_USAGE,
            f"The {name} {issued}, but its key usage "
            f"({', '.join(cert.key_usage) or 'empty'}) does not include keyCertSign.",
            depth,
            cert,
        )
    if eku is not None and not _SERVER_AUTH.intersection(eku):
        add(
            Reason.BAD_USAGE,
            f"The {name} restricts the certificates it issues to "
            f"{', '.join(eku) or 'nothing'}, which excludes TLS server authentication.",
            depth,
            cert,
        )
