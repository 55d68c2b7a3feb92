"""The test PKI: every certificate the tests need, made on the spot, relative to ``now``.

``CertFactory(now=...)`` issues roots, intermediates, leaves and self-signed
certificates with any key type, names, usages, validity and extra extensions.
``CertFactory()`` takes the real time, for live TLS handshakes; pure tests pass the
``now`` they decide at. Validity is always relative to that ``now`` unless a test
gives explicit ``not_before``/``not_after``.

cryptography refuses to sign SHA-1, cannot write X.509 version 1 certificates and
cannot encode EC keys with explicit curve parameters; ``openssl_issue`` makes those
with the ``openssl ca`` command, from the same options and the same dates.

Keys: each certificate gets a fresh key unless ``key=`` passes one. ``make_key(spec,
slot)`` returns one cached key per (spec, slot), which keeps RSA/DSA tests fast and
lets a test reuse a key on purpose (a renewal, a cross-certificate).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Literal, TypedDict, Unpack

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certstore.model import Certificate
from certstore.x509 import parse_der

KeySpec = Literal["ec", "ec-p384", "ec-p192", "rsa1024", "rsa2048", "ed25519", "ed448", "dsa2048"]
PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)
PublicKey = (
    rsa.RSAPublicKey
    | ec.EllipticCurvePublicKey
    | ed25519.Ed25519PublicKey
    | ed448.Ed448PublicKey
    | dsa.DSAPublicKey
)
Digest = Literal["sha1", "sha256", "sha384", "sha512"]
Extensions = Sequence[tuple[x509.ExtensionType, bool]]

CA_KEY_USAGE = ("digitalSignature", "keyCertSign", "cRLSign")
LEAF_KEY_USAGE = ("digitalSignature", "keyEncipherment")

_EKU_OIDS = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "anyExtendedKeyUsage": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}
_KU_ARGS = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
}
_HASHES: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

_KEY_CACHE: dict[tuple[KeySpec, int | str], PrivateKey] = {}


def make_key(spec: KeySpec = "ec", slot: int | str | None = None) -> PrivateKey:
    """A private key of ``spec``; with ``slot``, the same key for every call with that slot."""
    if slot is not None and (spec, slot) in _KEY_CACHE:
        return _KEY_CACHE[(spec, slot)]
    key: PrivateKey
    if spec == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    elif spec == "ec-p384":
        key = ec.generate_private_key(ec.SECP384R1())
    elif spec == "ec-p192":
        key = ec.generate_private_key(ec.SECP192R1())
    elif spec == "rsa1024":
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (weak on purpose)
    elif spec == "rsa2048":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif spec == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif spec == "ed448":
        key = ed448.Ed448PrivateKey.generate()
    elif spec == "dsa2048":
        key = dsa.generate_private_key(key_size=2048)
    else:
        raise ValueError(f"unknown key specification {spec!r}")
    if slot is not None:
        _KEY_CACHE[(spec, slot)] = key
    return key


def key_pem(key: PrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def name(cn: str | None, *, organization: str | None = None) -> x509.Name:
    """``O=organization, CN=cn``, each part only when given (both None: an empty name)."""
    attrs = []
    if organization is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if cn is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


@dataclass(frozen=True)
class Issued:
    """A certificate with its key and the chain above it (issuer first, root last)."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    parents: tuple[Issued, ...] = ()

    @functools.cached_property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @functools.cached_property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @functools.cached_property
    def model(self) -> Certificate:
        """The certificate as sipsgate sees it (parsed once)."""
        return parse_der(self.der)

    @property
    def fingerprint(self) -> str:
        return sha256(self.der).hexdigest()

    @property
    def spki_fingerprint(self) -> str:
        spki = self.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return sha256(spki).hexdigest()

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)

    def chain(self, *, include_root: bool = False) -> tuple[Issued, ...]:
        """This certificate, then the intermediates above it (leaf first)."""
        above = self.parents if include_root else self.parents[:-1]
        return (self, *above)

    def chain_pem(self, *, include_root: bool = False) -> bytes:
        return b"".join(c.pem for c in self.chain(include_root=include_root))

    def write(self, directory: Path, name: str, *, include_root: bool = False) -> tuple[Path, Path]:
        """Write ``name.crt`` (chain, leaf first) and ``name.key``; return both paths."""
        cert_path = directory / f"{name}.crt"
        key_path = directory / f"{name}.key"
        cert_path.write_bytes(self.chain_pem(include_root=include_root))
        key_path.write_bytes(self.key_pem)
        key_path.chmod(0o600)
        return cert_path, key_path


