"""Hostile revocation input from real peers on loopback: a huge CRL, CRLs and OCSP
responses signed by the wrong key, an OCSP response about another certificate, a
replayed old response, garbage. Each is refused or set aside as information: no
revocation from it, no crash, bounded memory; ``hard-fail`` says the status is unknown.
"""

from __future__ import annotations

import datetime as dt
import tracemalloc
from pathlib import Path

import pytest
from cryptography.x509 import ocsp

from certstore.model import Reason
from certstore.revocation import MAX_CRL_BYTES, MAX_OCSP_BYTES
from gateway.errors import TrustRejected
from gateway.tls.factory import build_fetcher
from tests.integration.trust_env import Env, make_env
from tests.pki import CertFactory, Issued
from tests.revocation_support import CrlServer, make_crl, make_ocsp, revocation_urls, server_target
from tests.tls_servers import OpensslServer

NOW = dt.datetime.now(dt.UTC)
REVOKED = ocsp.OCSPCertStatus.REVOKED


@pytest.fixture
def factory() -> CertFactory:
    return CertFactory(NOW)


@pytest.fixture
def root(factory: CertFactory) -> Issued:
    return factory.ca("Hostile Root")


@pytest.fixture
def env(tmp_path: Path, root: Issued) -> Env:
    environment = make_env(tmp_path / "store.db")
    environment.trust(root)
    environment.connector.fetcher = build_fetcher(environment.connector, environment.store)
    return environment


async def _expect(env: Env, server: OpensslServer, mode: str) -> str:
    """soft-fail accepts; hard-fail rejects as revocation-unknown (never as revoked).
    Returns the hard-fail message."""
    env.settings(revocation=mode)
    if mode == "soft-fail":
        _, writer = await env.connector.open_connection(server_target(server))
        writer.close()
        return ""
    with pytest.raises(TrustRejected) as info:
        await env.connector.open_connection(server_target(server))
    assert info.value.verdict.reasons == (Reason.REVOCATION_UNKNOWN,)
    (entry,) = env.rejected()
    assert entry.reasons == (Reason.REVOCATION_UNKNOWN,)
    return info.value.verdict.findings[0].message


def _forged(data: bytes) -> bytes:
    """The same bytes with the signature spoiled (cryptography will not sign with a key
    that does not fit the named signer)."""
    spoiled = bytearray(data)
    spoiled[-1] ^= 0x01
    return bytes(spoiled)


def _ocsp_body(case: str, factory: CertFactory, root: Issued, leaf: Issued) -> bytes:
    if case == "wrong key":
        return _forged(make_ocsp(leaf, root, now=NOW, status=REVOKED))
    if case == "other certificate":
        other = factory.leaf(root, cn="other.example.test", dns=("other.example.test",))
        return make_ocsp(other, root, now=NOW, status=REVOKED)
    if case == "replayed":
        old = dict(this_update=dt.timedelta(days=-9), next_update=dt.timedelta(days=-2))
        return make_ocsp(leaf, root, now=NOW, status=REVOKED, **old)  # type: ignore[arg-type]
    if case == "oversized":
        return b"\x30" * (MAX_OCSP_BYTES + 10)
    return b"\x30\x03garbage"


@pytest.mark.parametrize("mode", ["soft-fail", "hard-fail"])
@pytest.mark.parametrize("case", ["wrong key", "other certificate", "replayed"])
async def test_hostile_staple(
    tmp_path: Path, env: Env, factory: CertFactory, root: Issued, case: str, mode: str
) -> None:
    """``openssl s_server`` staples a hostile response: it does not revoke."""
    leaf = factory.leaf(root)
    status = tmp_path / "status.der"
    status.write_bytes(_ocsp_body(case, factory, root, leaf))
    with OpensslServer(leaf, extra_args=["-status_file", str(status)]) as server:
        message = await _expect(env, server, mode)
    if mode == "hard-fail":
        assert "stapled OCSP response is not used" in message


