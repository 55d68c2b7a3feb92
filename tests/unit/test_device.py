"""certstore.device: key specs, subject and SAN validation, generation, installation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from certstore import device
from certstore.device import (
    BadPassphrase,
    ChainError,
    InvalidFields,
    KeyMismatch,
    KeySpec,
    MissingKey,
    NotForTls,
    NotValidNow,
)
from certstore.errors import CertStoreError, Conflict, ParseError, ValidationError
from certstore.x509 import load_certificates, spki_fingerprint_of_key
from tests.device_support import NOW, PKI, openssl, pem_of
from tests.pki import key_pem, make_key


def spec(**overrides: object) -> device.IdentitySpec:
    values: dict[str, object] = {"subject": {"CN": "gw.example.net"}}
    values.update(overrides)
    return device.build_spec(**values)  # type: ignore[arg-type]


class TestParseKeySpec:
    @pytest.mark.parametrize("text", ["ec-p256", "EC-P384", "rsa-2048", "rsa-3072", "rsa-4096"])
    def test_known_specs(self, text: str) -> None:
        """Every strong key spec is accepted, case-insensitively."""
        assert device.parse_key_spec(text, allow_weak=False) == KeySpec(text.lower())

    def test_reuse(self) -> None:
        """'reuse' names the current identity's key."""
        assert device.parse_key_spec("reuse", allow_weak=False) is KeySpec.REUSE

    def test_rsa_1024_refused_by_default(self) -> None:
        """RSA-1024 is refused unless weak keys are allowed, naming the config key."""
        with pytest.raises(ValidationError, match="allow_weak_keys") as info:
            device.parse_key_spec("rsa-1024", allow_weak=False)
        assert info.value.field == "key"

    def test_rsa_1024_allowed_and_weak(self) -> None:
        """Where weak keys are allowed, RSA-1024 is accepted and marked weak."""
        parsed = device.parse_key_spec("rsa-1024", allow_weak=True)
        assert parsed.weak
        assert KeySpec.RSA_1024 in device.available_key_specs(allow_weak=True)
        assert KeySpec.RSA_1024 not in device.available_key_specs(allow_weak=False)

    def test_unknown(self) -> None:
        """An unknown spec lists the choices."""
        with pytest.raises(ValidationError, match="ec-p256"):
            device.parse_key_spec("dsa-1024", allow_weak=False)

    @pytest.mark.parametrize(
        ("spec_name", "kind", "size"),
        [
            ("ec-p256", "EC", 256),
            ("ec-p384", "EC", 384),
            ("rsa-2048", "RSA", 2048),
            ("rsa-3072", "RSA", 3072),
        ],
    )
    def test_generate(self, spec_name: str, kind: str, size: int) -> None:
        """A generated key has the type and size of its spec."""
        key = device.generate_private_key(KeySpec(spec_name))
        if kind == "EC":
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            assert key.curve.key_size == size
        else:
            assert isinstance(key, rsa.RSAPrivateKey)
            assert key.key_size == size
        assert device.key_spec_of(key) == spec_name


