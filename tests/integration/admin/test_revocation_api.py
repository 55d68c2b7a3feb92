"""Uploading a CRL and listing cached revocation sources through the API."""

from __future__ import annotations

import datetime as dt

import aiohttp
import pytest

from certstore.sqlite import SqliteStore
from tests.admin_support import AdminHarness
from tests.pki import CertFactory
from tests.revocation_support import make_crl

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
