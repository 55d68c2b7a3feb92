"""Uploading a CRL and listing cached revocation sources through the API; the pin rule."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import aiohttp
import pytest

from certstore.decision import decide
from certstore.model import Reason, Rule
from certstore.revocation import MAX_CRL_BYTES, RevocationSource, SourceKind
from certstore.sqlite import SqliteStore
from gateway.errors import TrustRejected
from gateway.tls import TlsConnector
from gateway.tls.policy import TlsTarget
from gateway.tls.trust import StoreTrustPolicy
from tests.admin_support import AdminHarness, login, start_admin
from tests.pki import CertFactory
from tests.revocation_support import make_crl
from tests.tls_servers import OpensslServer

API = "/api/v1"


@pytest.fixture
async def api(admin: AdminHarness) -> aiohttp.ClientSession:
    return admin.client(basic=True)


async def test_upload_crl_lists_it_and_audits(
    api: aiohttp.ClientSession, store: SqliteStore
) -> None:
    now = dt.datetime.now(dt.UTC)
    factory = CertFactory(now)
    root = factory.ca("Offline Site CA")
    leaf = factory.leaf(root)
    crl = make_crl(root, [leaf], now=now)
    async with api.post(f"{API}/revocation/crl", data=crl) as response:
        assert response.status == 201, await response.text()
        body = await response.json()
    assert body["kind"] == "crl" and body["source"] == "uploaded" and body["entries"] == 1
    async with api.get(f"{API}/revocation") as response:
        listed = await response.json()
    assert [s["key"] for s in listed] == [body["key"]]
    assert listed[0]["next_update"] is not None
    assert store.audit(limit=1)[0].action == "revocation.add"
    assert store.snapshot().revocation.crls


async def test_bad_crl_is_refused_and_changes_nothing(
    api: aiohttp.ClientSession, store: SqliteStore
) -> None:
    generation = store.snapshot().generation
    async with api.post(f"{API}/revocation/crl", data=b"not a crl") as response:
        assert response.status in (400, 422)
        assert "CRL" in await response.text()
    assert store.list_revocation() == ()
    assert store.snapshot().generation == generation


async def test_pinned_accept_is_still_rejected_when_a_crl_revokes_it(
    api: aiohttp.ClientSession, store: SqliteStore
) -> None:
    """The pin rule through the real interfaces: a pin added by the API, a CRL uploaded
    by the API, a real handshake with the pinned peer: rejected as ``revoked``, the pin
    named; with ``revocation`` off the pin accepts again."""
    now = dt.datetime.now(dt.UTC)
    factory = CertFactory(now)
    root = factory.ca("Private Root")  # not trusted: only the pin lets the leaf in
    inter = factory.ca("Private Issuing CA", issuer=root)
    leaf = factory.leaf(inter)
    body = {"decision": "accept", "certificate": leaf.pem.decode(), "expires_at": None}
    async with api.post(f"{API}/decisions", json=body) as response:
        assert response.status == 201, await response.text()
        pin_id = (await response.json())["id"]
    connector = TlsConnector(StoreTrustPolicy(store, decide=decide, identity=lambda: None))
    with OpensslServer(leaf) as server:
        target = TlsTarget.sips(
            "sip.example.test", connect_host="127.0.0.1", connect_port=server.port
        )
        _, writer = await connector.open_connection(target)  # the pin accepts
        writer.close()
        async with api.post(f"{API}/revocation/crl", data=make_crl(inter, [leaf], now=now)) as r:
            assert r.status == 201, await r.text()
        with pytest.raises(TrustRejected) as info:
            await connector.open_connection(target)
        verdict = info.value.verdict
        assert verdict.reasons == (Reason.REVOKED,) and verdict.rule == Rule.UNTRUSTED
        assert verdict.matched_pin is not None and verdict.matched_pin.id == pin_id
        assert "according to uploaded" in verdict.findings[0].message
        async with api.patch(f"{API}/settings", json={"revocation": "off"}) as response:
            assert response.status == 200, await response.text()
        _, writer = await connector.open_connection(target)
        writer.close()
    (entry,) = store.list_rejected()
    assert entry.reasons == (Reason.REVOKED,) and entry.leaf.fingerprint == leaf.fingerprint


async def test_remove_uploaded_crl_is_audited_and_unknown_is_404(
    api: aiohttp.ClientSession, store: SqliteStore
) -> None:
    now = dt.datetime.now(dt.UTC)
    factory = CertFactory(now)
    root = factory.ca("Removable CRL CA")
    async with api.post(f"{API}/revocation/crl", data=make_crl(root, [], now=now)) as response:
        fingerprint = (await response.json())["fingerprint"]
    async with api.delete(f"{API}/revocation/crl/{fingerprint}") as response:
        assert response.status == 200, await response.text()
        removed = await response.json()
    assert removed["source"] == "uploaded" and removed["fingerprint"] == fingerprint
    assert store.list_revocation() == () and not store.snapshot().revocation.crls
    event = store.audit(limit=1)[0]
    assert event.action == "revocation.remove" and event.interface == "api"
    generation = store.snapshot().generation
    async with api.delete(f"{API}/revocation/crl/{fingerprint}") as response:
        assert response.status == 404
        assert "uploaded CRL" in await response.text()
    assert store.snapshot().generation == generation


async def test_a_fetched_crl_cannot_be_removed_as_uploaded(
    api: aiohttp.ClientSession, store: SqliteStore
) -> None:
    now = dt.datetime.now(dt.UTC)
    root = CertFactory(now).ca("Fetched CRL CA")
    cached = store.put_revocation(
        make_crl(root, [], now=now),
        kind=SourceKind.CRL,
        source=RevocationSource.CRL_URL,
        url="http://127.0.0.1:9/ca.crl",
    )
    async with api.delete(f"{API}/revocation/crl/{cached.fingerprint}") as response:
        assert response.status == 404
    assert len(store.list_revocation()) == 1


async def test_listing_and_page_show_the_last_fetch_error(
    store: SqliteStore, data_dir: Path
) -> None:
    """The API listing and the Revocation page carry why the gateway's last fetch of a
    source failed, and list failing URLs that have nothing cached."""
    now = dt.datetime.now(dt.UTC)
    root = CertFactory(now).ca("Flaky CRL CA")
    cached_url, failing_url = "http://127.0.0.1:9/ca.crl", "http://127.0.0.1:9/other.crl"
    store.put_revocation(
        make_crl(root, [], now=now), kind=SourceKind.CRL, source=RevocationSource.CRL_URL,
        url=cached_url,
    )  # fmt: skip
    errors = {cached_url: "answered HTTP 503", failing_url: "no answer within the timeout"}
    harness = await start_admin(store, data_dir, revocation_errors=lambda: errors)
    try:
        api = harness.client(basic=True)
        async with api.get(f"{API}/revocation") as response:
            (listed,) = await response.json()
        assert listed["url"] == cached_url and listed["last_error"] == "answered HTTP 503"
        web_session = harness.client()
        assert (await login(web_session)).status == 303
        async with web_session.get("/revocation") as response:
            assert response.status == 200
            text = await response.text()
        assert "Flaky CRL CA" in text and "answered HTTP 503" in text
        assert failing_url in text and "no answer within the timeout" in text
        assert 'href="/revocation"' in text  # in the navigation
    finally:
        await harness.close()


async def test_huge_crl_upload_is_refused_and_changes_nothing(
    api: aiohttp.ClientSession, store: SqliteStore
) -> None:
    generation = store.snapshot().generation
    huge = b"\x30" * (MAX_CRL_BYTES + 1)
    async with api.post(f"{API}/revocation/crl", data=io.BytesIO(huge)) as response:
        assert response.status == 413, await response.text()
    assert store.list_revocation() == () and store.snapshot().generation == generation


async def test_crl_larger_than_a_certificate_upload_is_accepted(
    api: aiohttp.ClientSession, store: SqliteStore
) -> None:
    """CRLs of large CAs exceed admin.max_upload (1 MiB): the CRL route allows 8 MiB."""
    now = dt.datetime.now(dt.UTC)
    root = CertFactory(now).ca("Big CA")
    crl = make_crl(root, [], now=now, extra_serials=50_000)
    assert len(crl) > 1024 * 1024
    async with api.post(f"{API}/revocation/crl", data=io.BytesIO(crl)) as response:
        assert response.status == 201, await response.text()
        assert (await response.json())["entries"] == 50_000
