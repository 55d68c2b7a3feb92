"""Uploading a CRL and listing cached revocation sources through the API; the pin rule."""

from __future__ import annotations

import datetime as dt

import aiohttp
import pytest

from certstore.decision import decide
from certstore.model import Reason, Rule
from certstore.sqlite import SqliteStore
from gateway.errors import TrustRejected
from gateway.tls import TlsConnector
from gateway.tls.policy import TlsTarget
from gateway.tls.trust import StoreTrustPolicy
from tests.admin_support import AdminHarness
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