class Options(TypedDict, total=False):
    """Keywords every issuing method takes (see :meth:`CertFactory.issue`)."""

    issuer_name: x509.Name
    signing_key: PrivateKey
    not_before: dt.datetime
    not_after: dt.datetime
    key_usage: Sequence[str] | None
    eku: Sequence[str | x509.ObjectIdentifier] | None
    san_critical: bool
    digest: Digest
    pss: bool
    key_ids: bool
    authority_key_id: bytes
    serial: int


class CertFactory:
    """Issues test certificates relative to ``now`` (the real time when not given).

    Subjects are ``O=sipsgate tests, CN=cn``; ``organization=None`` makes them ``CN=cn``
    only, as the decision tests' messages expect.
    """

    def __init__(
        self, now: dt.datetime | None = None, *, organization: str | None = "sipsgate tests"
    ) -> None:
        self.now = now or dt.datetime.now(dt.UTC)
        self.organization = organization

    def name(self, cn: str | None) -> x509.Name:
        """The subject this factory writes for ``cn``."""
        return name(cn, organization=self.organization)

    def ca(
        self,
        cn: str = "sipsgate Test Root CA",
        *,
        issuer: Issued | None = None,
        key: KeySpec | PrivateKey = "ec",
        valid_days: tuple[float, float] = (-30, 3650),
        path_length: int | None = None,
        subject: x509.Name | None = None,
        extra_extensions: Extensions = (),
        **options: Unpack[Options],
    ) -> Issued:
        """A CA certificate: self-signed root when ``issuer`` is None, else intermediate."""
        options.setdefault("key_usage", CA_KEY_USAGE)
        return self.issue(
            cn,
            issuer=issuer,
            key=key,
            valid_days=valid_days,
            ca=True,
            path_length=path_length,
            subject=subject,
            extra_extensions=extra_extensions,
            **options,
        )

    def leaf(
        self,
        issuer: Issued | None,
        *,
        cn: str | None = "sip.example.test",
        dns: Sequence[str] | None = None,
        ips: Sequence[str] = (),
        uris: Sequence[str] = (),
        emails: Sequence[str] = (),
        san: bool = True,
        key: KeySpec | PrivateKey = "ec",
        valid_days: tuple[float, float] = (-1, 365),
        server_auth: bool = True,
        client_auth: bool = False,
        subject: x509.Name | None = None,
        extra_extensions: Extensions = (),
        **options: Unpack[Options],
    ) -> Issued:
        """An end-entity certificate; self-signed when ``issuer`` is None.

        ``dns`` defaults to the CN when no IP, URI or e-mail name is given. The EKU is
        serverAuth and/or clientAuth unless ``eku`` names it (None: no extension).
        ``san=False`` leaves the subjectAltName out (a CN-only certificate).
        """
        if dns is None:
            dns = (cn,) if cn is not None and not (ips or uris or emails) else ()
        if "eku" not in options:
            options["eku"] = [
                usage
                for usage, wanted in (("serverAuth", server_auth), ("clientAuth", client_auth))
                if wanted
            ] or None
        options.setdefault("key_usage", LEAF_KEY_USAGE)
        return self.issue(
            cn,
            issuer=issuer,
            key=key,
            valid_days=valid_days,
            ca=False,
            dns=dns if san else (),
            ips=ips if san else (),
            uris=uris if san else (),
            emails=emails if san else (),
            san=None if san else False,
            subject=subject,
            extra_extensions=extra_extensions,
            **options,
        )

    def issue(
        self,
        cn: str | None,
        *,
        issuer: Issued | None = None,
        subject: x509.Name | None = None,
        key: KeySpec | PrivateKey = "ec",
        valid_days: tuple[float, float] = (-1, 365),
        ca: bool | None = None,
        path_length: int | None = None,
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
        uris: Sequence[str] = (),
        emails: Sequence[str] = (),
        san: bool | None = None,
        extra_extensions: Extensions = (),
        **options: Unpack[Options],
    ) -> Issued:
        """Issue one certificate with exactly the extensions asked for.

        ``issuer`` None makes it self-signed. ``ca`` None leaves basicConstraints out.
        ``san`` None adds the extension only when names are given; True forces it (even
        empty); False leaves it out. Options: ``signing_key`` signs with another key
        than the issuer's (a broken signature); ``issuer_name`` overrides the issuer
        name written; ``not_before``/``not_after`` override ``valid_days``;
        ``key_usage``/``eku`` by name (None: no extension); ``key_ids`` False leaves
        out the key identifiers; ``authority_key_id`` writes a chosen one.
        ``extra_extensions`` come last; one of a type the factory writes itself
        replaces the factory's.
        """
        own_key = make_key(key) if isinstance(key, str) else key
        cert = self._build(
            subject if subject is not None else self.name(cn),
            own_key.public_key(),
            issuer.key if issuer else own_key,
            issuer,
            valid_days=valid_days,
            ca=ca,
            path_length=path_length,
            names=_general_names(dns, ips, uris, emails),
            san=san,
            extra=extra_extensions,
            options=options,
        )
        return Issued(cert, own_key, _parents(issuer))

    def sign_csr(
        self,
        issuer: Issued,
        request: x509.CertificateSigningRequest | PublicKey,
        *,
        cn: str | None = None,
        dns: Sequence[str] | None = None,
        ips: Sequence[str] = (),
        valid_days: tuple[float, float] = (-1, 90),
        extra_extensions: Extensions = (),
        **options: Unpack[Options],
    ) -> x509.Certificate:
        """What a CA answers to a certificate request: a leaf for the request's key.

        The subject is ``CN=cn``, or the request's own subject when ``cn`` is None (a
        bare public key needs ``cn``); ``dns`` defaults to the CN. EKU
        serverAuth+clientAuth and KU digitalSignature unless given.
        """
        if isinstance(request, x509.CertificateSigningRequest):
            requested = request.public_key()
            if not isinstance(requested, PublicKey):
                raise ValueError(f"cannot certify a {type(requested).__name__}")
            public_key = requested
            subject = request.subject if cn is None else self.name(cn)
        else:
            if cn is None:
                raise ValueError("a bare public key needs cn")
            public_key = request
            subject = self.name(cn)
        if dns is None:
            dns = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        options.setdefault("eku", ("serverAuth", "clientAuth"))
        options.setdefault("key_usage", ("digitalSignature",))
        return self._build(
            subject,
            public_key,
            issuer.key,
            issuer,
            valid_days=valid_days,
            ca=False,
            path_length=None,
            names=_general_names(dns, ips, (), ()),
            san=None,
            extra=extra_extensions,
            options=options,
        )

    def openssl_issue(
        self,
        cn: str,
        *,
        issuer: Issued | None = None,
        key: KeySpec | PrivateKey = "ec",
        valid_days: tuple[float, float] = (-1, 365),
        version1: bool = False,
        explicit_curve: bool = False,
        ca: bool | None = False,
        path_length: int | None = None,
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
        uris: Sequence[str] = (),
        san: bool | None = None,
        subject: x509.Name | None = None,
        extra_extensions: Extensions = (),
        **options: Unpack[Options],
    ) -> Issued:
        """A certificate signed by the ``openssl ca`` command, for what cryptography
        will not make: ``digest="sha1"``, ``version1`` (no extensions at all, so no SAN:
        its identity is its CN), ``explicit_curve`` (the EC key written with explicit
        curve parameters instead of a named curve; ``key`` holds the same private key,
        which signs the same under either encoding). Same options and
        dates as :meth:`issue`; ``signing_key`` and ``pss`` are not supported.
        """
        own_key = make_key(key) if isinstance(key, str) else key
        if explicit_curve and not isinstance(own_key, ec.EllipticCurvePrivateKey):
            raise ValueError("explicit_curve needs an EC key")
        signer = issuer.key if issuer else own_key
        subject_name = subject if subject is not None else self.name(cn)
        extensions = (
            []
            if version1
            else _extensions(
                own_key.public_key(),
                signer.public_key(),
                ca=ca,
                path_length=path_length,
                names=_general_names(dns, ips, uris, ()),
                san=san,
                extra=extra_extensions,
                options=options,
            )
        )
        with tempfile.TemporaryDirectory(prefix="sipsgate-pki-") as tmp:
            work = Path(tmp)
            (work / "index.txt").write_text("")
            serial = options.get("serial", x509.random_serial_number())
            (work / "serial").write_text(f"{serial:x}".zfill(2 * ((serial.bit_length() + 8) // 8)))
            subject_key = work / "subject.key"
            subject_key.write_bytes(_openssl_key_pem(own_key, explicit=explicit_curve))
            signer_key = work / "signer.key"
            signer_key.write_bytes(_openssl_key_pem(signer, explicit=explicit_curve and not issuer))
            config = work / "ca.cnf"
            config.write_text(
                "[ca]\ndefault_ca = test_ca\n[test_ca]\n"
                f"database = {work / 'index.txt'}\nnew_certs_dir = {work}\n"
                f"serial = {work / 'serial'}\npolicy = any\nunique_subject = no\n"
                "email_in_dn = no\ncopy_extensions = none\n[any]\ncommonName = optional\n"
            )
            _openssl(
                "req", "-new", "-utf8", "-key", subject_key,
                "-subj", _openssl_subject(subject_name), "-out", work / "request.csr",
            )  # fmt: skip
            command: list[str | Path] = [
                "ca", "-config", config, "-batch", "-notext", "-preserveDN", "-utf8",
                "-in", work / "request.csr", "-out", work / "cert.pem",
                "-keyfile", signer_key, "-md", options.get("digest", "sha256"),
                "-startdate", _openssl_time(self._not_before(valid_days, options)),
                "-enddate", _openssl_time(self._not_after(valid_days, options)),
            ]  # fmt: skip
            if issuer is None:
                command += ["-selfsign"]
            else:
                (work / "issuer.pem").write_bytes(issuer.pem)
                command += ["-cert", work / "issuer.pem"]
            if extensions:
                ext_file = work / "extensions.cnf"
                ext_file.write_text(_openssl_extensions(extensions))
                command += ["-extfile", ext_file]
            _openssl(*command)
            cert = x509.load_pem_x509_certificate((work / "cert.pem").read_bytes())
        return Issued(cert, own_key, _parents(issuer))

    def openssl_leaf(
        self,
        issuer: Issued | None,
        *,
        cn: str = "sip.example.test",
        dns: tuple[str, ...] = ("sip.example.test",),
        digest: Digest = "sha256",
        version1: bool = False,
        valid_days: int = 365,
    ) -> Issued:
        """An RSA server leaf signed by the ``openssl`` command (see :meth:`openssl_issue`)."""
        return self.openssl_issue(
            cn,
            issuer=issuer,
            key=make_key("rsa2048", slot="openssl-leaf"),
            valid_days=(0, valid_days),
            version1=version1,
            dns=dns,
            digest=digest,
            eku=("serverAuth",),
            key_ids=False,
        )

    def _build(
        self,
        subject: x509.Name,
        public_key: PublicKey,
        issuer_key: PrivateKey,
        issuer: Issued | None,
        *,
        valid_days: tuple[float, float],
        ca: bool | None,
        path_length: int | None,
        names: list[x509.GeneralName],
        san: bool | None,
        extra: Extensions,
        options: Options,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._issuer_name(subject, issuer, options))
            .public_key(public_key)
            .serial_number(options.get("serial", x509.random_serial_number()))
            .not_valid_before(self._not_before(valid_days, options))
            .not_valid_after(self._not_after(valid_days, options))
        )
        extensions = _extensions(
            public_key,
            issuer_key.public_key(),
            ca=ca,
            path_length=path_length,
            names=names,
            san=san,
            extra=extra,
            options=options,
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        signer = options.get("signing_key", issuer_key)
        return _sign(builder, signer, options.get("digest", "sha256"), options.get("pss", False))

    def _not_before(self, valid_days: tuple[float, float], options: Options) -> dt.datetime:
        if "not_before" in options:
            return options["not_before"]
        default = self.now + dt.timedelta(days=valid_days[0])
        if "not_after" in options and options["not_after"] <= default:
            # Expired before the usual start: valid for the usual span, ending then.
            return options["not_after"] - dt.timedelta(days=valid_days[1] - valid_days[0])
        return default

    def _not_after(self, valid_days: tuple[float, float], options: Options) -> dt.datetime:
        if "not_after" in options:
            return options["not_after"]
        default = self.now + dt.timedelta(days=valid_days[1])
        if "not_before" in options and options["not_before"] >= default:
            # Valid only after the usual end: valid for the usual span, starting then.
            return options["not_before"] + dt.timedelta(days=valid_days[1] - valid_days[0])
        return default

    @staticmethod
    def _issuer_name(subject: x509.Name, issuer: Issued | None, options: Options) -> x509.Name:
        if "issuer_name" in options:
            return options["issuer_name"]
        return issuer.cert.subject if issuer is not None else subject


def _parents(issuer: Issued | None) -> tuple[Issued, ...]:
    return (issuer, *issuer.parents) if issuer is not None else ()


def _general_names(
    dns: Sequence[str], ips: Sequence[str], uris: Sequence[str], emails: Sequence[str]
) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.RFC822Name(e) for e in emails]
    return names


def _extensions(
    subject_public: PublicKey,
    issuer_public: PublicKey,
    *,
    ca: bool | None,
    path_length: int | None,
    names: list[x509.GeneralName],
    san: bool | None,
    extra: Extensions,
    options: Options,
) -> list[tuple[x509.ExtensionType, bool]]:
    """The extensions of a certificate, in the order they are written."""
    out: list[tuple[x509.ExtensionType, bool]] = []
    if ca is not None:
        out.append((x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), True))
    key_usage = options.get("key_usage")
    if key_usage is not None:
        flags = dict.fromkeys(_KU_ARGS.values(), False)
        for usage in key_usage:
            flags[_KU_ARGS[usage]] = True
        out.append((x509.KeyUsage(encipher_only=False, decipher_only=False, **flags), True))
    eku = options.get("eku")
    if eku is not None:
        oids = [u if isinstance(u, x509.ObjectIdentifier) else _EKU_OIDS[u] for u in eku]
        out.append((x509.ExtendedKeyUsage(oids), False))
    if san or (san is None and names):
        out.append((x509.SubjectAlternativeName(names), options.get("san_critical", False)))
    if options.get("key_ids", True):
        out.append((x509.SubjectKeyIdentifier.from_public_key(subject_public), False))
        if "authority_key_id" in options:
            aki = x509.AuthorityKeyIdentifier(options["authority_key_id"], None, None)
        else:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public)
        out.append((aki, False))
    replaced = {extension.oid for extension, _ in extra}
    return [(e, c) for e, c in out if e.oid not in replaced] + list(extra)


