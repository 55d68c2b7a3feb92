"""The device identity: the gateway's own certificate chain and private key (DESIGN §6).

Pure logic with cryptography but no I/O and no clock reads (``now`` is a parameter):
key specs, subject and SAN validation, the standard self-signed identity, self-signed
certificates and signing requests made from an :class:`IdentitySpec`, and the checks
that turn an upload (a CA's response, a PEM chain with its key, a PKCS#12 file) into a
chain ordered leaf → root with a key that matches it. Everything refused raises a
:class:`~certstore.errors.CertStoreError` subclass whose message says what to do.

Private keys leave this module as unencrypted PKCS#8 PEM (the store file is 0600).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certstore import notation
from certstore.errors import Conflict, InputError, ParseError, ValidationError
from certstore.model import Certificate, CertStatus
from certstore.x509 import load_certificates, parse_der, spki_fingerprint_of_key, to_pem

# Types of private key the device identity can hold.
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# How far a new certificate's notBefore is set back, for peers whose clocks run late.
BACKDATE = timedelta(hours=1)
STANDARD_VALIDITY_DAYS = 3650
MAX_VALIDITY_DAYS = 36500
# An upload for the device identity (chain, key, PKCS#12) is never larger than this.
MAX_IDENTITY_INPUT_BYTES = 256 * 1024
# RSA keys below this are refused even where weak keys are allowed.
MIN_RSA_BITS = 1024
STRONG_RSA_BITS = 2048


# -- errors ------------------------------------------------------------------------------


class KeyMismatch(InputError):
    """The certificate's public key is not the one of the private key it must go with."""

    code = "key-mismatch"

    def __init__(self, message: str, *, expected: str, found: tuple[str, ...]) -> None:
        super().__init__(message)
        self.expected = expected  # SPKI SHA-256 of the key the certificate must carry
        self.found = found  # SPKI SHA-256 of every certificate that was offered


class MissingKey(InputError):
    """A chain was uploaded without the private key it needs."""

    code = "missing-key"


class BadPassphrase(InputError):
    """An encrypted key or PKCS#12 file needs a passphrase that was not given or is wrong."""

    code = "bad-passphrase"


class ChainError(InputError):
    """The certificates do not form one chain from the device certificate upwards."""

    code = "bad-chain"

    def __init__(self, message: str, *, fingerprints: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fingerprints = fingerprints  # the certificates that do not fit


class NotValidNow(InputError):
    """The device certificate is expired or not yet valid."""

    code = "not-valid-now"

    def __init__(self, message: str, *, status: CertStatus, fingerprint: str) -> None:
        super().__init__(message)
        self.status = status
        self.fingerprint = fingerprint


class NotForTls(InputError):
    """The certificate's key usage or extended key usage forbids TLS use."""

    code = "not-for-tls"

    def __init__(self, message: str, *, fingerprint: str) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


class NoPendingRequest(Conflict):
    """A CA's response was uploaded but no signing request is pending."""

    code = "no-pending-request"


# -- key specs ---------------------------------------------------------------------------


class KeySpec(StrEnum):
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    RSA_1024 = "rsa-1024"  # only where the config allows weak keys; flagged weak
    REUSE = "reuse"  # the current identity's key

    @property
    def weak(self) -> bool:
        return self is KeySpec.RSA_1024


DEFAULT_KEY_SPEC = KeySpec.EC_P256

_RSA_BITS = {
    KeySpec.RSA_1024: 1024,
    KeySpec.RSA_2048: 2048,
    KeySpec.RSA_3072: 3072,
    KeySpec.RSA_4096: 4096,
}
_CURVES: dict[KeySpec, type[ec.EllipticCurve]] = {
    KeySpec.EC_P256: ec.SECP256R1,
    KeySpec.EC_P384: ec.SECP384R1,
}


def available_key_specs(*, allow_weak: bool) -> tuple[KeySpec, ...]:
    """The key specs an operator may choose, in the order a form lists them."""
    return tuple(s for s in KeySpec if allow_weak or not s.weak)


def parse_key_spec(text: str | KeySpec, *, allow_weak: bool) -> KeySpec:
    """Turn ``"ec-p256"``, ``"rsa-4096"``, ``"reuse"`` ... into a :class:`KeySpec`."""
    try:
        spec = KeySpec(str(text).strip().lower())
    except ValueError:
        choices = ", ".join(available_key_specs(allow_weak=allow_weak))
        raise ValidationError(
            "key", f'Unknown key type "{text}"; choose one of {choices}.'
        ) from None
    if spec.weak and not allow_weak:
        raise ValidationError(
            "key",
            f"The key type {spec} is weak and not allowed; set gateway.allow_weak_keys = true "
            "in the config only if a device cannot use 2048-bit RSA or ECDSA.",
        )
    return spec


def generate_private_key(spec: KeySpec) -> PrivateKey:
    """A fresh key for ``spec`` (RSA-4096 takes a second or more: call it off the loop)."""
    if spec in _CURVES:
        return ec.generate_private_key(_CURVES[spec]())
    if spec in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[spec])
    raise ValidationError("key", f"The key type {spec} does not name a new key.")


