"""Hostile uploads: whatever bytes arrive, parsing raises a CertStoreError with a clear
message, and the trust list is unchanged."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certstore.errors import CertStoreError, InputTooLarge, ParseError
from certstore.facade import RepositoryStore
from certstore.model import TrustSource
from certstore.x509 import load_certificates, to_pem
from tests.integration._store_support import ADMIN, PKI
from tests.pki import key_pem, make_key

GOOD = PKI.leaf(None, cn="good.example").model
GOOD_PEM = to_pem(GOOD)


def upload(store: RepositoryStore, data: bytes) -> None:
    """What the API and the CLI do with an upload: parse, then add."""
    result = load_certificates(data)
    store.add_trust(result.certificates, source=TrustSource.UPLOADED, actor=ADMIN)


def assert_refused(store: RepositoryStore, data: bytes, match: str) -> CertStoreError:
    before = store.snapshot()
    with pytest.raises(CertStoreError, match=match) as info:
        upload(store, data)
    after = store.snapshot()
    assert after.generation == before.generation
    assert after.trust == before.trust
    assert str(info.value).endswith((".", ")")), "messages are full sentences"
    return info.value


class TestHostileUploads:
    def test_truncated_der(self, store: RepositoryStore) -> None:
        """A DER certificate cut short is refused as not a valid certificate."""
        assert_refused(store, GOOD.der[: len(GOOD.der) - 20], "not a DER certificate|neither")

    def test_truncated_pem(self, store: RepositoryStore) -> None:
        """A PEM file cut before its END line is refused as truncated."""
        assert_refused(store, GOOD_PEM[: len(GOOD_PEM) // 2], "never ends")

    def test_junk_inside_a_pem_block(self, store: RepositoryStore) -> None:
        """Non-base64 text inside a certificate block is refused; nothing of the file is added."""
        other = PKI.leaf(None, cn="second.example").model
        lines = to_pem(other).splitlines()
        lines.insert(3, b"!!! this is not base64 !!!")
        data = GOOD_PEM + b"\n".join(lines) + b"\n"
        assert_refused(store, data, "PEM block 2")
        assert other.fingerprint not in store.snapshot().trust_by_fingerprint
        assert GOOD.fingerprint not in store.snapshot().trust_by_fingerprint

    def test_junk_between_blocks_is_ignored(self, store: RepositoryStore) -> None:
        """Text between PEM blocks (comments, as in CA bundles) does not stop the upload."""
        other = PKI.leaf(None, cn="between.example").model
        data = b"# a comment\n" + GOOD_PEM + b"garbage \x00\xff in between\n" + to_pem(other)
        upload(store, data)
        trusted = store.snapshot().trust_by_fingerprint
        assert GOOD.fingerprint in trusted
        assert other.fingerprint in trusted

    def test_private_key_instead_of_certificate(self, store: RepositoryStore) -> None:
        """A private key (PEM or DER) is refused with a message that says it is a key."""
        key = make_key()
        assert_refused(store, key_pem(key), "private key but no certificate")
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        assert_refused(store, der, "is a private key")

    def test_50_megabytes(self, store: RepositoryStore) -> None:
        """A 50 MB body is refused by size before any parsing."""
        error = assert_refused(store, b"A" * (50 * 1024 * 1024), "limit")
        assert isinstance(error, InputTooLarge)

    @pytest.mark.parametrize(
        "data",
        [b"", b"   \n", b"\x00" * 10, b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"],
    )
    def test_empty_and_hollow(self, store: RepositoryStore, data: bytes) -> None:
        """Empty input and an empty certificate block are refused."""
        assert_refused(store, data, ".")

    def test_mismatched_pem_labels(self, store: RepositoryStore) -> None:
        """A block that begins as a certificate and ends as something else is refused."""
        body = base64.encodebytes(GOOD.der)
        data = b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END X509 CRL-----\n"
        assert_refused(store, data, "ends as")

    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(data=st.binary(max_size=4096))
    def test_random_bytes(self, store: RepositoryStore, data: bytes) -> None:
        """Random bytes either parse to certificates or raise a CertStoreError."""
        message = "parsed"
        try:
            load_certificates(data)
        except CertStoreError as exc:
            message = str(exc)
        assert message
        assert store.snapshot().generation == 1

    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(position=st.integers(min_value=0), junk=st.binary(min_size=1, max_size=16))
    def test_damaged_der_and_pem(self, store: RepositoryStore, position: int, junk: bytes) -> None:
        """A real certificate (DER or PEM) with bytes overwritten is refused or still parses;
        never another exception, and a refused upload adds nothing."""
        for original in (GOOD.der, GOOD_PEM):
            at = position % len(original)
            damaged = original[:at] + junk + original[at + len(junk) :]
            before = store.snapshot()
            error: CertStoreError | None = None
            try:
                upload(store, damaged)
            except CertStoreError as exc:
                error = exc
            if error is not None:
                assert isinstance(error, ParseError | InputTooLarge)
                assert store.snapshot().trust == before.trust
