"""Reading and writing certificates: DER, PEM (many per file), PKCS#7 bundles.

Every certificate that enters sipsgate — an upload, a backup, a chain a peer sent in
a handshake — is turned into a :class:`~certstore.model.Certificate` here. Bad input
raises a :class:`~certstore.errors.ParseError` whose message says what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certstore import notation
from certstore.errors import InputTooLarge, ParseError
from certstore.model import Certificate, ComparableName, GeneralSubtree, NameConstraints

# Uploads beyond this are refused before any parsing (a hostile 50 MB body).
DEFAULT_MAX_INPUT_BYTES = 4 * 1024 * 1024
# A single certificate larger than this is not a certificate a device would send. It
# is OpenSSL's default limit on a peer's certificate list, so every certificate a TLS
# peer can deliver is read, decided on and recorded (a smaller limit here made a 64-100
# KiB certificate fail inside the trust policy, unrecorded).
MAX_CERTIFICATE_BYTES = 100 * 1024
# At most this many certificates in one upload.
MAX_CERTIFICATES_PER_INPUT = 5000

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 #]+)-----\r?\n?(.*?)-----END ([A-Z0-9 #]+)-----", re.DOTALL
)
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----")
_CERT_PEM_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_PKCS7_PEM_LABELS = {b"PKCS7", b"PKCS #7 SIGNED DATA", b"CMS"}
_KEY_PEM_LABELS = {
    b"PRIVATE KEY",
    b"RSA PRIVATE KEY",
    b"EC PRIVATE KEY",
    b"ENCRYPTED PRIVATE KEY",
    b"DSA PRIVATE KEY",
}

OID_SHORT_NAMES = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.COUNTRY_NAME: "C",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
}

EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}

_WEAK_HASHES = {"md5", "sha1", "md2", "md4"}


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    """Certificates read from one input, in input order, plus notes for the operator."""

    certificates: tuple[Certificate, ...]
    notes: tuple[str, ...] = ()


def parse_der(der: bytes) -> Certificate:
    """Parse one DER certificate into a :class:`Certificate` with every detail filled."""
    if len(der) > MAX_CERTIFICATE_BYTES:
        raise InputTooLarge("certificate", len(der), MAX_CERTIFICATE_BYTES)
    try:
        with warnings.catch_warnings():
            # Old devices issue certificates with negative serials or odd encodings;
            # cryptography warns about them, we show them.
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
            return _build(cert, der)
    except ParseError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise ParseError(f"The data is not a valid DER certificate: {exc}.") from exc


def load_certificates(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_INPUT_BYTES, what: str = "upload"
) -> LoadResult:
    """Read every certificate from DER, PEM (any number of blocks) or PKCS#7 (DER or PEM).

    Non-certificate PEM blocks are skipped with a note. Duplicates within the input
    are kept once. Raises :class:`ParseError` if nothing usable is found or any
    certificate block is damaged (a half-readable upload is refused whole).
    """
    if len(data) > max_bytes:
        raise InputTooLarge(what, len(data), max_bytes)
    if not data.strip():
        raise ParseError(f"The {what} is empty; expected DER, PEM or PKCS#7 certificates.")
    if _PEM_BEGIN.search(data):
        certs, notes = _load_pem(data, what)
    else:
        certs, notes = _load_der_any(data, what), []
    if len(certs) > MAX_CERTIFICATES_PER_INPUT:
        raise ParseError(
            f"The {what} holds {len(certs)} certificates, more than the limit of "
            f"{MAX_CERTIFICATES_PER_INPUT}."
        )
    unique = tuple(dict.fromkeys(certs))
    if len(unique) < len(certs):
        duplicates = notation.plural(len(certs) - len(unique), "duplicate certificate")
        notes.append(f"{duplicates} in the {what} ignored.")
    return LoadResult(certificates=unique, notes=tuple(notes))


def to_pem(certs: Certificate | Iterable[Certificate]) -> bytes:
    """PEM text of one certificate or of several, in the given order."""
    items = [certs] if isinstance(certs, Certificate) else list(certs)
    return b"".join(_pem_block(b"CERTIFICATE", c.der) for c in items)


def spki_fingerprint_of_key(public_key: object) -> str:
    """SHA-256 of a public key's SubjectPublicKeyInfo (for public-key pins made from keys)."""
    if not isinstance(
        public_key,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey
        | dsa.DSAPublicKey,
    ):
        raise ParseError("The object is not a public key sipsgate can pin.")
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def _pem_block(label: bytes, der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        b"-----BEGIN "
        + label
        + b"-----\n"
        + b"\n".join(lines)
        + b"\n-----END "
        + label
        + b"-----\n"
    )