class TestValidateSubject:
    def test_full_subject(self) -> None:
        """Every field is kept, the country upper-cased."""
        subject = device.validate_subject(
            {
                "CN": "gw.example.net",
                "O": "Example GmbH",
                "OU": "Telephony",
                "L": "Berlin",
                "ST": "Berlin",
                "C": "de",
                "emailAddress": "noc@example.net",
            }
        )
        assert subject.country == "DE"
        assert dict(subject.fields())["emailAddress"] == "noc@example.net"

    def test_long_names(self) -> None:
        """Long field names are accepted as aliases."""
        subject = device.validate_subject({"common_name": "a", "organisation": "b"})
        assert subject.organization == "b"

    @pytest.mark.parametrize("value", ["", "   ", None])
    def test_cn_required(self, value: str | None) -> None:
        """An empty or missing CN is refused naming the CN field."""
        with pytest.raises(ValidationError) as info:
            device.validate_subject({"CN": value})
        assert info.value.field == "CN"
        with pytest.raises(ValidationError) as info:
            device.validate_subject({"O": "x"})
        assert info.value.field == "CN"

    @pytest.mark.parametrize(
        ("field", "limit"),
        [("CN", 64), ("O", 64), ("OU", 64), ("L", 128), ("ST", 128), ("emailAddress", 255)],
    )
    def test_length_limits(self, field: str, limit: int) -> None:
        """Each field accepts its RFC 5280 upper bound and refuses one more character."""
        suffix = "@example.net" if field == "emailAddress" else ""
        ok = "a" * (limit - len(suffix)) + suffix
        values = {"CN": "x", field: ok}
        device.validate_subject(values)
        with pytest.raises(ValidationError, match=str(limit)) as info:
            device.validate_subject({"CN": "x", field: "b" + ok})
        assert info.value.field == field

    @pytest.mark.parametrize("country", ["D", "DEU", "1A", "Ä1", "D-"])
    def test_country_two_letters(self, country: str) -> None:
        """The country must be exactly two letters."""
        with pytest.raises(ValidationError, match="two-letter") as info:
            device.validate_subject({"CN": "x", "C": country})
        assert info.value.field == "C"

    @pytest.mark.parametrize("email", ["noc", "noc@", "@example.net", "nöc@example.net", "a b@c"])
    def test_bad_email(self, email: str) -> None:
        """An e-mail address must be ASCII name@domain."""
        with pytest.raises(ValidationError) as info:
            device.validate_subject({"CN": "x", "emailAddress": email})
        assert info.value.field == "emailAddress"

    def test_control_characters(self) -> None:
        """Control characters are refused."""
        with pytest.raises(ValidationError, match="control"):
            device.validate_subject({"CN": "a\nb"})

    def test_unknown_field(self) -> None:
        """An unknown field is named."""
        with pytest.raises(ValidationError, match="SN") as info:
            device.validate_subject({"CN": "x", "SN": "y"})
        assert info.value.field == "SN"

    def test_every_error_reported(self) -> None:
        """Several wrong fields are reported together, each with its field."""
        with pytest.raises(InvalidFields) as info:
            device.validate_subject({"C": "DEU", "O": "x" * 65})
        assert [e.field for e in info.value.errors] == ["CN", "C", "O"]

    @settings(max_examples=60, deadline=None)
    @given(st.dictionaries(st.sampled_from(list(device.SUBJECT_FIELDS)), st.text(max_size=80)))
    def test_fuzz(self, values: dict[str, str]) -> None:
        """Any input is either refused with a ValidationError or makes a signable name."""
        try:
            subject = device.validate_subject(values)
        except ValidationError:
            return
        material = device.create_self_signed(device.IdentitySpec(subject=subject), NOW)
        assert material.certificate.common_name == subject.common_name