def key_spec_of(key: PrivateKey) -> str:
    """The spec name that describes an existing key (``ec-p256``, ``rsa-3072``, ...)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}.get(
            key.curve.name, f"ec-{key.curve.name}"
        )
    return f"rsa-{key.key_size}"


def key_is_weak(key: PrivateKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bool:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return key.key_size < STRONG_RSA_BITS
    return key.curve.key_size < 224


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM: the form in which the store keeps device keys."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes, passphrase: bytes | None = None) -> PrivateKey:
    """Read a PEM (PKCS#8, traditional, encrypted or not) or DER private key."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if b"-----BEGIN" in pem:
                key = serialization.load_pem_private_key(pem, password=passphrase or None)
            else:
                key = serialization.load_der_private_key(pem, password=passphrase or None)
    except TypeError as exc:
        if passphrase:
            raise BadPassphrase(
                "The private key is not encrypted, but a passphrase was given; "
                "upload it without a passphrase."
            ) from exc
        raise BadPassphrase(
            "The private key is encrypted; give its passphrase to install it."
        ) from exc
    except ValueError as exc:
        if _is_encrypted_key(pem):
            raise BadPassphrase(
                "The passphrase does not decrypt the private key; check it and try again."
            ) from exc
        raise ParseError(f"The private key could not be read: {exc}.") from exc
    except UnsupportedAlgorithm as exc:
        raise ParseError(f"The private key uses an unsupported algorithm: {exc}.") from exc
    return _check_key_type(key)


def _is_encrypted_key(data: bytes) -> bool:
    if b"-----BEGIN" in data:
        return b"ENCRYPTED PRIVATE KEY" in data or b"Proc-Type: 4,ENCRYPTED" in data
    # DER EncryptedPrivateKeyInfo: SEQUENCE { SEQUENCE { OID ... } ... } — the inner
    # SEQUENCE comes first, where a PrivateKeyInfo starts with an INTEGER version.
    return len(data) > 4 and data[0] == 0x30 and 0x30 in data[2:5]


def _check_key_type(key: object) -> PrivateKey:
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValidationError(
                "key",
                f"The RSA key has {key.key_size} bits; the device identity needs at least "
                f"{STRONG_RSA_BITS} ({MIN_RSA_BITS} only where weak keys are allowed).",
            )
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise ValidationError(
                "key",
                f"The EC key is on the curve {key.curve.name}; TLS peers expect P-256, P-384 "
                "or P-521.",
            )
        return key
    raise ValidationError(
        "key",
        f"The private key is of type {type(key).__name__}; the device identity needs an RSA "
        "or ECDSA key.",
    )


# -- subject and subject alternative names -------------------------------------------------

# Field name → (OID, upper bound from RFC 5280 Appendix A.1, human name).
SUBJECT_FIELDS: dict[str, tuple[x509.ObjectIdentifier, int, str]] = {
    "CN": (NameOID.COMMON_NAME, 64, "common name"),
    "O": (NameOID.ORGANIZATION_NAME, 64, "organisation"),
    "OU": (NameOID.ORGANIZATIONAL_UNIT_NAME, 64, "organisational unit"),
    "L": (NameOID.LOCALITY_NAME, 128, "locality"),
    "ST": (NameOID.STATE_OR_PROVINCE_NAME, 128, "state or province"),
    "C": (NameOID.COUNTRY_NAME, 2, "country"),
    "emailAddress": (NameOID.EMAIL_ADDRESS, 255, "e-mail address"),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EMAIL = re.compile(r"^[!-?A-~]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class InvalidFields(ValidationError):
    """Several fields of one request are wrong; ``errors`` holds one error per field."""

    def __init__(self, errors: Sequence[ValidationError]) -> None:
        super().__init__(errors[0].field, " ".join(str(e) for e in errors))
        self.errors = tuple(errors)


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    """A validated subject: the common name and the optional naming fields."""

    common_name: str
    organization: str | None = None
    organizational_unit: str | None = None
    locality: str | None = None
    state: str | None = None
    country: str | None = None
    email: str | None = None

    def fields(self) -> tuple[tuple[str, str], ...]:
        """(short name, value) pairs in the order they appear in the name."""
        pairs = (
            ("C", self.country),
            ("ST", self.state),
            ("L", self.locality),
            ("O", self.organization),
            ("OU", self.organizational_unit),
            ("CN", self.common_name),
            ("emailAddress", self.email),
        )
        return tuple((k, v) for k, v in pairs if v is not None)

    def to_name(self) -> x509.Name:
        attrs = []
        for key, value in self.fields():
            oid = SUBJECT_FIELDS[key][0]
            # cryptography encodes C as PrintableString and emailAddress as IA5String.
            attrs.append(x509.NameAttribute(oid, value))
        return x509.Name(attrs)


_SUBJECT_ATTRS = {
    "CN": "common_name",
    "O": "organization",
    "OU": "organizational_unit",
    "L": "locality",
    "ST": "state",
    "C": "country",
    "emailAddress": "email",
}
_SUBJECT_ALIASES = {k.lower(): k for k in SUBJECT_FIELDS} | {
    "common_name": "CN",
    "commonname": "CN",
    "organization": "O",
    "organisation": "O",
    "organizational_unit": "OU",
    "organisational_unit": "OU",
    "locality": "L",
    "state": "ST",
    "country": "C",
    "email": "emailAddress",
    "e": "emailAddress",
}


def _check_subject_field(key: str, raw: object) -> str | None:
    """The cleaned value of one subject field; None for an empty optional field."""
    _, limit, human = SUBJECT_FIELDS[key]
    if raw is None:
        value = ""
    elif isinstance(raw, str):
        value = raw.strip()
    else:
        raise ValidationError(key, f"The {human} ({key}) must be text, not {raw!r}.")
    if not value:
        if key == "CN":
            raise ValidationError(
                "CN", "The common name (CN) is required; use the device's host name."
            )
        return None
    if _CONTROL.search(value):
        raise ValidationError(key, f"The {human} ({key}) {value!r} contains control characters.")
    if key == "C":
        if not (len(value) == 2 and value.isascii() and value.isalpha()):
            raise ValidationError(
                "C", f'The country (C) must be a two-letter ISO 3166 code like "DE", not {value!r}.'
            )
        return value.upper()
    if len(value) > limit:
        raise ValidationError(
            key,
            f"The {human} ({key}) is {len(value)} characters long; RFC 5280 allows at most "
            f"{limit}.",
        )
    if key == "emailAddress" and not (value.isascii() and _EMAIL.match(value)):
        raise ValidationError(
            "emailAddress",
            f"The e-mail address {value!r} is not of the form name@domain (ASCII only).",
        )
    return value


def validate_subject(values: Mapping[str, object]) -> Subject:
    """Validate a subject given as field → value (``CN``, ``O``, ``OU``, ``L``, ``ST``,
    ``C``, ``emailAddress``, or their long names). Every wrong field is reported."""
    cleaned: dict[str, str | None] = {}
    errors: list[ValidationError] = []
    for raw_key, raw_value in values.items():
        key = _SUBJECT_ALIASES.get(raw_key.lower().replace("-", "_"))
        if key is None:
            errors.append(
                ValidationError(
                    raw_key,
                    f'Unknown subject field "{raw_key}"; use CN, O, OU, L, ST, C or emailAddress.',
                )
            )
            continue
        try:
            cleaned[key] = _check_subject_field(key, raw_value)
        except ValidationError as exc:
            errors.append(exc)
    if "CN" not in cleaned and not any(e.field == "CN" for e in errors):
        errors.insert(
            0,
            ValidationError("CN", "The common name (CN) is required; use the device's host name."),
        )
    _raise_all(errors)
    return Subject(**{_SUBJECT_ATTRS[k]: v for k, v in cleaned.items() if v is not None})


def _raise_all(errors: Sequence[ValidationError]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise InvalidFields(errors)


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectAltNames:
    """Validated subject alternative names: DNS names, IP addresses and URIs."""

    dns: tuple[str, ...] = ()
    ip: tuple[str, ...] = ()
    uri: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.dns or self.ip or self.uri)

    def to_extension(self) -> x509.SubjectAlternativeName:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in self.ip]
        names += [x509.UniformResourceIdentifier(u) for u in self.uri]
        return x509.SubjectAlternativeName(names)


def validate_dns_name(text: str, *, field: str = "san_dns") -> str:
    """A DNS name as it goes into a certificate: lowercase A-labels, no trailing dot; a
    wildcard is allowed only as the whole leftmost label."""
    name = text.strip().rstrip(".")
    if not name:
        raise ValidationError(field, "A DNS name is empty.")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValidationError(
                field, f"The DNS name {text!r} is not a valid internationalised name: {exc}."
            ) from exc
    name = name.lower()
    if len(name) > 253:
        raise ValidationError(
            field, f"The DNS name {text!r} is {len(name)} characters long; at most 253 fit."
        )
    labels = name.split(".")
    for position, label in enumerate(labels):
        if label == "*" and position == 0 and len(labels) > 2:
            continue
        if not _LABEL.match(label):
            raise ValidationError(
                field,
                f"The DNS name {text!r} has an invalid label {label!r}: labels are 1-63 "
                "letters, digits or hyphens, not starting or ending with a hyphen"
                + (" (a wildcard must be the whole leftmost label)." if "*" in label else "."),
            )
    return name


def validate_ip(text: str, *, field: str = "san_ip") -> str:
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        raise ValidationError(field, f"{text!r} is not an IPv4 or IPv6 address.") from None


def validate_uri(text: str, *, field: str = "san_uri") -> str:
    """A URI SAN such as ``sip:example.com`` (RFC 5922) or ``https://host/``."""
    uri = text.strip()
    if not uri.isascii() or _CONTROL.search(uri) or " " in uri:
        raise ValidationError(
            field, f"The URI {text!r} must be ASCII without spaces or control characters."
        )
    if not _URI_SCHEME.match(uri) or uri.endswith(":"):
        raise ValidationError(
            field, f'The URI {text!r} needs a scheme and a value, like "sip:example.com".'
        )
    scheme, _, rest = uri.partition(":")
    if scheme.lower() in ("sip", "sips"):
        host = rest.split(";", 1)[0].rsplit("@", 1)[-1]
        host_only = host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]
        try:
            validate_ip(host_only, field=field)
        except ValidationError:
            validate_dns_name(host_only, field=field)
        uri = scheme.lower() + ":" + rest
    if len(uri) > 2048:
        raise ValidationError(field, f"The URI is {len(uri)} characters long; at most 2048 fit.")
    return uri


def validate_sans(
    *, dns: Iterable[str] = (), ip: Iterable[str] = (), uri: Iterable[str] = ()
) -> SubjectAltNames:
    """Validate every name; duplicates are kept once. Every wrong name is reported."""
    errors: list[ValidationError] = []

    def collect(values: Iterable[str], check: object, field: str) -> tuple[str, ...]:
        out: list[str] = []
        for index, value in enumerate(values):
            try:
                out.append(check(value, field=f"{field}[{index}]"))  # type: ignore[operator]
            except ValidationError as exc:
                errors.append(exc)
        return tuple(dict.fromkeys(out))

    sans = SubjectAltNames(
        dns=collect(dns, validate_dns_name, "san_dns"),
        ip=collect(ip, validate_ip, "san_ip"),
        uri=collect(uri, validate_uri, "san_uri"),
    )
    _raise_all(errors)
    return sans


def parse_san_items(items: Iterable[str]) -> SubjectAltNames:
    """SANs written as ``DNS:name``, ``IP:address``, ``URI:sip:domain`` or bare values
    (an address is an IP SAN, a value with a scheme a URI, anything else a DNS name)."""
    dns, ips, uris = split_san_items(items)
    return validate_sans(dns=dns, ip=ips, uri=uris)


def split_san_items(items: Iterable[str]) -> tuple[list[str], list[str], list[str]]:
    """Sort SAN items (as for :func:`parse_san_items`) into DNS, IP and URI lists,
    unvalidated."""
    dns: list[str] = []
    ips: list[str] = []
    uris: list[str] = []
    for item in items:
        prefix, sep, rest = item.partition(":")
        kind = prefix.strip().upper() if sep else ""
        if kind == "DNS":
            dns.append(rest)
        elif kind in ("IP", "IP ADDRESS"):
            ips.append(rest)
        elif kind == "URI":
            uris.append(rest)
        else:
            try:
                ipaddress.ip_address(item.strip().strip("[]"))
            except ValueError:
                (uris if _URI_SCHEME.match(item.strip()) else dns).append(item)
            else:
                ips.append(item)
    return dns, ips, uris


# -- what to create -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentitySpec:
    """What an operator asked for: a self-signed certificate or a signing request."""

    key: KeySpec = DEFAULT_KEY_SPEC
    subject: Subject
    sans: SubjectAltNames = field(default_factory=SubjectAltNames)
    validity_days: int = STANDARD_VALIDITY_DAYS  # self-signed only


def build_spec(
    *,
    subject: Mapping[str, object],
    key: str | KeySpec = DEFAULT_KEY_SPEC,
    san_dns: Iterable[str] = (),
    san_ip: Iterable[str] = (),
    san_uri: Iterable[str] = (),
    validity_days: int = STANDARD_VALIDITY_DAYS,
    allow_weak: bool = False,
) -> IdentitySpec:
    """Validate a form (or CLI options) into an :class:`IdentitySpec`, reporting every
    wrong field at once."""
    errors: list[ValidationError] = []
    parsed: dict[str, object] = {}
    for name, check in (
        ("key", lambda: parse_key_spec(key, allow_weak=allow_weak)),
        ("subject", lambda: validate_subject(subject)),
        ("sans", lambda: validate_sans(dns=san_dns, ip=san_ip, uri=san_uri)),
    ):
        try:
            parsed[name] = check()
        except InvalidFields as exc:
            errors.extend(exc.errors)
        except ValidationError as exc:
            errors.append(exc)
    if isinstance(validity_days, bool) or not isinstance(validity_days, int):
        errors.append(ValidationError("validity_days", "The validity must be a number of days."))
    elif not 1 <= validity_days <= MAX_VALIDITY_DAYS:
        errors.append(
            ValidationError(
                "validity_days",
                f"The validity of {validity_days} days is outside 1 to {MAX_VALIDITY_DAYS}.",
            )
        )
    _raise_all(errors)
    return IdentitySpec(
        key=parsed["key"],  # type: ignore[arg-type]
        subject=parsed["subject"],  # type: ignore[arg-type]
        sans=parsed["sans"],  # type: ignore[arg-type]
        validity_days=validity_days,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityMaterial:
    """A chain (leaf first) with its private key, ready to become the device identity."""

    chain: tuple[Certificate, ...]
    private_key_pem: bytes = field(repr=False)  # unencrypted PKCS#8 PEM
    notes: tuple[str, ...] = ()  # things the operator should know (e.g. no clientAuth)

    @property
    def certificate(self) -> Certificate:
        return self.chain[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class CsrMaterial:
    csr_pem: bytes
    private_key_pem: bytes = field(repr=False)
    key_spec: str


def _signing_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _key_usage(key: PrivateKey) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


_TLS_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


def _self_sign(
    key: PrivateKey,
    subject: x509.Name,
    sans: SubjectAltNames,
    now: datetime,
    validity_days: int,
) -> Certificate:
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key), critical=True)
        .add_extension(_TLS_EKU, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
    )
    if sans:
        builder = builder.add_extension(sans.to_extension(), critical=False)
    cert = builder.sign(key, _signing_hash(key))
    return parse_der(cert.public_bytes(serialization.Encoding.DER))


def standard_sans(
    host_names: Iterable[str], machine_host_name: str | None = None
) -> SubjectAltNames:
    """SANs of the standard identity: the configured host names and IP addresses, plus
    the machine's host name when it is a valid DNS name."""
    dns: list[str] = []
    ips: list[str] = []
    errors: list[ValidationError] = []
    for index, name in enumerate(host_names):
        try:
            ips.append(validate_ip(name, field=f"gateway.host_names[{index}]"))
            continue
        except ValidationError:
            pass
        try:
            dns.append(validate_dns_name(name, field=f"gateway.host_names[{index}]"))
        except ValidationError as exc:
            errors.append(exc)
    _raise_all(errors)
    if machine_host_name:
        # An odd machine name must not stop the first start: it is left out.
        with contextlib.suppress(ValidationError):
            dns.append(validate_dns_name(machine_host_name))
    return SubjectAltNames(dns=tuple(dict.fromkeys(dns)), ip=tuple(dict.fromkeys(ips)))


def generate_standard_identity(
    name: str,
    host_names: Iterable[str],
    now: datetime,
    *,
    machine_host_name: str | None = None,
    key: PrivateKey | None = None,
) -> IdentityMaterial:
    """The standard identity: self-signed, ECDSA P-256 (or ``key`` when renewing with the
    same key), CN = the device name, SANs = host names, valid for ten years."""
    try:
        cn = _check_subject_field("CN", name)
    except ValidationError as exc:
        raise ValidationError("gateway.name", f"The device name (gateway.name): {exc}") from exc
    assert cn is not None
    sans = standard_sans(host_names, machine_host_name)
    key = key or generate_private_key(KeySpec.EC_P256)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = _self_sign(key, subject, sans, now, STANDARD_VALIDITY_DAYS)
    return IdentityMaterial(chain=(cert,), private_key_pem=private_key_pem(key))


def _key_for(spec: KeySpec, current_key_pem: bytes | None) -> PrivateKey:
    if spec is KeySpec.REUSE:
        if current_key_pem is None:
            raise Conflict("There is no current device key to reuse; choose a key type.")
        return load_private_key(current_key_pem)
    return generate_private_key(spec)


def create_self_signed(
    spec: IdentitySpec, now: datetime, *, current_key_pem: bytes | None = None
) -> IdentityMaterial:
    """A self-signed certificate for TLS server and client use, made from ``spec``."""
    key = _key_for(spec.key, current_key_pem)
    cert = _self_sign(key, spec.subject.to_name(), spec.sans, now, spec.validity_days)
    return IdentityMaterial(chain=(cert,), private_key_pem=private_key_pem(key))


def create_csr(spec: IdentitySpec, *, current_key_pem: bytes | None = None) -> CsrMaterial:
    """A PKCS#10 signing request with the SANs, key usage and TLS usages requested."""
    key = _key_for(spec.key, current_key_pem)
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(spec.subject.to_name())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key), critical=True)
        .add_extension(_TLS_EKU, critical=False)
    )
    if spec.sans:
        builder = builder.add_extension(spec.sans.to_extension(), critical=False)
    csr = builder.sign(key, _signing_hash(key))
    return CsrMaterial(
        csr_pem=csr.public_bytes(serialization.Encoding.PEM),
        private_key_pem=private_key_pem(key),
        key_spec=key_spec_of(key) if spec.key is KeySpec.REUSE else str(spec.key),
    )


