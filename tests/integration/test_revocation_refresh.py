"""Background refresh of cached revocation information, and what it does to open flows.

A CRL from a loopback HTTP server that changes, and a real ``openssl ocsp -index ...
-port`` responder whose index changes, are fetched again before their nextUpdate; a
refresh that says the peer of an open flow is revoked closes the flow through the
revocation watch. The fetcher's clock is moved forward instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from certstore.model import Reason
from certstore.revocation import RevocationSource, SourceKind
from gateway.errors import TrustRejected
from gateway.tls.factory import build_fetcher
from gateway.tls.revocation_fetch import RevocationFetcher
from tests.integration.trust_env import Env, make_env
from tests.pki import CertFactory, Issued
from tests.revocation_support import (
    CrlServer,
    OpensslOcspResponder,
    index_line,
    leaf_with_responder,
    make_crl,
    revocation_urls,
    server_target,
)
from tests.tls_servers import OpensslServer, free_port


class Clock:
    """The fetcher's clock: real time plus ``ahead`` (a test moves it forward)."""

    def __init__(self) -> None:
        self.ahead = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.ahead


@pytest.fixture
def factory() -> CertFactory:
    return CertFactory()


@pytest.fixture
def root(factory: CertFactory) -> Issued:
    return factory.ca("Refresh Root")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def env(tmp_path: Path, root: Issued, clock: Clock) -> Env:
    environment = make_env(tmp_path / "store.db")
    environment.trust(root)
    built = build_fetcher(environment.connector, environment.store)
    environment.connector.fetcher = RevocationFetcher(
        environment.store,
        built.http_get,
        timeout=built.timeout,
        retry_after=0.2,
        refresh_interval=0.05,
        metrics=environment.connector.metrics_registry,
        clock=clock,
    )
    return environment


@contextlib.asynccontextmanager
async def watching(env: Env) -> AsyncIterator[None]:
    """The gateway's revocation watch (and with it the background refresh), running."""
    task = asyncio.create_task(env.connector.watch_revocations(interval=0.05))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _metric(env: Env, name: str) -> str:
    lines = env.connector.metrics_registry.render().splitlines()
    return "\n".join(line for line in lines if line.startswith(name))


async def _closed_and_recorded(env: Env, reader: asyncio.StreamReader) -> None:
    """The flow ends with the reason, then the watch records the chain (bounded waits)."""
    with pytest.raises(TrustRejected, match="no longer trusted"):
        await asyncio.wait_for(reader.read(), 10.0)
    for _ in range(100):
        if env.rejected():
            return
        await asyncio.sleep(0.05)


async def test_changed_crl_is_refreshed_and_closes_the_flow(
    env: Env, factory: CertFactory, root: Issued, crl_server: CrlServer, clock: Clock
) -> None:
    now = dt.datetime.now(dt.UTC)
    leaf = factory.leaf(root, extra_extensions=revocation_urls(crl_url=crl_server.url))
    crl_server.body = make_crl(root, [], now=now, next_update=dt.timedelta(hours=1), number=1)
    with OpensslServer(leaf) as server:
        reader, writer = await env.connector.open_connection(server_target(server))
        assert crl_server.hits == 1 and len(env.connector.registry) == 1
        crl_server.body = make_crl(root, [leaf], now=now, number=2)
        async with watching(env):
            await asyncio.sleep(0.3)  # not due yet: nothing fetched, the flow stays
            assert crl_server.hits == 1 and len(env.connector.registry) == 1
            clock.ahead = dt.timedelta(minutes=45)  # within the refresh margin
            await _closed_and_recorded(env, reader)
        writer.close()
    assert crl_server.hits >= 2
    (cached,) = env.store.list_revocation()
    assert cached.entries == 1 and cached.source is RevocationSource.CRL_URL
    (entry,) = env.rejected()
    assert entry.reasons == (Reason.REVOKED,)
    assert entry.leaf.fingerprint == leaf.fingerprint
    assert 'kind="crl",outcome="stored"' in _metric(env, "sipsgate_revocation_refreshes_total")


async def test_failed_refresh_keeps_the_old_crl_visible_in_metric(
    env: Env, factory: CertFactory, root: Issued, crl_server: CrlServer, clock: Clock
) -> None:
    now = dt.datetime.now(dt.UTC)
    leaf = factory.leaf(root, extra_extensions=revocation_urls(crl_url=crl_server.url))
    crl_server.body = make_crl(root, [], now=now, next_update=dt.timedelta(hours=1))
    with OpensslServer(leaf) as server:
        _, writer = await env.connector.open_connection(server_target(server))
        crl_server.status = 503
        clock.ahead = dt.timedelta(minutes=45)
        async with watching(env):
            for _ in range(200):  # bounded: 10 s
                if 'outcome="failed"' in _metric(env, "sipsgate_revocation_refreshes_total"):
                    break
                await asyncio.sleep(0.05)
        assert len(env.connector.registry) == 1  # soft-fail: the open flow stays
        writer.close()
    assert 'kind="crl",outcome="failed"' in _metric(env, "sipsgate_revocation_refreshes_total")
    assert "HTTP 503" in env.connector.fetcher.last_errors[crl_server.url]  # type: ignore[union-attr]
    (cached,) = env.store.list_revocation()  # the old CRL is kept until it runs out
    assert cached.entries == 0


async def test_ocsp_answer_refreshed_from_a_real_responder_closes_the_flow(
    env: Env, factory: CertFactory, root: Issued, clock: Clock
) -> None:
    env.settings(revocation="hard-fail")
    with (
        leaf_with_responder(factory, root, nmin=1) as (leaf, responder),
        OpensslServer(leaf) as server,
    ):
        reader, writer = await env.connector.open_connection(server_target(server))
        (first,) = env.store.list_revocation()
        assert first.kind is SourceKind.OCSP and first.next_update is not None
        assert first.next_update - first.this_update <= dt.timedelta(minutes=1)
        revoked_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        responder.set_lines([index_line(leaf, revoked_at=revoked_at)])
        async with watching(env):
            clock.ahead = dt.timedelta(seconds=50)  # past a quarter-validity margin
            await _closed_and_recorded(env, reader)
        writer.close()
    (cached,) = env.store.list_revocation()
    assert cached.key == first.key and cached.fingerprint != first.fingerprint
    (entry,) = env.rejected()
    assert entry.reasons == (Reason.REVOKED,)
    assert 'kind="ocsp",outcome="stored"' in _metric(env, "sipsgate_revocation_refreshes_total")


async def test_each_certificate_behind_one_responder_keeps_its_answer(
    env: Env, factory: CertFactory, root: Issued
) -> None:
    """Two leaves name the same responder: both answers stay cached and are refreshed
    on their own (the cache keys an OCSP answer by URL and serial)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    leaves = [
        factory.leaf(
            root,
            cn=f"leaf {n}",
            dns=["sip.example.test"],
            extra_extensions=revocation_urls(ocsp_url=url),
        )
        for n in "ab"
    ]
    env.settings(revocation="hard-fail")
    with OpensslOcspResponder(root, port, [index_line(leaf) for leaf in leaves]):
        for leaf in leaves:
            with OpensslServer(leaf) as server:
                _, writer = await env.connector.open_connection(server_target(server))
                writer.close()
    assert len(env.store.list_revocation()) == 2
    for leaf in leaves:  # the responder is gone: each cached answer still serves
        with OpensslServer(leaf) as server:
            _, writer = await env.connector.open_connection(server_target(server))
            writer.close()
    assert env.rejected() == ()