class TestSans:
    def test_dns(self) -> None:
        """DNS names are lower-cased, a trailing dot dropped, IDNs turned into A-labels."""
        sans = device.validate_sans(dns=["GW.Example.NET.", "*.example.net", "bücher.example"])
        assert sans.dns == ("gw.example.net", "*.example.net", "xn--bcher-kva.example")

    @pytest.mark.parametrize(
        "bad", ["", "-a.example", "a..b", "a_b.example", "*.com", "a.*.example", "x" * 64 + ".a"]
    )
    def test_bad_dns(self, bad: str) -> None:
        """Invalid DNS names are refused naming the list position."""
        with pytest.raises(ValidationError) as info:
            device.validate_sans(dns=[bad])
        assert info.value.field == "san_dns[0]"

    def test_ip(self) -> None:
        """IPv4 and IPv6 addresses are normalised."""
        sans = device.validate_sans(ip=["192.0.2.1", "[2001:DB8::1]"])
        assert sans.ip == ("192.0.2.1", "2001:db8::1")

    def test_bad_ip(self) -> None:
        """A non-address is refused."""
        with pytest.raises(ValidationError, match="not an IPv4"):
            device.validate_sans(ip=["192.0.2"])

    def test_uri(self) -> None:
        """sip: URIs are checked for a valid host; other schemes need a value."""
        sans = device.validate_sans(uri=["SIP:example.com", "sips:[2001:db8::1]", "https://a/"])
        assert sans.uri == ("sip:example.com", "sips:[2001:db8::1]", "https://a/")

    @pytest.mark.parametrize("bad", ["example.com", "sip:", "sip:bad_host", "sip:a b", "ü:x"])
    def test_bad_uri(self, bad: str) -> None:
        """A URI without scheme, value or a valid SIP host is refused."""
        with pytest.raises(ValidationError) as info:
            device.validate_sans(uri=[bad])
        assert info.value.field == "san_uri[0]"

    def test_parse_items(self) -> None:
        """Prefixed and bare SAN items land in the right lists, duplicates once."""
        sans = device.parse_san_items(
            [
                "DNS:a.example",
                "IP:192.0.2.1",
                "URI:sip:example.com",
                "b.example",
                "2001:db8::2",
                "sip:example.org",
                "a.example",
            ]
        )
        assert sans.dns == ("a.example", "b.example")
        assert sans.ip == ("192.0.2.1", "2001:db8::2")
        assert sans.uri == ("sip:example.com", "sip:example.org")

    def test_build_spec_collects_everything(self) -> None:
        """build_spec reports key, subject, SAN and validity errors at once."""
        with pytest.raises(InvalidFields) as info:
            device.build_spec(subject={"CN": ""}, key="rsa-1024", san_ip=["x"], validity_days=0)
        assert [e.field for e in info.value.errors] == ["key", "CN", "san_ip[0]", "validity_days"]


def x509_text(pem: bytes) -> str:
    return openssl("x509", "-text", "-noout", data=pem)


class TestStandardIdentity:
    def test_certificate(self, tmp_path: Path) -> None:
        """ECDSA P-256, CN = name, SANs = host names + machine name, TLS usages, CA:FALSE."""
        material = device.generate_standard_identity(
            "dect-gw", ["gw.example.net", "192.0.2.10"], NOW, machine_host_name="box1"
        )
        cert = material.certificate
        assert cert.common_name == "dect-gw"
        assert cert.public_key_curve == "secp256r1"
        assert cert.san_dns == ("gw.example.net", "box1")
        assert cert.san_ip == ("192.0.2.10",)
        assert cert.extended_key_usage == ("serverAuth", "clientAuth")
        assert cert.key_usage == ("digitalSignature",)
        assert cert.basic_constraints_present
        assert not cert.is_ca
        assert cert.subject_key_id == cert.authority_key_id is not None
        assert cert.self_signed
        assert cert.not_before == NOW - timedelta(hours=1)
        assert cert.not_after - NOW >= timedelta(days=3649)
        serial = int(cert.serial, 16)
        assert 0 < serial < 2**159
        assert device.key_matches_certificate(material.private_key_pem, cert)
        assert material.private_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")

        text = x509_text(device.export_chain(material.chain))
        assert "Subject: CN = dect-gw" in text
        assert "NIST CURVE: P-256" in text
        assert "CA:FALSE" in text
        assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
        assert "DNS:gw.example.net, DNS:box1, IP Address:192.0.2.10" in text
        assert "Signature Algorithm: ecdsa-with-SHA256" in text
        pem_file = tmp_path / "standard.pem"
        pem_file.write_bytes(device.export_chain(material.chain))
        at = str(int(NOW.timestamp()))
        for purpose in ("sslserver", "sslclient"):
            out = openssl(
                "verify",
                "-CAfile",
                str(pem_file),
                "-purpose",
                purpose,
                "-attime",
                at,
                str(pem_file),
            )
            assert ": OK" in out

    def test_serials_differ(self) -> None:
        """Two standard identities never share a serial or a key."""
        a = device.generate_standard_identity("gw", [], NOW)
        b = device.generate_standard_identity("gw", [], NOW)
        assert a.certificate.serial != b.certificate.serial
        assert a.certificate.spki_fingerprint != b.certificate.spki_fingerprint

    def test_reuse_key(self) -> None:
        """Renewing with the same key keeps the public key, changes the serial."""
        key = make_key()
        a = device.generate_standard_identity("gw", [], NOW, key=key)
        b = device.generate_standard_identity("gw", [], NOW + timedelta(days=1), key=key)
        assert a.certificate.spki_fingerprint == b.certificate.spki_fingerprint
        assert a.certificate.serial != b.certificate.serial

    def test_odd_machine_name_left_out(self) -> None:
        """A machine host name that is no DNS name does not stop the first start."""
        material = device.generate_standard_identity("gw", [], NOW, machine_host_name="my_box")
        assert material.certificate.san_dns == ()
        assert not material.certificate.has_san

    def test_bad_configured_host_name(self) -> None:
        """A wrong configured host name is refused naming the config key."""
        with pytest.raises(ValidationError) as info:
            device.generate_standard_identity("gw", ["ok.example", "bad name"], NOW)
        assert info.value.field == "gateway.host_names[1]"

    def test_bad_device_name(self) -> None:
        """A device name over 64 characters is refused naming gateway.name."""
        with pytest.raises(ValidationError) as info:
            device.generate_standard_identity("g" * 65, [], NOW)
        assert info.value.field == "gateway.name"