def load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise ParseError(f"The signing request could not be read: {exc}.") from exc


def csr_der(csr_pem: bytes) -> bytes:
    return load_csr(csr_pem).public_bytes(serialization.Encoding.DER)


# -- installing what a CA or an admin hands over --------------------------------------------


def _public_key(cert: Certificate) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None:
    try:
        key = cert.x509.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) else None


def _issued_by(cert: Certificate, issuer: Certificate) -> bool:
    if cert.issuer_der != issuer.subject_der:
        return False
    try:
        cert.x509.verify_directly_issued_by(issuer.x509)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def order_chain(leaf: Certificate, others: Sequence[Certificate]) -> tuple[Certificate, ...]:
    """Put ``others`` in order above ``leaf`` (leaf → root), following issuer names and
    checking every signature. A certificate that does not fit anywhere is refused."""
    chain = [leaf]
    remaining = [c for c in others if c != leaf]
    while remaining and not chain[-1].self_signed:
        current = chain[-1]
        issuers = [c for c in remaining if _issued_by(current, c)]
        if not issuers:
            named = [c for c in remaining if c.subject_der == current.issuer_der]
            if named:
                raise ChainError(
                    f"The certificate {named[0].display_name!r} has the name of the issuer of "
                    f"{current.display_name!r} but its key did not sign it; upload the "
                    "intermediate certificates the CA sent with this certificate.",
                    fingerprints=tuple(c.fingerprint for c in named),
                )
            break
        chain.append(issuers[0])
        remaining.remove(issuers[0])
    if remaining:
        names = ", ".join(repr(c.display_name) for c in remaining)
        raise ChainError(
            f"{notation.plural(len(remaining), 'certificate')} "
            f"{'does' if len(remaining) == 1 else 'do'} not belong to the chain of "
            f"{leaf.display_name!r}: {names}. Upload only the device certificate and the "
            "CA certificates above it.",
            fingerprints=tuple(c.fingerprint for c in remaining),
        )
    return tuple(chain)