def _load_pem(data: bytes, what: str) -> tuple[list[Certificate], list[str]]:
    certs: list[Certificate] = []
    notes: list[str] = []
    skipped_keys = 0
    begins = len(_PEM_BEGIN.findall(data))
    blocks = list(_PEM_BLOCK.finditer(data))
    if len(blocks) < begins:
        raise ParseError(
            f"The {what} has a PEM block that never ends (a BEGIN line without its END "
            "line); the file is probably truncated."
        )
    for number, block in enumerate(blocks, start=1):
        label, body, end_label = block.group(1), block.group(2), block.group(3)
        name = label.decode("ascii", "replace")
        if label != end_label:
            raise ParseError(
                f"PEM block {number} of the {what} begins as {name} but ends as "
                f"{end_label.decode('ascii', 'replace')}."
            )
        if label in _KEY_PEM_LABELS:
            skipped_keys += 1
            continue
        if label not in _CERT_PEM_LABELS and label not in _PKCS7_PEM_LABELS:
            notes.append(f"PEM block {number} ({name}) is not a certificate and was ignored.")
            continue
        der = _decode_pem_body(body, number, name, what)
        if label in _PKCS7_PEM_LABELS:
            certs.extend(_load_pkcs7_der(der, f"PEM block {number} of the {what}"))
            continue
        if label == b"TRUSTED CERTIFICATE":
            der = _first_der_element(der, f"PEM block {number} of the {what}")
        try:
            certs.append(parse_der(der))
        except ParseError as exc:
            raise ParseError(f"PEM block {number} of the {what}: {exc}") from exc
    if skipped_keys:
        if not certs:
            raise ParseError(
                f"The {what} holds a private key but no certificate; upload the "
                "certificate (a private key belongs only to the device identity)."
            )
        them = "it was" if skipped_keys == 1 else "they were"
        notes.append(
            f"{notation.plural(skipped_keys, 'private key block')} ignored; {them} not stored."
        )
    if not certs:
        raise ParseError(f"The {what} holds PEM blocks but no certificate.")
    return certs, notes