@pytest.mark.parametrize("mode", ["soft-fail", "hard-fail"])
@pytest.mark.parametrize(
    "case", ["wrong key", "other certificate", "replayed", "oversized", "garbage"]
)
async def test_hostile_ocsp_responder(
    env: Env, factory: CertFactory, root: Issued, crl_server: CrlServer, case: str, mode: str
) -> None:
    """The OCSP URL answers with a hostile response: it does not revoke, and no answer
    for the leaf gets cached as good."""
    leaf = factory.leaf(root, extra_extensions=revocation_urls(ocsp_url=crl_server.ocsp_url))
    crl_server.body = _ocsp_body(case, factory, root, leaf)
    with OpensslServer(leaf) as server:
        await _expect(env, server, mode)
    assert crl_server.hits >= 1
    if case in ("oversized", "garbage"):
        assert env.store.list_revocation() == ()  # refused before it was stored
        assert crl_server.ocsp_url in env.connector.fetcher.last_errors  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["soft-fail", "hard-fail"])
async def test_crl_signed_by_the_wrong_key(
    env: Env, factory: CertFactory, root: Issued, crl_server: CrlServer, mode: str
) -> None:
    leaf = factory.leaf(root, extra_extensions=revocation_urls(crl_url=crl_server.url))
    impostor = factory.ca("Hostile Root")  # the same name, another key
    crl_server.body = make_crl(root, [leaf], now=NOW, signer=impostor)
    with OpensslServer(leaf) as server:
        message = await _expect(env, server, mode)
    if mode == "hard-fail":
        assert "is not used" in message and "signature" in message


async def test_huge_crl_is_refused_with_bounded_memory(
    env: Env, factory: CertFactory, root: Issued, crl_server: CrlServer
) -> None:
    """A CRL URL streaming far more than the limit (chunked, no Content-Length): the
    fetch stops reading at the limit, the store holds nothing, the handshake goes on
    (soft-fail)."""
    leaf = factory.leaf(root, extra_extensions=revocation_urls(crl_url=crl_server.url))
    crl_server.stream_bytes = 8 * MAX_CRL_BYTES
    with OpensslServer(leaf) as server:
        tracemalloc.start()
        try:
            await _expect(env, server, "soft-fail")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert env.store.list_revocation() == ()
    assert "more than" in env.connector.fetcher.last_errors[crl_server.url]  # type: ignore[union-attr]
    # what the gateway held at most: about one CRL's worth, never the whole body
    assert peak < 3 * MAX_CRL_BYTES


async def test_huge_crl_with_content_length_is_refused_unread(
    env: Env, factory: CertFactory, root: Issued, crl_server: CrlServer
) -> None:
    leaf = factory.leaf(root, extra_extensions=revocation_urls(crl_url=crl_server.url))
    crl_server.body = b"\x30" * (MAX_CRL_BYTES + 1)
    with OpensslServer(leaf) as server:
        await _expect(env, server, "soft-fail")
    assert env.store.list_revocation() == ()
    assert "more than" in env.connector.fetcher.last_errors[crl_server.url]  # type: ignore[union-attr]


async def test_large_valid_crl_arrives_whole(
    env: Env, factory: CertFactory, root: Issued, crl_server: CrlServer
) -> None:
    """A CRL larger than one network read is read to its end (it used to be cut at the
    first read and refused as unreadable), and revokes."""
    leaf = factory.leaf(root, extra_extensions=revocation_urls(crl_url=crl_server.url))
    crl_server.body = make_crl(root, [leaf], now=NOW, extra_serials=30_000)
    assert 256 * 1024 < len(crl_server.body) < MAX_CRL_BYTES
    with OpensslServer(leaf) as server, pytest.raises(TrustRejected) as info:
        await env.connector.open_connection(server_target(server))
    assert info.value.verdict.reasons == (Reason.REVOKED,)
    (cached,) = env.store.list_revocation()
    assert cached.entries == 30_001