def _check_leaf_for_tls(leaf: Certificate, now: datetime) -> tuple[str, ...]:
    status = leaf.status_at(now)
    if status is CertStatus.EXPIRED:
        raise NotValidNow(
            f"The certificate {leaf.display_name!r} expired on {leaf.not_after.isoformat()}; "
            "ask the CA for a new one.",
            status=status,
            fingerprint=leaf.fingerprint,
        )
    if status is CertStatus.NOT_YET_VALID:
        raise NotValidNow(
            f"The certificate {leaf.display_name!r} is valid only from "
            f"{leaf.not_before.isoformat()}; check the gateway's clock or install it later.",
            status=status,
            fingerprint=leaf.fingerprint,
        )
    notes: list[str] = []
    ku = leaf.key_usage
    if ku is not None:
        usable = {"digitalSignature"}
        if leaf.public_key_type == "RSA":
            usable.add("keyEncipherment")
        if not usable & set(ku):
            raise NotForTls(
                f"The certificate {leaf.display_name!r} has key usage {', '.join(ku) or 'none'}; "
                "TLS needs digitalSignature. Ask the CA for a TLS server certificate.",
                fingerprint=leaf.fingerprint,
            )
        if leaf.public_key_type == "RSA" and "digitalSignature" not in ku:
            notes.append(
                "The certificate lacks the digitalSignature key usage; TLS 1.3 peers will "
                "refuse it."
            )
    eku = leaf.extended_key_usage
    if eku is not None and "anyExtendedKeyUsage" not in eku:
        if "serverAuth" not in eku:
            raise NotForTls(
                f"The certificate {leaf.display_name!r} is issued for {', '.join(eku)}, not "
                "for TLS servers (serverAuth); ask the CA for a TLS server certificate.",
                fingerprint=leaf.fingerprint,
            )
        if "clientAuth" not in eku:
            notes.append(
                "The certificate is not issued for TLS clients (no clientAuth): upstream "
                "servers that ask for a client certificate may refuse it."
            )
    return tuple(notes)