class TestSelfSigned:
    @pytest.mark.parametrize(
        ("key", "openssl_key"),
        [
            ("ec-p256", "NIST CURVE: P-256"),
            ("ec-p384", "NIST CURVE: P-384"),
            ("rsa-2048", "Public-Key: (2048 bit)"),
            ("rsa-4096", "Public-Key: (4096 bit)"),
        ],
    )
    def test_key_specs(self, key: str, openssl_key: str) -> None:
        """Each key spec makes a certificate openssl reads with that key and the subject."""
        made = device.create_self_signed(
            spec(
                key=key,
                subject={"CN": "gw", "O": "Example", "C": "DE", "emailAddress": "a@example.net"},
                san_dns=["gw.example.net"],
                san_ip=["192.0.2.1"],
                san_uri=["sip:example.net"],
                validity_days=30,
            ),
            NOW,
        )
        text = x509_text(pem_of(made.certificate))
        assert openssl_key in text
        assert "C = DE, O = Example, CN = gw, emailAddress = a@example.net" in text
        assert "DNS:gw.example.net, IP Address:192.0.2.1, URI:sip:example.net" in text
        assert made.certificate.not_after == NOW + timedelta(days=30)
        if key.startswith("rsa"):
            assert "Digital Signature, Key Encipherment" in text
        if key == "ec-p384":
            assert "ecdsa-with-SHA384" in text

    def test_rsa_1024_marked_weak(self) -> None:
        """An RSA-1024 certificate (weak keys allowed) is flagged weak."""
        made = device.create_self_signed(spec(key="rsa-1024", allow_weak=True), NOW)
        assert made.certificate.weak_key
        assert "Public-Key: (1024 bit)" in x509_text(pem_of(made.certificate))

    def test_reuse(self) -> None:
        """'reuse' signs with the given current key."""
        current = key_pem(make_key())
        made = device.create_self_signed(spec(key="reuse"), NOW, current_key_pem=current)
        assert made.private_key_pem == current
        assert device.key_matches_certificate(current, made.certificate)

    def test_reuse_without_current(self) -> None:
        """'reuse' without a current key is a conflict."""
        with pytest.raises(Conflict):
            device.create_self_signed(spec(key="reuse"), NOW)