def _decode_pem_body(body: bytes, number: int, name: str, what: str) -> bytes:
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    # RFC 1421 headers (Proc-Type, DEK-Info) mean an encrypted legacy block.
    if any(b":" in ln for ln in lines):
        raise ParseError(
            f"PEM block {number} ({name}) of the {what} has headers; it is not a plain certificate."
        )
    try:
        return base64.b64decode(b"".join(lines), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ParseError(
            f"PEM block {number} ({name}) of the {what} is not valid base64: {exc}."
        ) from exc


def _load_der_any(data: bytes, what: str) -> list[Certificate]:
    first_error: ParseError | None = None
    try:
        return [parse_der(data)]
    except InputTooLarge:
        pass
    except ParseError as exc:
        first_error = exc
    try:
        return _load_pkcs7_der(data, f"the {what}")
    except ParseError:
        pass
    kind = _sniff_non_certificate(data)
    if kind:
        raise ParseError(f"The {what} is {kind}, not a certificate.")
    detail = f" ({first_error})" if first_error else ""
    raise ParseError(
        f"The {what} is neither a DER certificate, a PEM file nor a PKCS#7 bundle{detail}"
    )


def _load_pkcs7_der(der: bytes, where: str) -> list[Certificate]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = pkcs7.load_der_pkcs7_certificates(der)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ParseError(f"{where} is not a valid PKCS#7 bundle: {exc}.") from exc
    if not loaded:
        raise ParseError(f"{where} is a PKCS#7 bundle with no certificates in it.")
    return [parse_der(c.public_bytes(serialization.Encoding.DER)) for c in loaded]


def _sniff_non_certificate(data: bytes) -> str | None:
    """Name what the bytes are when they are a key or a PKCS#12 file rather than a cert."""
    try:
        serialization.load_der_private_key(data, password=None)
    except TypeError:
        return "an encrypted private key"
    except (ValueError, UnsupportedAlgorithm):
        pass
    else:
        return "a private key"
    try:
        from cryptography.hazmat.primitives.serialization import pkcs12

        pkcs12.load_pkcs12(data, None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        if "password" in str(exc).lower() or "mac" in str(exc).lower():
            return "a PKCS#12 file (use it for the device identity)"
    else:
        return "a PKCS#12 file (use it for the device identity)"
    return None


def _first_der_element(der: bytes, where: str) -> bytes:
    """The first TLV of ``der`` (OpenSSL's TRUSTED CERTIFICATE appends aux data)."""
    try:
        _, _, end = _der_tlv(der, 0)
    except ValueError as exc:
        raise ParseError(f"{where} is not valid DER: {exc}.") from exc
    return der[:end]


def _der_tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """Return (tag, content start, end) of the DER element at ``offset``."""
    if offset + 2 > len(data):
        raise ValueError("truncated element")
    tag = data[offset]
    length = data[offset + 1]
    pos = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("truncated element")
    return tag, pos, end


def _spki_der(tbs: bytes) -> bytes:
    """The SubjectPublicKeyInfo element of a TBSCertificate, byte for byte as sent."""
    _, pos, _ = _der_tlv(tbs, 0)  # TBSCertificate SEQUENCE
    tag, _, end = _der_tlv(tbs, pos)
    if tag == 0xA0:  # [0] version
        pos = end
    # serialNumber, signature, issuer, validity, subject
    for _ in range(5):
        _, _, pos = _der_tlv(tbs, pos)
    _, _, end = _der_tlv(tbs, pos)
    return tbs[pos:end]


def _name_fields(name: x509.Name) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for attr in name:
        key = OID_SHORT_NAMES.get(attr.oid) or attr.oid.dotted_string
        value = attr.value if isinstance(attr.value, str) else attr.value.hex()
        out.append((key, value))
    return tuple(out)


def rfc4514_name(name: x509.Name) -> str:
    try:
        return name.rfc4514_string({NameOID.EMAIL_ADDRESS: "emailAddress"})
    except ValueError:
        return ", ".join(f"{k}={v}" for k, v in _name_fields(name))


def key_usage_names(ku: x509.KeyUsage) -> tuple[str, ...]:
    names = []
    for attr, label in (
        ("digital_signature", "digitalSignature"),
        ("content_commitment", "nonRepudiation"),
        ("key_encipherment", "keyEncipherment"),
        ("data_encipherment", "dataEncipherment"),
        ("key_agreement", "keyAgreement"),
        ("key_cert_sign", "keyCertSign"),
        ("crl_sign", "cRLSign"),
    ):
        if getattr(ku, attr):
            names.append(label)
    if ku.key_agreement:
        if ku.encipher_only:
            names.append("encipherOnly")
        if ku.decipher_only:
            names.append("decipherOnly")
    return tuple(names)


def _build(cert: x509.Certificate, der: bytes) -> Certificate:
    try:
        extensions = cert.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise ParseError(f"The certificate has malformed extensions: {exc}.") from exc

    def ext(cls: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType] | None:
        try:
            return extensions.get_extension_for_class(cls)
        except x509.ExtensionNotFound:
            return None

    subject, issuer = cert.subject, cert.issuer
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = cns[0].value if cns and isinstance(cns[0].value, str) else None

    san_dns: tuple[str, ...] = ()
    san_ip: tuple[str, ...] = ()
    san_uri: tuple[str, ...] = ()
    san_email: tuple[str, ...] = ()
    san_dir_names: tuple[ComparableName, ...] = ()
    san_other: tuple[str, ...] = ()
    san_ext = ext(x509.SubjectAlternativeName)
    if san_ext is not None:
        san = san_ext.value
        assert isinstance(san, x509.SubjectAlternativeName)
        san_dns = tuple(san.get_values_for_type(x509.DNSName))
        san_ip = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
        san_uri = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        san_email = tuple(san.get_values_for_type(x509.RFC822Name))
        san_dir_names = tuple(
            comparable_name(n) for n in san.get_values_for_type(x509.DirectoryName)
        )
        san_other = tuple(_other_form(g) for g in san if _other_form(g))

    key_usage: tuple[str, ...] | None = None
    ku_ext = ext(x509.KeyUsage)
    if ku_ext is not None:
        assert isinstance(ku_ext.value, x509.KeyUsage)
        key_usage = key_usage_names(ku_ext.value)

    eku: tuple[str, ...] | None = None
    eku_ext = ext(x509.ExtendedKeyUsage)
    if eku_ext is not None:
        assert isinstance(eku_ext.value, x509.ExtendedKeyUsage)
        eku = tuple(EKU_NAMES.get(oid) or oid.dotted_string for oid in eku_ext.value)

    is_ca, path_length, bc_present = False, None, False
    bc_ext = ext(x509.BasicConstraints)
    if bc_ext is not None:
        assert isinstance(bc_ext.value, x509.BasicConstraints)
        is_ca, path_length, bc_present = bc_ext.value.ca, bc_ext.value.path_length, True

    ski: str | None = None
    ski_ext = ext(x509.SubjectKeyIdentifier)
    if ski_ext is not None:
        assert isinstance(ski_ext.value, x509.SubjectKeyIdentifier)
        ski = ski_ext.value.digest.hex()
    aki: str | None = None
    aki_ext = ext(x509.AuthorityKeyIdentifier)
    if aki_ext is not None:
        assert isinstance(aki_ext.value, x509.AuthorityKeyIdentifier)
        if aki_ext.value.key_identifier is not None:
            aki = aki_ext.value.key_identifier.hex()

    key_type, key_size, curve = _public_key_facts(cert)
    sig_oid = cert.signature_algorithm_oid
    sig_name = getattr(sig_oid, "_name", None) or sig_oid.dotted_string
    if sig_name == "Unknown OID":
        sig_name = sig_oid.dotted_string
    try:
        hash_alg = cert.signature_hash_algorithm
        sig_hash = hash_alg.name if hash_alg is not None else None
    except UnsupportedAlgorithm:
        sig_hash = None
    if sig_hash is None and any(h in sig_name.lower() for h in ("md5", "sha1", "md2")):
        sig_hash = next(h for h in ("md5", "sha1", "md2") if h in sig_name.lower())

    subject_der = subject.public_bytes()
    issuer_der = issuer.public_bytes()
    self_signed = subject_der == issuer_der and (aki is None or ski is None or aki == ski)

    if key_type in ("RSA", "DSA"):
        weak_key = key_size < 2048
    elif key_type == "EC":
        weak_key = key_size < 224
    else:
        weak_key = False

    try:
        spki = _spki_der(cert.tbs_certificate_bytes)
    except ValueError as exc:
        raise ParseError(f"The certificate's public key could not be located: {exc}.") from exc

    name_constraints: NameConstraints | None = None
    nc_ext = ext(x509.NameConstraints)
    if nc_ext is not None:
        assert isinstance(nc_ext.value, x509.NameConstraints)
        name_constraints = NameConstraints(
            permitted=tuple(_subtree(g) for g in nc_ext.value.permitted_subtrees or ()),
            excluded=tuple(_subtree(g) for g in nc_ext.value.excluded_subtrees or ()),
        )

    version = 1 if cert.version == x509.Version.v1 else 3
    return Certificate(
        der=der,
        fingerprint=hashlib.sha256(der).hexdigest(),
        fingerprint_sha1=hashlib.sha1(der, usedforsecurity=False).hexdigest(),
        spki_fingerprint=hashlib.sha256(spki).hexdigest(),
        version=version,
        subject=rfc4514_name(subject),
        subject_fields=_name_fields(subject),
        subject_der=subject_der,
        issuer=rfc4514_name(issuer),
        issuer_fields=_name_fields(issuer),
        issuer_der=issuer_der,
        common_name=common_name,
        serial=format(cert.serial_number, "x")
        if cert.serial_number >= 0
        else "-" + format(-cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc.astimezone(UTC),
        not_after=cert.not_valid_after_utc.astimezone(UTC),
        public_key_type=key_type,
        public_key_size=key_size,
        public_key_curve=curve,
        signature_algorithm=sig_name,
        signature_hash=sig_hash,
        san_dns=san_dns,
        san_ip=san_ip,
        san_uri=san_uri,
        san_email=san_email,
        has_san=san_ext is not None,
        key_usage=key_usage,
        extended_key_usage=eku,
        is_ca=is_ca,
        path_length=path_length,
        basic_constraints_present=bc_present,
        subject_key_id=ski,
        authority_key_id=aki,
        self_signed=self_signed,
        weak_key=weak_key,
        weak_signature=(sig_hash or "").lower() in _WEAK_HASHES,
        critical_extensions=tuple(e.oid.dotted_string for e in extensions if e.critical),
        name_constraints=name_constraints,
        subject_name=comparable_name(subject),
        subject_emails=tuple(
            a.value
            for a in subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
            if isinstance(a.value, str)
        ),
        san_dir_names=san_dir_names,
        san_other=san_other,
        explicit_curve=_explicit_curve(spki),
        x509=cert,
    )


def comparable_name(name: x509.Name) -> ComparableName:
    """``name`` as name constraints compare it (RFC 5280 §7.1, simplified to casefolding
    and collapsed white space, which never makes an excluded name slip through)."""
    return tuple(
        tuple(sorted((a.oid.dotted_string, _fold(a.value)) for a in rdn)) for rdn in name.rdns
    )


def _fold(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.hex()
    return " ".join(value.casefold().split())


def _subtree(name: x509.GeneralName) -> GeneralSubtree:
    if isinstance(name, x509.DNSName):
        return GeneralSubtree(kind="DNS", value=name.value)
    if isinstance(name, x509.IPAddress):
        network = name.value
        if not isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network):
            network = ipaddress.ip_network(network)  # a bare address is a /32 or /128
        return GeneralSubtree(kind="IP", value=str(network), network=network)
    if isinstance(name, x509.RFC822Name):
        return GeneralSubtree(kind="email", value=name.value)
    if isinstance(name, x509.UniformResourceIdentifier):
        return GeneralSubtree(kind="URI", value=name.value)
    if isinstance(name, x509.DirectoryName):
        return GeneralSubtree(
            kind="DirName", value=rfc4514_name(name.value), name=comparable_name(name.value)
        )
    return GeneralSubtree(kind=_other_form(name) or type(name).__name__, value="")


def _other_form(name: x509.GeneralName) -> str:
    """A label for the SAN forms name constraints do not process; "" for those they do."""
    if isinstance(name, x509.OtherName):
        return f"otherName:{name.type_id.dotted_string}"
    if isinstance(name, x509.RegisteredID):
        return f"registeredID:{name.value.dotted_string}"
    if isinstance(
        name,
        x509.DNSName
        | x509.IPAddress
        | x509.RFC822Name
        | x509.UniformResourceIdentifier
        | x509.DirectoryName,
    ):
        return ""
    return type(name).__name__


# id-ecPublicKey; its parameters are a named curve OID (tag 6) or explicit (a SEQUENCE).
_EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")


def _explicit_curve(spki: bytes) -> bool:
    """Whether the SubjectPublicKeyInfo is an EC key with explicit curve parameters."""
    try:
        _, pos, _ = _der_tlv(spki, 0)  # SubjectPublicKeyInfo SEQUENCE
        _, alg_pos, _ = _der_tlv(spki, pos)  # AlgorithmIdentifier SEQUENCE
        _, _, oid_end = _der_tlv(spki, alg_pos)
    except ValueError:
        return False
    if spki[alg_pos:oid_end] != _EC_PUBLIC_KEY:
        return False
    return oid_end < len(spki) and spki[oid_end] == 0x30


def _serial_hex(serial: int) -> str:
    return format(serial, "x") if serial >= 0 else "-" + format(-serial, "x")


def _public_key_facts(cert: x509.Certificate) -> tuple[str, int, str | None]:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return cert.public_key_algorithm_oid.dotted_string, 0, None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size, key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, None
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456, None
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, None
    return type(key).__name__, 0, None


def chain_fingerprints(chain: Sequence[Certificate]) -> tuple[str, ...]:
    return tuple(c.fingerprint for c in chain)