def _finish(
    key: PrivateKey,
    certificates: Sequence[Certificate],
    now: datetime,
    *,
    allow_weak: bool,
    what: str,
) -> IdentityMaterial:
    if key_is_weak(key) and not allow_weak:
        raise ValidationError(
            "key",
            f"The private key is a weak {key_spec_of(key)} key; set gateway.allow_weak_keys = "
            "true only if a device cannot use 2048-bit RSA or ECDSA.",
        )
    expected = spki_fingerprint_of_key(key.public_key())
    by_spki: dict[str, list[Certificate]] = {}
    for cert in certificates:
        public = _public_key(cert)
        if public is not None:
            by_spki.setdefault(spki_fingerprint_of_key(public), []).append(cert)
    leaves = by_spki.get(expected, [])
    if not leaves:
        raise KeyMismatch(
            f"None of the {notation.plural(len(certificates), 'certificate')} in the {what} "
            "is for the private "
            "key it must go with; upload the certificate issued for this key.",
            expected=expected,
            found=tuple(by_spki),
        )
    if len(leaves) > 1:
        raise ChainError(
            f"The {what} holds {len(leaves)} certificates for the same key; upload only one "
            "device certificate.",
            fingerprints=tuple(c.fingerprint for c in leaves),
        )
    leaf = leaves[0]
    chain = order_chain(leaf, [c for c in certificates if c is not leaf])
    notes = list(_check_leaf_for_tls(leaf, now))
    for cert in chain[1:]:
        if cert.status_at(now) is not CertStatus.VALID:
            notes.append(
                f"The CA certificate {cert.display_name!r} is {cert.status_at(now)}; peers "
                "will not accept the chain until the CA sends a current one."
            )
    if leaf.weak_key:
        notes.append("The device key is weak; replace it as soon as the devices allow.")
    return IdentityMaterial(chain=chain, private_key_pem=private_key_pem(key), notes=tuple(notes))