class TestCreateCsr:
    @pytest.mark.parametrize("key", ["ec-p256", "rsa-3072"])
    def test_openssl_verifies(self, key: str) -> None:
        """openssl verifies the request's signature and reads subject and SANs."""
        made = device.create_csr(
            spec(
                key=key,
                subject={"CN": "gw.example.net", "OU": "Voice"},
                san_dns=["gw.example.net"],
                san_uri=["sip:example.net"],
            )
        )
        out = openssl("req", "-verify", "-noout", "-text", data=made.csr_pem)
        assert "verify OK" in out
        assert "OU = Voice, CN = gw.example.net" in out
        assert "DNS:gw.example.net, URI:sip:example.net" in out
        assert "TLS Web Server Authentication" in out
        assert made.key_spec == key
        csr = x509.load_pem_x509_csr(made.csr_pem)
        assert spki_fingerprint_of_key(csr.public_key()) == spki_fingerprint_of_key(
            device.load_private_key(made.private_key_pem).public_key()
        )

    def test_reuse_records_actual_key(self) -> None:
        """A request made with the current key records that key's spec."""
        current = key_pem(ec.generate_private_key(ec.SECP384R1()))
        made = device.create_csr(spec(key="reuse"), current_key_pem=current)
        assert made.key_spec == "ec-p384"
        assert made.private_key_pem == current


@pytest.fixture(scope="module")
def pki() -> dict[str, object]:
    root = PKI.ca("Test Root CA")
    inter = PKI.ca("Test Intermediate CA", issuer=root)
    return {"root": root, "inter": inter}


def issued_for(pki: dict[str, object], key: object, **kwargs: object) -> x509.Certificate:
    inter = pki["inter"]
    return PKI.sign_csr(inter, key.public_key(), cn="gw.example.net", **kwargs)  # type: ignore[arg-type,attr-defined]


