"""Reading certificates: every accepted format, and every way input can be bad."""

from __future__ import annotations

import base64
import contextlib
from datetime import UTC, datetime

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certstore.errors import CertStoreError, InputTooLarge, ParseError
from certstore.model import CertStatus
from certstore.x509 import load_certificates, parse_der, to_pem


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def leaf_pem(ca: trustme.CA) -> bytes:
    return ca.issue_cert("sip.example.net", "192.0.2.7").cert_chain_pems[0].bytes()


class TestParseDer:
    def test_details(self, ca: trustme.CA, leaf_pem: bytes) -> None:
        """Every detail of DESIGN §3 is filled from the certificate."""
        leaf = load_certificates(leaf_pem).certificates[0]
        assert leaf.version == 3
        assert len(leaf.fingerprint) == 64 and leaf.fingerprint == leaf.fingerprint.lower()
        assert len(leaf.fingerprint_sha1) == 40
        assert leaf.san_dns == ("sip.example.net",)
        assert leaf.san_ip == ("192.0.2.7",)
        assert leaf.has_san
        assert not leaf.is_ca and not leaf.self_signed
        assert leaf.public_key_type == "EC" and leaf.public_key_curve == "secp256r1"
        assert leaf.signature_hash == "sha256" and not leaf.weak_signature and not leaf.weak_key
        assert "serverAuth" in (leaf.extended_key_usage or ())
        assert leaf.authority_key_id is not None
        root = load_certificates(ca.cert_pem.bytes()).certificates[0]
        assert root.is_ca and root.self_signed and "keyCertSign" in (root.key_usage or ())
        assert leaf.issuer_der == root.subject_der

    def test_equal_by_fingerprint(self, leaf_pem: bytes) -> None:
        """Two parses of the same DER are equal and hash alike."""
        a = load_certificates(leaf_pem).certificates[0]
        b = parse_der(a.der)
        assert a == b and hash(a) == hash(b) and a is not b

    def test_status(self, leaf_pem: bytes) -> None:
        """Status follows the time passed in."""
        cert = load_certificates(leaf_pem).certificates[0]
        assert cert.status_at(datetime(1999, 1, 1, tzinfo=UTC)) is CertStatus.NOT_YET_VALID
        assert cert.status_at(datetime(3001, 1, 1, tzinfo=UTC)) is CertStatus.EXPIRED
        assert cert.status_at(datetime(2030, 1, 1, tzinfo=UTC)) is CertStatus.VALID

    def test_garbage_der(self) -> None:
        """Bytes that are not a certificate give a ParseError naming the problem."""
        with pytest.raises(ParseError, match="not a valid DER certificate"):
            parse_der(b"\x30\x03\x02\x01\x01")


class TestLoadCertificates:
    def test_pem_many_in_order_with_notes(self, ca: trustme.CA, leaf_pem: bytes) -> None:
        """Several PEM blocks load in order; other blocks are skipped with a note."""
        data = b"explanatory text\n" + leaf_pem + b"junk between\n" + ca.cert_pem.bytes()
        data += b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"
        result = load_certificates(data)
        assert [c.is_ca for c in result.certificates] == [False, True]
        assert any("X509 CRL" in n for n in result.notes)

    def test_duplicates_kept_once(self, leaf_pem: bytes) -> None:
        result = load_certificates(leaf_pem + leaf_pem)
        assert len(result.certificates) == 1
        assert any("duplicate" in n for n in result.notes)

    def test_der(self, leaf_pem: bytes) -> None:
        der = load_certificates(leaf_pem).certificates[0].der
        assert load_certificates(der).certificates[0].der == der

    def test_pkcs7_der_and_pem(self, ca: trustme.CA, leaf_pem: bytes) -> None:
        """A .p7b bundle, DER or PEM, yields its certificates."""
        from cryptography import x509

        certs = [x509.load_pem_x509_certificate(p) for p in (leaf_pem, ca.cert_pem.bytes())]
        der = pkcs7.serialize_certificates(certs, serialization.Encoding.DER)
        pem = pkcs7.serialize_certificates(certs, serialization.Encoding.PEM)
        assert len(load_certificates(der).certificates) == 2
        assert len(load_certificates(pem).certificates) == 2

    def test_round_trip_pem(self, ca: trustme.CA, leaf_pem: bytes) -> None:
        certs = load_certificates(leaf_pem + ca.cert_pem.bytes()).certificates
        assert load_certificates(to_pem(certs)).certificates == certs

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b"", "empty"),
            (b"   \n", "empty"),
            (b"hello world", "neither a DER certificate"),
            (b"-----BEGIN CERTIFICATE-----\nMIIB", "never ends"),
            (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "base64"),
            (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "PEM block 1"),
        ],
    )
    def test_bad_input(self, data: bytes, message: str) -> None:
        """Each kind of bad input is refused with a sentence that says what is wrong."""
        with pytest.raises(ParseError, match=message):
            load_certificates(data)

    def test_truncated_der(self, leaf_pem: bytes) -> None:
        der = load_certificates(leaf_pem).certificates[0].der
        for cut in (1, 10, len(der) // 2, len(der) - 1):
            with pytest.raises(ParseError):
                load_certificates(der[:cut])

    def test_duplicate_extension(self, leaf_pem: bytes) -> None:
        """A certificate with a repeated extension is refused, not crashed on."""
        der = load_certificates(leaf_pem).certificates[0].der
        key_usage_oid, basic_constraints_oid = b"\x06\x03\x55\x1d\x0f", b"\x06\x03\x55\x1d\x13"
        assert key_usage_oid in der and basic_constraints_oid in der
        with pytest.raises(ParseError, match="malformed extensions"):
            parse_der(der.replace(key_usage_oid, basic_constraints_oid))

    def test_private_key_instead_of_certificate(self, ca: trustme.CA) -> None:
        key_pem = ca.issue_cert("x.example").private_key_pem.bytes()
        with pytest.raises(ParseError, match="private key but no certificate"):
            load_certificates(key_pem)
        body = b"".join(key_pem.splitlines()[1:-1])
        with pytest.raises(ParseError, match="private key"):
            load_certificates(base64.b64decode(body))

    def test_oversized(self) -> None:
        """A 50 MB body is refused before any parsing."""
        with pytest.raises(InputTooLarge, match="limit"):
            load_certificates(b"\0" * (50 * 1024 * 1024))

    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(st.binary(max_size=4096))
    def test_fuzz_random_bytes(self, data: bytes) -> None:
        """Any bytes either load or raise the package's own error."""
        try:
            result = load_certificates(data)
        except CertStoreError:
            return
        assert result.certificates

    @settings(max_examples=200, deadline=None)
    @given(st.data())
    def test_fuzz_mutated_certificate(self, leaf_pem: bytes, data: st.DataObject) -> None:
        """Flipped bytes in a real certificate never escape as a foreign exception."""
        der = bytearray(load_certificates(leaf_pem).certificates[0].der)
        for _ in range(data.draw(st.integers(1, 8))):
            der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
        with contextlib.suppress(CertStoreError):
            load_certificates(bytes(der))