def _load_certs(data: bytes, what: str) -> tuple[Certificate, ...]:
    return load_certificates(data, max_bytes=MAX_IDENTITY_INPUT_BYTES, what=what).certificates


def install_response(
    data: bytes, pending_key_pem: bytes, now: datetime, *, allow_weak: bool = False
) -> IdentityMaterial:
    """The CA's response to the pending signing request (PEM, DER or PKCS#7), with any
    intermediates in any order, checked against the request's private key."""
    certs = _load_certs(data, "CA response")
    key = load_private_key(pending_key_pem)
    try:
        return _finish(key, certs, now, allow_weak=allow_weak, what="CA response")
    except KeyMismatch as exc:
        raise KeyMismatch(
            "The uploaded certificate was not issued for the pending signing request (its "
            "public key differs); upload the certificate the CA issued for this request, or "
            "a chain with its own private key.",
            expected=exc.expected,
            found=exc.found,
        ) from exc


_KEY_BLOCK = re.compile(
    rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.*?-----END \1-----\r?\n?",
    re.DOTALL,
)


def split_key_blocks(data: bytes) -> tuple[bytes, tuple[bytes, ...]]:
    """Separate the private key PEM blocks from the rest of a PEM file."""
    keys = tuple(m.group(0) for m in _KEY_BLOCK.finditer(data))
    return _KEY_BLOCK.sub(b"", data), keys