class TestInstallResponse:
    def test_out_of_order_chain(self, pki: dict[str, object]) -> None:
        """Root, leaf and intermediate in any order come back leaf → root."""
        pending = device.create_csr(spec())
        key = device.load_private_key(pending.private_key_pem)
        leaf = issued_for(pki, key)
        data = pki["root"].pem + pem_of(leaf) + pki["inter"].pem  # type: ignore[attr-defined]
        made = device.install_response(data, pending.private_key_pem, NOW)
        assert [c.common_name for c in made.chain] == [
            "gw.example.net",
            "Test Intermediate CA",
            "Test Root CA",
        ]
        assert made.private_key_pem == pending.private_key_pem
        assert made.notes == ()

    @pytest.mark.parametrize("encoding", ["der", "p7b"])
    def test_der_and_pkcs7(self, pki: dict[str, object], encoding: str) -> None:
        """The response may be one DER certificate or a PKCS#7 bundle."""
        pending = device.create_csr(spec())
        leaf = issued_for(pki, device.load_private_key(pending.private_key_pem))
        if encoding == "der":
            data = leaf.public_bytes(serialization.Encoding.DER)
        else:
            data = pkcs7.serialize_certificates(
                [pki["inter"].cert, leaf],
                serialization.Encoding.DER,  # type: ignore[attr-defined]
            )
        made = device.install_response(data, pending.private_key_pem, NOW)
        assert made.chain[0].x509 == leaf

    def test_wrong_key(self, pki: dict[str, object]) -> None:
        """A certificate for another key is refused."""
        pending = device.create_csr(spec())
        leaf = issued_for(pki, make_key())
        with pytest.raises(KeyMismatch, match="pending signing request"):
            device.install_response(pem_of(leaf), pending.private_key_pem, NOW)

    def test_foreign_certificate(self, pki: dict[str, object]) -> None:
        """An unrelated CA certificate in the response is refused, named."""
        pending = device.create_csr(spec())
        leaf = issued_for(pki, device.load_private_key(pending.private_key_pem))
        stranger = PKI.ca("Stranger CA")
        with pytest.raises(ChainError, match="Stranger CA") as info:
            device.install_response(
                pem_of(leaf) + pki["inter"].pem + stranger.pem,  # type: ignore[attr-defined]
                pending.private_key_pem,
                NOW,
            )
        assert info.value.fingerprints == (stranger.model.fingerprint,)

    def test_same_name_other_key(self, pki: dict[str, object]) -> None:
        """An 'intermediate' with the right name but another key is refused."""
        pending = device.create_csr(spec())
        leaf = issued_for(pki, device.load_private_key(pending.private_key_pem))
        impostor = PKI.ca("Test Intermediate CA", issuer=PKI.ca("Test Root CA"))
        with pytest.raises(ChainError, match="did not sign"):
            device.install_response(pem_of(leaf) + impostor.pem, pending.private_key_pem, NOW)

    @pytest.mark.parametrize("data", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA"])
    def test_garbage(self, data: bytes) -> None:
        """Bytes that are not certificates are refused as unparseable."""
        pending = device.create_csr(spec())
        with pytest.raises(ParseError):
            device.install_response(data, pending.private_key_pem, NOW)

    def test_expired(self, pki: dict[str, object]) -> None:
        """An expired certificate is refused with its end date."""
        pending = device.create_csr(spec())
        leaf = issued_for(
            pki,
            device.load_private_key(pending.private_key_pem),
            not_before=NOW - timedelta(days=100),
            not_after=NOW - timedelta(days=1),
        )
        with pytest.raises(NotValidNow, match="expired"):
            device.install_response(pem_of(leaf), pending.private_key_pem, NOW)

    def test_not_yet_valid(self, pki: dict[str, object]) -> None:
        """A certificate valid only in the future is refused, pointing at the clock."""
        pending = device.create_csr(spec())
        leaf = issued_for(
            pki,
            device.load_private_key(pending.private_key_pem),
            not_before=NOW + timedelta(days=1),
        )
        with pytest.raises(NotValidNow, match="clock"):
            device.install_response(pem_of(leaf), pending.private_key_pem, NOW)

    @pytest.mark.parametrize(
        ("eku", "ku"),
        [
            ((ExtendedKeyUsageOID.CODE_SIGNING,), ("digitalSignature",)),
            ((ExtendedKeyUsageOID.CLIENT_AUTH,), ("digitalSignature",)),
            ((ExtendedKeyUsageOID.SERVER_AUTH,), ("keyCertSign",)),
        ],
    )
    def test_not_for_tls(
        self, pki: dict[str, object], eku: tuple[x509.ObjectIdentifier, ...], ku: tuple[str, ...]
    ) -> None:
        """A certificate whose usages exclude a TLS server is refused."""
        pending = device.create_csr(spec())
        leaf = issued_for(
            pki, device.load_private_key(pending.private_key_pem), eku=eku, key_usage=ku
        )
        with pytest.raises(NotForTls):
            device.install_response(pem_of(leaf), pending.private_key_pem, NOW)

    def test_server_only_noted(self, pki: dict[str, object]) -> None:
        """A serverAuth-only certificate is installed with a note about client use."""
        pending = device.create_csr(spec())
        leaf = issued_for(
            pki,
            device.load_private_key(pending.private_key_pem),
            eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
        )
        made = device.install_response(pem_of(leaf), pending.private_key_pem, NOW)
        assert any("clientAuth" in n for n in made.notes)

    def test_no_usage_extensions(self, pki: dict[str, object]) -> None:
        """A certificate without KU and EKU is fine for TLS."""
        pending = device.create_csr(spec())
        leaf = issued_for(
            pki, device.load_private_key(pending.private_key_pem), eku=None, key_usage=None
        )
        assert device.install_response(pem_of(leaf), pending.private_key_pem, NOW).notes == ()


def chain_pem(pki: dict[str, object], key: object) -> bytes:
    leaf = issued_for(pki, key)
    return pki["inter"].pem + pem_of(leaf)  # type: ignore[attr-defined,no-any-return]


class TestInstallChain:
    def test_key_in_same_file(self, pki: dict[str, object]) -> None:
        """A PEM with the chain and the key, the key first, installs in order."""
        key = make_key()
        made = device.install_chain(key_pem(key) + chain_pem(pki, key), None, None, NOW)
        assert len(made.chain) == 2
        assert device.key_matches_certificate(made.private_key_pem, made.certificate)

    def test_separate_traditional_key(self, pki: dict[str, object]) -> None:
        """A traditional 'EC PRIVATE KEY' in a separate file is accepted, stored as PKCS#8."""
        key = make_key()
        traditional = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        made = device.install_chain(chain_pem(pki, key), traditional, None, NOW)
        assert made.private_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")

    @pytest.mark.parametrize("fmt", ["pkcs8", "traditional"])
    def test_encrypted_key(self, pki: dict[str, object], fmt: str) -> None:
        """An encrypted key opens with its passphrase and is stored unencrypted."""
        key = make_key()
        encrypted = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8
            if fmt == "pkcs8"
            else serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
        made = device.install_chain(chain_pem(pki, key) + encrypted, None, b"s3cret", NOW)
        assert b"ENCRYPTED" not in made.private_key_pem

    def test_wrong_passphrase(self, pki: dict[str, object]) -> None:
        """A wrong passphrase is named as such."""
        key = make_key()
        encrypted = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
        with pytest.raises(BadPassphrase, match="does not decrypt"):
            device.install_chain(chain_pem(pki, key), encrypted, b"wrong", NOW)
        with pytest.raises(BadPassphrase, match="give its passphrase"):
            device.install_chain(chain_pem(pki, key), encrypted, None, NOW)

    def test_missing_key(self, pki: dict[str, object]) -> None:
        """A chain without a key is refused as missing its key."""
        with pytest.raises(MissingKey):
            device.install_chain(chain_pem(pki, make_key()), None, None, NOW)

    def test_mismatched_key(self, pki: dict[str, object]) -> None:
        """A key that belongs to none of the certificates is refused."""
        with pytest.raises(KeyMismatch):
            device.install_chain(chain_pem(pki, make_key()), key_pem(make_key()), None, NOW)

    def test_unlinkable(self, pki: dict[str, object]) -> None:
        """Certificates that cannot be ordered into one chain are refused."""
        key = make_key()
        other = PKI.ca("Other Root")
        with pytest.raises(ChainError):
            device.install_chain(chain_pem(pki, key) + other.pem, key_pem(key), None, NOW)

    def test_weak_key(self, pki: dict[str, object]) -> None:
        """An RSA-1024 key is refused unless weak keys are allowed; then noted as weak."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
        data = chain_pem(pki, key)
        with pytest.raises(ValidationError, match="weak"):
            device.install_chain(data, key_pem(key), None, NOW)
        made = device.install_chain(data, key_pem(key), None, NOW, allow_weak=True)
        assert made.certificate.weak_key
        assert any("weak" in n for n in made.notes)

    def test_two_keys(self, pki: dict[str, object]) -> None:
        """A file with two private keys is refused."""
        key = make_key()
        with pytest.raises(CertStoreError, match="more than one"):
            device.install_chain(
                key_pem(key) + chain_pem(pki, key) + key_pem(make_key()), None, None, NOW
            )

    @settings(max_examples=80, deadline=None)
    @given(st.binary(max_size=400))
    def test_fuzz(self, data: bytes) -> None:
        """Random bytes are refused with a CertStoreError, never anything else."""
        with pytest.raises(CertStoreError):
            device.install_chain(data, None, None, NOW)
        with pytest.raises(CertStoreError):
            device.install_pkcs12(data, None, NOW)


class TestInstallPkcs12:
    def make(self, pki: dict[str, object], passphrase: bytes | None) -> tuple[bytes, object]:
        key = make_key()
        leaf = issued_for(pki, key)
        encryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        data = pkcs12.serialize_key_and_certificates(
            b"gw",
            key,
            leaf,
            [pki["root"].cert, pki["inter"].cert],
            encryption,  # type: ignore[attr-defined]
        )
        return data, key

    @pytest.mark.parametrize("passphrase", [None, b"p12-pass"])
    def test_install(self, pki: dict[str, object], passphrase: bytes | None) -> None:
        """A PKCS#12 with key, leaf and CAs installs, ordered leaf → root."""
        data, _ = self.make(pki, passphrase)
        made = device.install_pkcs12(data, passphrase, NOW)
        assert [c.common_name for c in made.chain][1:] == ["Test Intermediate CA", "Test Root CA"]

    def test_wrong_passphrase(self, pki: dict[str, object]) -> None:
        """A wrong or missing passphrase is named as such."""
        data, _ = self.make(pki, b"p12-pass")
        with pytest.raises(BadPassphrase, match="does not open"):
            device.install_pkcs12(data, b"nope", NOW)
        with pytest.raises(BadPassphrase, match="protected"):
            device.install_pkcs12(data, None, NOW)

    def test_truncated(self, pki: dict[str, object]) -> None:
        """A truncated file is reported as truncated, not as a passphrase problem."""
        data, _ = self.make(pki, b"p12-pass")
        with pytest.raises(ParseError, match="truncated"):
            device.install_pkcs12(data[: len(data) // 2], b"p12-pass", NOW)

    def test_without_key(self, pki: dict[str, object]) -> None:
        """A PKCS#12 holding only certificates is refused as missing its key."""
        data = pkcs12.serialize_java_truststore(
            [pkcs12.PKCS12Certificate(pki["root"].cert, b"root")],  # type: ignore[attr-defined]
            serialization.NoEncryption(),
        )
        with pytest.raises(MissingKey):
            device.install_pkcs12(data, None, NOW)

    def test_detected(self, pki: dict[str, object]) -> None:
        """PKCS#12 data is told apart from a DER certificate."""
        data, _ = self.make(pki, None)
        assert device.looks_like_pkcs12(data)
        assert not device.looks_like_pkcs12(
            pki["root"].cert.public_bytes(serialization.Encoding.DER)
        )  # type: ignore[attr-defined]


class TestExport:
    def test_formats(self, pki: dict[str, object]) -> None:
        """PEM holds the chain, DER the device certificate, p7b the chain again."""
        key = make_key()
        made = device.install_chain(chain_pem(pki, key), key_pem(key), None, NOW)
        pem = device.export_chain(made.chain, "pem")
        assert load_certificates(pem).certificates == made.chain
        assert device.export_chain(made.chain, "der") == made.certificate.der
        p7b = device.export_chain(made.chain, "p7b")
        # A PKCS#7 bundle is a SET OF certificates: the order is not kept.
        assert set(load_certificates(p7b).certificates) == set(made.chain)
        printed = openssl("pkcs7", "-inform", "DER", "-print_certs", data=p7b)
        assert printed.count("BEGIN CERTIFICATE") == 2

    def test_with_key(self) -> None:
        """The chain with key is PEM certificates then an unencrypted PKCS#8 key."""
        made = device.generate_standard_identity("gw", [], NOW)
        data = device.export_with_key(made.chain, made.private_key_pem)
        assert data.endswith(made.private_key_pem)
        assert data.count(b"BEGIN CERTIFICATE") == 1
        openssl("pkey", "-noout", "-check", data=made.private_key_pem)
        again = device.install_chain(data, None, None, NOW)
        assert again.chain == made.chain

    def test_with_encrypted_key(self) -> None:
        """With a passphrase, the key is exported encrypted and reads back with it."""
        made = device.generate_standard_identity("gw", [], NOW)
        data = device.export_with_key(made.chain, made.private_key_pem, passphrase=b"pw")
        assert b"ENCRYPTED PRIVATE KEY" in data
        assert device.install_chain(data, None, b"pw", NOW).chain == made.chain


def test_export_passphrase_too_long_is_a_clear_error() -> None:
    """OpenSSL's 1023-byte limit on PEM passphrases is an input error, not a crash."""
    from certstore.device import MAX_EXPORT_PASSPHRASE, export_with_key
    from certstore.errors import ValidationError
    from tests.pki import CertFactory

    leaf = CertFactory(now=NOW, organization=None).leaf(None, cn="gw.example.net")
    key_pem = leaf.key_pem
    assert b"ENCRYPTED" in export_with_key([leaf.model], key_pem, passphrase=b"p" * 1023)
    with pytest.raises(ValidationError, match="at most 1023") as caught:
        export_with_key([leaf.model], key_pem, passphrase=b"p" * (MAX_EXPORT_PASSPHRASE + 1))
    assert caught.value.field == "passphrase"
