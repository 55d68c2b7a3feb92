"""The test PKI makes what it claims, where that is not obvious: the openssl-made
legacy certificates, explicit curves, dates from ``now`` and extension overrides."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, SignatureAlgorithmOID

from tests.pki import CertFactory, Issued

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
# DER of the OIDs that tell a named curve from an explicit one in an EC public key.
PRIME256V1 = bytes.fromhex("06082a8648ce3d030107")  # namedCurve prime256v1
PRIME_FIELD = bytes.fromhex("06072a8648ce3d0101")  # fieldID prime-field (explicit)


@pytest.fixture(scope="module")
def pki() -> CertFactory:
    return CertFactory(now=NOW)


@pytest.fixture(scope="module")
def rsa_root(pki: CertFactory) -> Issued:
    return pki.ca("PKI Test RSA Root", key="rsa2048")


def openssl_verify(tmp_path: Path, leaf: Issued, root: Issued, at: datetime) -> str:
    (tmp_path / "root.pem").write_bytes(root.pem)
    (tmp_path / "leaf.pem").write_bytes(leaf.pem)
    proc = subprocess.run(
        ["openssl", "verify", "-auth_level", "0", "-attime", str(int(at.timestamp())),
         "-CAfile", str(tmp_path / "root.pem"), str(tmp_path / "leaf.pem")],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    return (proc.stdout + proc.stderr).decode()


class TestOpensslIssue:
    def test_sha1_leaf_is_signed_with_sha1(self, pki: CertFactory, rsa_root: Issued) -> None:
        """``digest="sha1"`` really yields sha1WithRSAEncryption, and the signature holds."""
        leaf = pki.openssl_issue("sha1.example", issuer=rsa_root, digest="sha1", dns=("a.test",))
        assert leaf.cert.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA1
        assert leaf.cert.version is x509.Version.v3
        assert leaf.cert.issuer == rsa_root.cert.subject
        rsa_root.key.public_key().verify(  # type: ignore[call-arg,union-attr]
            leaf.cert.signature,
            leaf.cert.tbs_certificate_bytes,
            *_pkcs1_sha1(),
        )

    def test_dates_come_from_now_not_the_clock(
        self, pki: CertFactory, rsa_root: Issued, tmp_path: Path
    ) -> None:
        """openssl writes the factory's dates; verification at ``now`` passes, a year on fails."""
        leaf = pki.openssl_issue(
            "dated.example", issuer=rsa_root, digest="sha1", valid_days=(-2, 30)
        )
        assert leaf.cert.not_valid_before_utc == NOW - timedelta(days=2)
        assert leaf.cert.not_valid_after_utc == NOW + timedelta(days=30)
        assert "OK" in openssl_verify(tmp_path, leaf, rsa_root, NOW)
        assert "certificate has expired" in openssl_verify(
            tmp_path, leaf, rsa_root, NOW + timedelta(days=365)
        )

    def test_version1_has_no_extensions(self, pki: CertFactory) -> None:
        """``version1`` is an X.509 v1 certificate: no extensions at all, self-signed."""
        root = pki.openssl_issue("V1 Test Root", version1=True, key="rsa2048", dns=("ignored",))
        assert root.cert.version is x509.Version.v1
        assert len(root.cert.extensions) == 0
        assert root.cert.issuer == root.cert.subject

    def test_extensions_are_written_exactly(self, pki: CertFactory, rsa_root: Issued) -> None:
        """The openssl path writes the same extensions as cryptography would, criticality kept."""
        constraint = x509.NameConstraints(
            permitted_subtrees=[x509.DNSName("example.test")], excluded_subtrees=None
        )
        ca = pki.openssl_issue(
            "SHA1 Constrained CA",
            issuer=rsa_root,
            digest="sha1",
            ca=True,
            key_usage=("keyCertSign",),
            extra_extensions=[(constraint, True)],
        )
        written = {e.oid: e for e in ca.cert.extensions}
        assert written[ExtensionOID.NAME_CONSTRAINTS].value == constraint
        assert written[ExtensionOID.NAME_CONSTRAINTS].critical
        assert written[ExtensionOID.BASIC_CONSTRAINTS].value.ca
        assert written[ExtensionOID.AUTHORITY_KEY_IDENTIFIER].value.key_identifier == (
            x509.SubjectKeyIdentifier.from_public_key(rsa_root.key.public_key()).digest  # type: ignore[arg-type]
        )


class TestExplicitCurve:
    def test_leaf_key_has_explicit_parameters(self, pki: CertFactory, rsa_root: Issued) -> None:
        """The public key carries the curve's parameters, not the prime256v1 name."""
        leaf = pki.openssl_issue("curveball.example", issuer=rsa_root, explicit_curve=True)
        assert PRIME_FIELD in leaf.der
        assert PRIME256V1 not in leaf.der
        public = leaf.cert.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert public.public_numbers() == leaf.key.public_key().public_numbers()  # type: ignore[union-attr]

    def test_twin_named_curve(self, pki: CertFactory, rsa_root: Issued) -> None:
        """Without the option the same path writes the named curve."""
        leaf = pki.openssl_issue("named.example", issuer=rsa_root)
        assert PRIME256V1 in leaf.der
        assert PRIME_FIELD not in leaf.der
        assert isinstance(leaf.cert.public_key(), ec.EllipticCurvePublicKey)

    def test_explicit_curve_ca_signs(self, pki: CertFactory) -> None:
        """An explicit-curve root can issue, and its signature on the leaf holds."""
        root = pki.openssl_issue(
            "Explicit Root", explicit_curve=True, ca=True, key_usage=("keyCertSign",)
        )
        leaf = pki.openssl_issue("below.example", issuer=root, dns=("below.example",))
        assert PRIME_FIELD in root.der
        leaf.cert.verify_directly_issued_by(root.cert)


class TestExtraExtensions:
    def test_extra_extension_replaces_the_default_one(self, pki: CertFactory) -> None:
        """An extra extension of a type the factory writes replaces it (no duplicate)."""
        root = pki.ca("Override Root")
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key())  # type: ignore[arg-type]
        leaf = pki.leaf(root, extra_extensions=[(aki, True)])
        akis = [e for e in leaf.cert.extensions if e.oid == ExtensionOID.AUTHORITY_KEY_IDENTIFIER]
        assert len(akis) == 1 and akis[0].critical

    def test_subject_overrides_the_name(self, pki: CertFactory) -> None:
        """``subject`` is written as given, an empty one included."""
        ca = pki.ca("ignored", subject=x509.Name([]))
        assert ca.cert.subject == x509.Name([])
        assert ca.cert.issuer == x509.Name([])


def _pkcs1_sha1() -> tuple[object, object]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.PKCS1v15(), hashes.SHA1()  # noqa: S303 (checking a SHA-1 signature)