def has_private_key(data: bytes) -> bool:
    return bool(_KEY_BLOCK.search(data))


def install_chain(
    chain_data: bytes,
    key_pem: bytes | None,
    passphrase: bytes | None,
    now: datetime,
    *,
    allow_weak: bool = False,
) -> IdentityMaterial:
    """A certificate chain with its private key: the key in ``key_pem`` or in the same PEM
    as the chain (encrypted keys need ``passphrase``). Any certificate order is accepted
    as long as the certificates link up to the one that matches the key."""
    if len(chain_data) > MAX_IDENTITY_INPUT_BYTES:
        raise ParseError(
            f"The chain is {len(chain_data)} bytes; a device chain is never over "
            f"{MAX_IDENTITY_INPUT_BYTES} bytes."
        )
    rest, embedded = split_key_blocks(chain_data)
    if key_pem is None:
        if not embedded:
            raise MissingKey(
                "The upload holds certificates but no private key; upload the chain together "
                "with its key, or the CA's response to the pending signing request."
            )
        if len(embedded) > 1:
            raise InputError("The upload holds more than one private key; keep only the device's.")
        key_pem = embedded[0]
    elif embedded:
        raise InputError(
            "A private key was given both inside the chain file and separately; give it once."
        )
    if b"-----BEGIN" in key_pem and not has_private_key(key_pem):
        raise MissingKey("The key file holds no private key PEM block.")
    key = load_private_key(key_pem, passphrase)
    if not rest.strip():
        raise ParseError("The upload holds a private key but no certificate.")
    certs = _load_certs(rest, "chain")
    return _finish(key, certs, now, allow_weak=allow_weak, what="chain")


