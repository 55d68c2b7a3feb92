"""Revocation fetched by the gateway: a real ``openssl ocsp -index ... -port`` responder
and a CRL from a loopback HTTP server; responders down or slow; the cache in the store."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest

from certstore.model import Reason
from certstore.revocation import RevocationSource, SourceKind
from gateway.errors import TrustRejected
from gateway.tls.factory import build_fetcher
from tests.integration.trust_env import Env, make_env
from tests.pki import CertFactory, Issued
from tests.revocation_support import (
    CrlServer,
    leaf_with_responder,
    make_crl,
    revocation_urls,
    server_target,
)
from tests.tls_servers import OpensslServer, free_port


@pytest.fixture
def factory() -> CertFactory:
    return CertFactory()


@pytest.fixture
def root(factory: CertFactory) -> Issued:
    return factory.ca("Fetch Root")


@pytest.fixture
def env(tmp_path: Path, root: Issued) -> Env:
    environment = make_env(tmp_path / "store.db")
    environment.trust(root)
    environment.connector.fetcher = build_fetcher(environment.connector, environment.store)
    return environment


async def _connect(env: Env, server: OpensslServer) -> None:
    _, writer = await env.connector.open_connection(server_target(server))
    writer.close()


def _metric(env: Env, name: str) -> str:
    return "\n".join(
        line
        for line in env.connector.metrics_registry.render().splitlines()
        if line.startswith(name)
    )


async def test_ocsp_responder_good_then_cached(
    env: Env, factory: CertFactory, root: Issued
) -> None:
    env.settings(revocation="hard-fail")
    with leaf_with_responder(factory, root) as (leaf, responder), OpensslServer(leaf) as server:
        await _connect(env, server)
    (cached,) = env.store.list_revocation()
    assert cached.kind is SourceKind.OCSP and cached.source is RevocationSource.OCSP_URL
    assert cached.url == responder.url and cached.next_update is not None
    # the responder is gone: the cached answer serves the next handshake
    with OpensslServer(leaf) as server:
        await _connect(env, server)
    assert env.rejected() == ()


async def test_ocsp_responder_revoked_rejects(env: Env, factory: CertFactory, root: Issued) -> None:
    revoked_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    with (
        leaf_with_responder(factory, root, revoked_at=revoked_at) as (leaf, _),
        OpensslServer(leaf) as server,
        pytest.raises(TrustRejected) as info,
    ):
        await env.connector.open_connection(server_target(server))
    assert info.value.verdict.reasons == (Reason.REVOKED,)
    assert "ocsp-url http://127.0.0.1" in info.value.verdict.findings[0].message
    (entry,) = env.rejected()
    assert entry.reasons == (Reason.REVOKED,)


async def test_crl_from_loopback_http_revokes(
    env: Env, factory: CertFactory, root: Issued, crl_server: CrlServer
) -> None:
    leaf = factory.leaf(root, extra_extensions=revocation_urls(crl_url=crl_server.url))
    crl_server.body = make_crl(root, [leaf], now=dt.datetime.now(dt.UTC))
    with OpensslServer(leaf) as server, pytest.raises(TrustRejected) as info:
        await env.connector.open_connection(server_target(server))
    assert info.value.verdict.reasons == (Reason.REVOKED,)
    assert f"crl-url {crl_server.url}" in info.value.verdict.findings[0].message
    (cached,) = env.store.list_revocation()
    assert cached.kind is SourceKind.CRL and cached.entries == 1
    (entry,) = env.rejected()
    assert entry.reasons == (Reason.REVOKED,)


@pytest.mark.parametrize("mode", ["soft-fail", "hard-fail"])
async def test_responder_down(env: Env, factory: CertFactory, root: Issued, mode: str) -> None:
    """Nothing listens at the OCSP URL: soft-fail accepts (metric, log), hard-fail rejects."""
    leaf = factory.leaf(
        root, extra_extensions=revocation_urls(ocsp_url=f"http://127.0.0.1:{free_port()}/")
    )
    env.settings(revocation=mode)
    with OpensslServer(leaf) as server:
        if mode == "soft-fail":
            await _connect(env, server)
            assert "sipsgate_revocation_unknown_total 1" in _metric(
                env, "sipsgate_revocation_unknown_total"
            )
            assert 'outcome="failed"' in _metric(env, "sipsgate_revocation_fetches_total")
            return
        with pytest.raises(TrustRejected) as info:
            await env.connector.open_connection(server_target(server))
    assert info.value.verdict.reasons == (Reason.REVOCATION_UNKNOWN,)
    (entry,) = env.rejected()
    assert entry.reasons == (Reason.REVOCATION_UNKNOWN,)


@pytest.mark.parametrize("mode", ["soft-fail", "hard-fail"])
async def test_slow_crl_server_does_not_hang_the_handshake(
    env: Env, factory: CertFactory, root: Issued, crl_server: CrlServer, mode: str
) -> None:
    leaf = factory.leaf(root, extra_extensions=revocation_urls(crl_url=crl_server.url))
    crl_server.body = make_crl(root, [], now=dt.datetime.now(dt.UTC))
    crl_server.delay = 30.0
    env.settings(revocation=mode)
    bound = env.connector.settings.handshake_timeout + 2.0
    with OpensslServer(leaf) as server:
        started = time.monotonic()
        if mode == "soft-fail":
            await asyncio.wait_for(_connect(env, server), bound)
        else:
            with pytest.raises(TrustRejected) as info:
                await asyncio.wait_for(env.connector.open_connection(server_target(server)), bound)
            assert info.value.verdict.reasons == (Reason.REVOCATION_UNKNOWN,)
            assert "no answer within the timeout" in str(env.connector.fetcher.last_errors)  # type: ignore[union-attr]
    assert time.monotonic() - started < bound
    assert crl_server.hits == 1