def _sign(
    builder: x509.CertificateBuilder, signer: PrivateKey, digest: Digest, pss: bool
) -> x509.Certificate:
    if isinstance(signer, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return builder.sign(signer, None)
    if digest not in _HASHES:
        raise ValueError(f"cryptography cannot sign with {digest}: use openssl_issue")
    algorithm = _HASHES[digest]()
    if pss and isinstance(signer, rsa.RSAPrivateKey):
        return builder.sign(
            signer,
            algorithm,
            rsa_padding=padding.PSS(
                mgf=padding.MGF1(algorithm), salt_length=padding.PSS.DIGEST_LENGTH
            ),
        )
    return builder.sign(signer, algorithm)


def _openssl_key_pem(key: PrivateKey, *, explicit: bool) -> bytes:
    pem = key_pem(key)
    if not explicit:
        return pem
    # The same private key, re-encoded with the curve's parameters spelled out.
    return subprocess.run(
        ["openssl", "pkey", "-ec_param_enc", "explicit"],
        input=pem,
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout


def _openssl_subject(subject: x509.Name) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("/", "\\/").replace("+", "\\+")

    return (
        "".join(
            "/" + "+".join(f"{a.rfc4514_attribute_name}={escape(str(a.value))}" for a in rdn)
            for rdn in subject.rdns
        )
        or "/"
    )


def _openssl_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ")


def _openssl_extensions(extensions: Sequence[tuple[x509.ExtensionType, bool]]) -> str:
    """An OpenSSL extension file writing each extension as its exact DER value."""
    lines = []
    for extension, critical in extensions:
        der = ":".join(f"{b:02X}" for b in extension.public_bytes())
        lines.append(f"{extension.oid.dotted_string} = {'critical,' if critical else ''}DER:{der}")
    # openssl ca would add key identifiers of its own: only ours are written.
    if not any(isinstance(e, x509.SubjectKeyIdentifier) for e, _ in extensions):
        lines.append("subjectKeyIdentifier = none")
    if not any(isinstance(e, x509.AuthorityKeyIdentifier) for e, _ in extensions):
        lines.append("authorityKeyIdentifier = none")
    return "\n".join(lines) + "\n"


def _openssl(*args: str | Path) -> None:
    proc = subprocess.run(
        ["openssl", *(str(a) for a in args)], capture_output=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.decode(errors='replace')}")