def looks_like_pkcs12(data: bytes) -> bool:
    """Whether the bytes are a DER structure that starts like a PKCS#12 PFX."""
    # PFX ::= SEQUENCE { version INTEGER (3), ... }
    return len(data) > 8 and data[0] == 0x30 and b"\x02\x01\x03" in data[1:8]


def _der_complete(data: bytes) -> bool:
    if len(data) < 2 or data[0] != 0x30:
        return False
    length = data[1]
    pos = 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            return False
        length = int.from_bytes(data[2 : 2 + count], "big")
        pos += count
    return pos + length == len(data)


def install_pkcs12(
    data: bytes, passphrase: bytes | None, now: datetime, *, allow_weak: bool = False
) -> IdentityMaterial:
    """A PKCS#12 (.p12/.pfx) file with the device key, its certificate and CA certificates."""
    if len(data) > MAX_IDENTITY_INPUT_BYTES:
        raise ParseError(
            f"The PKCS#12 file is {len(data)} bytes; a device identity is never over "
            f"{MAX_IDENTITY_INPUT_BYTES} bytes."
        )
    if not _der_complete(data):
        raise ParseError(
            "The PKCS#12 file is truncated or damaged (its length does not match its "
            "contents); export it again."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = pkcs12.load_pkcs12(data, passphrase or None)
    except (ValueError, TypeError) as exc:
        message = str(exc).lower()
        if "password" in message or "mac" in message:
            if passphrase:
                raise BadPassphrase(
                    "The passphrase does not open the PKCS#12 file; check it and try again."
                ) from exc
            raise BadPassphrase(
                "The PKCS#12 file is protected by a passphrase; give it to install the file."
            ) from exc
        raise ParseError(f"The PKCS#12 file could not be read: {exc}.") from exc
    except UnsupportedAlgorithm as exc:
        raise ParseError(f"The PKCS#12 file uses an unsupported algorithm: {exc}.") from exc
    if loaded.key is None:
        raise MissingKey(
            "The PKCS#12 file holds no private key; export it again with the private key."
        )
    key = _check_key_type(loaded.key)
    x509_certs = []
    if loaded.cert is not None:
        x509_certs.append(loaded.cert.certificate)
    x509_certs += [c.certificate for c in loaded.additional_certs]
    if not x509_certs:
        raise ParseError("The PKCS#12 file holds a private key but no certificate.")
    certs = tuple(
        dict.fromkeys(parse_der(c.public_bytes(serialization.Encoding.DER)) for c in x509_certs)
    )
    return _finish(key, certs, now, allow_weak=allow_weak, what="PKCS#12 file")


# -- export --------------------------------------------------------------------------------


class ExportFormat(StrEnum):
    PEM = "pem"  # the whole chain, leaf first
    DER = "der"  # the device certificate alone (DER holds one certificate)
    P7B = "p7b"  # the whole chain as a PKCS#7 bundle (DER)


def export_chain(chain: Sequence[Certificate], fmt: ExportFormat | str = ExportFormat.PEM) -> bytes:
    fmt = ExportFormat(fmt)
    if fmt is ExportFormat.PEM:
        return to_pem(chain)
    if fmt is ExportFormat.DER:
        return chain[0].der
    return pkcs7.serialize_certificates([c.x509 for c in chain], serialization.Encoding.DER)


# OpenSSL refuses longer passphrases for PEM encryption (it raises instead of saying so).
MAX_EXPORT_PASSPHRASE = 1023


def export_with_key(
    chain: Sequence[Certificate], key_pem: bytes, *, passphrase: bytes | None = None
) -> bytes:
    """The chain (leaf first) followed by the private key as PKCS#8 PEM — unencrypted
    unless a passphrase is given."""
    key_out = key_pem
    if passphrase:
        if len(passphrase) > MAX_EXPORT_PASSPHRASE:
            raise ValidationError(
                "passphrase",
                f"The export passphrase is {len(passphrase)} bytes long; use at most "
                f"{MAX_EXPORT_PASSPHRASE} (OpenSSL's limit for encrypted PEM keys).",
            )
        key = load_private_key(key_pem)
        key_out = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
    return to_pem(chain) + key_out


def key_matches_certificate(key_pem: bytes, cert: Certificate) -> bool:
    """Whether the private key belongs to the certificate (same public key)."""
    public = _public_key(cert)
    if public is None:
        return False
    return spki_fingerprint_of_key(
        load_private_key(key_pem).public_key()
    ) == spki_fingerprint_of_key(public)
