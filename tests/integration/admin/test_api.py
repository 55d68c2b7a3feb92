"""The JSON API of DESIGN §7 against a real store, over real HTTPS."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from certstore.model import Finding, Peer, Reason, Rule, Transport, Verdict, VerdictKind
from certstore.sqlite import SqliteStore
from gateway.tls.advice import advise
from tests.admin_support import PKI, TEST_ACTOR, AdminHarness, admin_config, login, start_admin
from tests.pki import Issued

API = "/api/v1"


def assert_error(body: Any, code: str | None = None) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code


async def upload(api: aiohttp.ClientSession, data: bytes, **params: str) -> dict[str, Any]:
    async with api.post(f"{API}/trust", data=data, params=params) as response:
        assert response.status in (200, 201), await response.text()
        result: dict[str, Any] = await response.json()
        return result


def reject_chain(
    harness: AdminHarness,
    chain: list[Issued],
    host: str = "sip.example.net",
    address: str | None = None,
) -> int:
    """Record a chain in the rejected list as the gateway does after a failed handshake."""
    certs = [c.model for c in chain]
    verdict = Verdict(
        verdict=VerdictKind.REJECT,
        rule=Rule.UNTRUSTED,
        findings=(Finding(reason=Reason.UNKNOWN_ISSUER, message="unknown issuer", depth=0),),
        leaf_fingerprint=certs[0].fingerprint,
    )
    peer = Peer(host=host, port=5061, transport=Transport.SIPS, sni=host)
    entry = harness.store.record_handshake(verdict, certs, peer, datetime.now(UTC), address=address)
    assert entry is not None
    return int(entry.id)


@pytest.fixture
async def api(admin: AdminHarness) -> aiohttp.ClientSession:
    return admin.client(basic=True)


class TestTrustList:
    async def test_upload_pem_bundle_list_download_identical(
        self, admin: AdminHarness, api: aiohttp.ClientSession
    ) -> None:
        """A PEM with two certificates is added whole; each downloads byte for byte."""
        ca = PKI.ca("Provider Root CA")
        server = PKI.leaf(ca, cn="sip.example.net", dns=["sip.example.net"])
        result = await upload(api, ca.pem + server.pem)
        assert {c["fingerprint"] for c in result["added"]} == {
            ca.model.fingerprint,
            server.model.fingerprint,
        }
        assert result["already_present"] == []
        async with api.get(f"{API}/trust") as response:
            listed = await response.json()
            assert response.headers["X-Total-Count"] == "2"
        kinds = {e["fingerprint"]: e["kind"] for e in listed}
        assert kinds[ca.model.fingerprint] == "ca"
        assert kinds[server.model.fingerprint] == "server"
        for entry in listed:
            assert entry["source"] == "uploaded"
            assert {
                "fingerprint",
                "subject",
                "issuer",
                "not_before",
                "not_after",
                "status",
                "is_ca",
                "self_signed",
                "kind",
                "source",
                "added_at",
            } <= set(entry)
        fp = server.model.fingerprint
        async with api.get(f"{API}/trust/{fp}", params={"format": "pem"}) as response:
            assert response.status == 200
            assert response.content_type == "application/x-pem-file"
            assert "attachment" in response.headers["Content-Disposition"]
            assert ".pem" in response.headers["Content-Disposition"]
            assert await response.read() == server.pem
        async with api.get(f"{API}/trust/{fp}", params={"format": "der"}) as response:
            assert response.content_type == "application/pkix-cert"
            assert await response.read() == server.der

    async def test_upload_again_reports_already_present(self, api: aiohttp.ClientSession) -> None:
        cert = PKI.leaf(None, cn="again.example")
        await upload(api, cert.pem)
        async with api.post(f"{API}/trust", data=cert.der) as response:
            assert response.status == 200
            body = await response.json()
        assert body["added"] == []
        assert [c["fingerprint"] for c in body["already_present"]] == [cert.model.fingerprint]

    async def test_multipart_upload(self, api: aiohttp.ClientSession) -> None:
        cert = PKI.leaf(None, cn="multipart.example")
        form = aiohttp.FormData()
        form.add_field(
            "file", cert.der, filename="server.cer", content_type="application/pkix-cert"
        )
        async with api.post(f"{API}/trust", data=form) as response:
            assert response.status == 201
            body = await response.json()
        assert [c["fingerprint"] for c in body["added"]] == [cert.model.fingerprint]

    async def test_upload_garbage_is_400_and_changes_nothing(
        self, admin: AdminHarness, api: aiohttp.ClientSession
    ) -> None:
        good = PKI.leaf(None, cn="good.example")
        truncated = good.pem[: len(good.pem) // 2] + b"\n-----END CERTIFICATE-----\n"
        async with api.post(f"{API}/trust", data=good.pem + truncated) as response:
            assert response.status == 400
            assert_error(await response.json())
        async with api.post(f"{API}/trust", data=b"") as response:
            assert response.status == 400
        assert admin.store.list_trust() == ()

    async def test_details_and_not_found_twin(self, api: aiohttp.ClientSession) -> None:
        cert = PKI.leaf(None, cn="details.example", dns=["details.example"])
        await upload(api, cert.pem)
        fp = cert.model.fingerprint
        upper = ":".join(fp[i : i + 2] for i in range(0, 64, 2)).upper()
        async with api.get(f"{API}/trust/{upper}") as response:
            assert response.status == 200
            body = await response.json()
        assert body["fingerprint"] == fp
        assert body["subject_alt_names"]["dns"] == ["details.example"]
        assert body["public_key"]["type"] == "EC"
        async with api.get(f"{API}/trust/{'0' * 64}") as response:
            assert response.status == 404
            assert_error(await response.json(), "not-found")
        async with api.get(f"{API}/trust/{'ab' * 33}") as response:
            assert response.status == 422
            assert_error(await response.json(), "invalid-value")
        async with api.get(f"{API}/trust/not-a-fingerprint") as response:
            assert response.status == 404
            assert_error(await response.json(), "not-found")
        async with api.get(f"{API}/trust/{fp}", params={"format": "txt"}) as response:
            assert response.status == 422

    async def test_filters_and_paging(self, api: aiohttp.ClientSession) -> None:
        ca = PKI.ca("Filter CA")
        old = PKI.leaf(
            None,
            cn="old.example",
            not_before=datetime.now(UTC) - timedelta(days=400),
            not_after=datetime.now(UTC) - timedelta(days=1),
        )
        await upload(api, ca.pem + old.pem)
        async with api.get(f"{API}/trust", params={"kind": "ca"}) as response:
            assert [e["fingerprint"] for e in await response.json()] == [ca.model.fingerprint]
        async with api.get(f"{API}/trust", params={"status": "expired"}) as response:
            body = await response.json()
            assert [e["fingerprint"] for e in body] == [old.model.fingerprint]
            assert body[0]["status"] == "expired"
        async with api.get(f"{API}/trust", params={"limit": "1", "offset": "1"}) as response:
            assert len(await response.json()) == 1
            assert response.headers["X-Total-Count"] == "2"
        async with api.get(f"{API}/trust", params={"kind": "intermediate"}) as response:
            assert response.status == 422
        async with api.get(f"{API}/trust", params={"limit": "0"}) as response:
            assert response.status == 422

    async def test_remove_and_clear(self, admin: AdminHarness, api: aiohttp.ClientSession) -> None:
        a, b = PKI.leaf(None, cn="a.example"), PKI.leaf(None, cn="b.example")
        await upload(api, a.pem + b.pem)
        async with api.delete(f"{API}/trust/{a.model.fingerprint}") as response:
            assert response.status == 200
            assert (await response.json())["fingerprint"] == a.model.fingerprint
        async with api.delete(f"{API}/trust/{a.model.fingerprint}") as response:
            assert response.status == 404
        async with api.delete(f"{API}/trust") as response:
            assert await response.json() == {"removed": 1}
        assert admin.store.list_trust() == ()

    async def test_bundle_is_every_certificate(self, api: aiohttp.ClientSession) -> None:
        certs = [PKI.leaf(None, cn=f"bundle{i}.example") for i in range(3)]
        await upload(api, b"".join(c.pem for c in certs))
        async with api.get(f"{API}/trust/bundle.pem") as response:
            assert response.status == 200
            assert response.content_type == "application/x-pem-file"
            assert 'filename="sipsgate-trust-list.pem"' in response.headers["Content-Disposition"]
            data = await response.read()
        assert sorted(data.split(b"-----END CERTIFICATE-----\n")[:-1]) == sorted(
            c.pem.split(b"-----END CERTIFICATE-----\n")[0] for c in certs
        )

    async def test_restore_defaults(self, api: aiohttp.ClientSession) -> None:
        async with api.post(f"{API}/trust/restore-defaults") as response:
            assert response.status == 200
            body = await response.json()
        assert len(body["added"]) > 50  # the builtin CAs, removed by the fixture
        assert all(c["is_ca"] for c in body["added"])
        async with api.get(f"{API}/trust", params={"limit": "1"}) as response:
            assert response.headers["X-Total-Count"] == str(len(body["added"]))
        async with api.post(f"{API}/trust/restore-defaults") as response:
            again = await response.json()
        assert again["added"] == []
        assert len(again["already_present"]) == len(body["added"])


class TestRejected:
    async def test_list_details_and_trust_selected(
        self, admin: AdminHarness, api: aiohttp.ClientSession
    ) -> None:
        ca = PKI.ca("Unknown CA")
        leaf = PKI.leaf(ca, cn="sip.example.net")
        chain_id = reject_chain(admin, [leaf, ca], address="192.0.2.10:5062")
        async with api.get(f"{API}/rejected") as response:
            listed = await response.json()
        assert [e["id"] for e in listed] == [chain_id]
        entry = listed[0]
        assert entry["reasons"] == ["unknown-issuer"]
        assert entry["peer"] == {
            "host": "sip.example.net",
            "port": 5061,
            "transport": "sips",
            "sni": "sip.example.net",
        }
        assert entry["count"] == 1
        assert entry["overridden"] is False
        assert entry["address"] == "192.0.2.10:5062"  # dialled; the identity is the peer
        async with api.get(f"{API}/rejected/{chain_id}") as response:
            details = await response.json()
        assert [c["fingerprint"] for c in details["chain"]] == [
            leaf.model.fingerprint,
            ca.model.fingerprint,
        ]
        assert "serial" in details["chain"][0]
        body = {"fingerprints": [ca.model.fingerprint]}
        async with api.post(f"{API}/rejected/{chain_id}/trust", json=body) as response:
            assert response.status == 200
            result = await response.json()
        assert [c["fingerprint"] for c in result["added"]] == [ca.model.fingerprint]
        assert admin.store.get_trust(ca.model.fingerprint).source.value == ("trusted-from-rejected")
        async with api.get(f"{API}/rejected/{chain_id}") as response:
            assert response.status == 404

    async def test_trust_needs_fingerprints(
        self, admin: AdminHarness, api: aiohttp.ClientSession
    ) -> None:
        chain_id = reject_chain(admin, [PKI.leaf(None, cn="x.example")])
        for body in ({}, {"fingerprints": []}, {"fingerprints": ["zz"]}, {"other": 1}):
            async with api.post(f"{API}/rejected/{chain_id}/trust", json=body) as response:
                assert response.status == 422, body
                assert_error(await response.json())
        async with api.post(f"{API}/rejected/{chain_id}/trust", data=b"{not json") as response:
            assert response.status == 400
            assert_error(await response.json(), "invalid-json")
        async with api.post(
            f"{API}/rejected/999999/trust", json={"fingerprints": ["a" * 64]}
        ) as response:
            assert response.status == 404

    async def test_accept_and_reject_pin_the_leaf(
        self, admin: AdminHarness, api: aiohttp.ClientSession
    ) -> None:
        leaf = PKI.leaf(None, cn="accept.example")
        chain_id = reject_chain(admin, [leaf])
        expires = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
        body = {"scope": "accept.example:5061", "expires_at": expires.isoformat()}
        async with api.post(f"{API}/rejected/{chain_id}/accept", json=body) as response:
            assert response.status == 201, await response.text()
            pin = await response.json()
        assert pin["decision"] == "accept"
        assert pin["match"] == "certificate"
        assert pin["fingerprint"] == leaf.model.fingerprint
        assert pin["scope"] == "accept.example:5061"
        assert pin["expires_at"].startswith(expires.strftime("%Y-%m-%dT%H:%M:%S"))
        other = PKI.leaf(None, cn="reject.example")
        other_id = reject_chain(admin, [other], host="reject.example")
        async with api.post(f"{API}/rejected/{other_id}/reject") as response:
            assert response.status == 201
            assert (await response.json())["decision"] == "reject"
        async with api.post(
            f"{API}/rejected/{other_id}/reject", json={"match": "fingerprint"}
        ) as response:
            assert response.status == 422
        async with api.post(f"{API}/rejected/{other_id}/reject", json={"scope": "a b"}) as r:
            assert r.status == 422

    async def test_remove_and_clear(self, admin: AdminHarness, api: aiohttp.ClientSession) -> None:
        first = reject_chain(admin, [PKI.leaf(None, cn="one.example")])
        reject_chain(admin, [PKI.leaf(None, cn="two.example")])
        async with api.delete(f"{API}/rejected/{first}") as response:
            assert await response.json() == {"removed": first}
        async with api.delete(f"{API}/rejected/{first}") as response:
            assert response.status == 404
        async with api.delete(f"{API}/rejected") as response:
            assert await response.json() == {"removed": 1}
        async with api.get(f"{API}/rejected/abc") as response:
            assert response.status == 404
        async with api.get(f"{API}/rejected/{2**63}") as response:
            assert response.status == 422


class TestDecisions:
    async def test_add_list_remove(self, api: aiohttp.ClientSession) -> None:
        cert = PKI.leaf(None, cn="pinned.example")
        body = {
            "decision": "reject",
            "match": "public-key",
            "certificate": cert.pem.decode(),
            "note": "compromised",
        }
        async with api.post(f"{API}/decisions", json=body) as response:
            assert response.status == 201, await response.text()
            pin = await response.json()
        assert pin["fingerprint"] == cert.model.spki_fingerprint
        assert pin["scope"] is None
        assert pin["note"] == "compromised"
        assert pin["created_by"] == "admin"
        async with api.get(f"{API}/decisions") as response:
            assert [p["id"] for p in await response.json()] == [pin["id"]]
        async with api.delete(f"{API}/decisions/{pin['id']}") as response:
            assert response.status == 200
        async with api.delete(f"{API}/decisions/{pin['id']}") as response:
            assert response.status == 404
            assert_error(await response.json(), "not-found")

    @pytest.mark.parametrize(
        "body",
        [
            {"match": "certificate", "fingerprint": "a" * 64},
            {"decision": "maybe", "fingerprint": "a" * 64},
            {"decision": "accept"},
            {"decision": "accept", "fingerprint": "a" * 63},
            {"decision": "accept", "fingerprint": "a" * 64, "certificate": "x"},
            {"decision": "accept", "fingerprint": "a" * 64, "expires_at": "tomorrow"},
            {"decision": "accept", "fingerprint": "a" * 64, "scope": "no spaces allowed"},
            {"decision": "accept", "fingerprint": "a" * 64, "colour": "red"},
        ],
    )
    async def test_invalid_bodies_are_422(
        self, api: aiohttp.ClientSession, body: dict[str, Any]
    ) -> None:
        async with api.post(f"{API}/decisions", json=body) as response:
            assert response.status == 422, body
            assert_error(await response.json())
        async with api.get(f"{API}/decisions") as response:
            assert await response.json() == []

    async def test_certificate_that_is_not_pem_is_400(self, api: aiohttp.ClientSession) -> None:
        body = {"decision": "accept", "certificate": "hello"}
        async with api.post(f"{API}/decisions", json=body) as response:
            assert response.status == 400
            assert_error(await response.json(), "unparseable")


class TestSettings:
    async def test_round_trip_password_never_returned(
        self, admin: AdminHarness, api: aiohttp.ClientSession
    ) -> None:
        async with api.get(f"{API}/settings") as response:
            before = await response.json()
        assert before["accept_all_certificates"] is False
        assert before["http_auth_password_set"] is False
        change = {
            "accept_all_certificates": True,
            "http_auth_username": "7C2F80C6E5C2",
            "http_auth_password": "s3cret-digest",
        }
        async with api.patch(f"{API}/settings", json=change) as response:
            assert response.status == 200
            text = await response.text()
        after = json.loads(text)
        assert "s3cret-digest" not in text
        assert "http_auth_password" not in after
        assert after["http_auth_password_set"] is True
        assert after["accept_all_certificates"] is True
        assert after["http_auth_username"] == "7C2F80C6E5C2"
        async with api.get(f"{API}/settings") as response:
            assert "s3cret-digest" not in await response.text()
        assert admin.store.get_settings().http_auth_password == "s3cret-digest"

    @pytest.mark.parametrize(
        "body",
        [
            {"accept_all_certificates": "yes"},
            {"no_such_setting": True},
            {"http_auth_username": "x" * 75},
            {},
        ],
    )
    async def test_invalid_changes_change_nothing(
        self, admin: AdminHarness, api: aiohttp.ClientSession, body: dict[str, Any]
    ) -> None:
        before = admin.store.get_settings()
        async with api.patch(f"{API}/settings", json=body) as response:
            assert response.status == 422
            assert_error(await response.json())
        assert admin.store.get_settings() == before
        async with api.patch(f"{API}/settings", json=[1, 2]) as response:
            assert response.status == 400


class TestOperations:
    async def test_audit_paged_newest_first(self, api: aiohttp.ClientSession) -> None:
        for i in range(3):
            await upload(api, PKI.leaf(None, cn=f"audit{i}.example").pem)
        async with api.get(f"{API}/audit", params={"limit": "2"}) as response:
            first = await response.json()
            link = response.headers["Link"]
        assert len(first) == 2
        assert first[0]["id"] > first[1]["id"]
        assert first[0]["actor"] == "admin"
        assert first[0]["interface"] == "api"
        assert 'rel="next"' in link
        async with api.get(
            f"{API}/audit", params={"limit": "2", "before_id": str(first[-1]["id"])}
        ) as response:
            second = await response.json()
        assert second
        assert all(e["id"] < first[-1]["id"] for e in second)
        async with api.get(f"{API}/audit", params={"limit": "1000"}) as response:
            assert response.status == 422

    async def test_expiring(self, api: aiohttp.ClientSession) -> None:
        soon = PKI.leaf(None, cn="soon.example", not_after=datetime.now(UTC) + timedelta(days=10))
        later = PKI.leaf(None, cn="later.example")
        await upload(api, soon.pem + later.pem)
        async with api.get(f"{API}/expiring", params={"days": "30"}) as response:
            items = await response.json()
        refs = [i["certificate"]["fingerprint"] for i in items]
        assert soon.model.fingerprint in refs
        assert later.model.fingerprint not in refs
        async with api.get(f"{API}/expiring", params={"days": "-1"}) as response:
            assert response.status == 422

    async def test_backup_restore_round_trip(
        self, admin: AdminHarness, api: aiohttp.ClientSession
    ) -> None:
        cert = PKI.leaf(None, cn="backup.example")
        await upload(api, cert.pem)
        async with api.get(f"{API}/backup") as response:
            assert response.status == 200
            assert "sipsgate-backup-" in response.headers["Content-Disposition"]
            document = await response.read()
        async with api.delete(f"{API}/trust") as response:
            assert response.status == 200
        async with api.post(
            f"{API}/restore", data=document, headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 200, await response.text()
            summary = await response.json()
        assert summary["trust"] == 1
        assert [e.certificate for e in admin.store.list_trust()] == [cert.model]

    async def test_a_backup_larger_than_max_upload_is_restored(
        self, store: SqliteStore, data_dir: Path
    ) -> None:
        """A backup declares its Content-Length and exceeds ``admin.max_upload``: the restore
        route has its own limit, which the first body check must honour too."""
        store.restore_defaults(actor=TEST_ACTOR)
        harness = await start_admin(store, data_dir, config=admin_config(data_dir, max_upload=4096))
        try:
            api = harness.client(basic=True)
            async with api.get(f"{API}/backup") as response:
                document = await response.read()
            assert len(document) > 4096
            trusted = store.list_trust()
            store.clear_trust(actor=TEST_ACTOR)
            async with api.post(
                f"{API}/restore", data=document, headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 200, await response.text()
            assert store.list_trust() == trusted
            async with api.post(f"{API}/trust", data=b"x" * 5000) as response:
                assert response.status == 413  # other routes keep admin.max_upload
        finally:
            await harness.close()

    async def test_restore_of_a_damaged_backup_changes_nothing(
        self, admin: AdminHarness, api: aiohttp.ClientSession
    ) -> None:
        cert = PKI.leaf(None, cn="keep.example")
        await upload(api, cert.pem)
        async with api.get(f"{API}/backup") as response:
            document = bytearray(await response.read())
        document[len(document) // 2] ^= 0x01
        async with api.post(f"{API}/restore", data=bytes(document)) as response:
            assert response.status == 400
            assert_error(await response.json())
        assert [e.certificate for e in admin.store.list_trust()] == [cert.model]

    async def test_backup_with_secrets_is_audited(
        self, admin: AdminHarness, api: aiohttp.ClientSession
    ) -> None:
        async with api.get(f"{API}/backup", params={"include_secrets": "true"}) as response:
            assert response.status == 200
        events = admin.store.audit(limit=5)
        assert events[0].action == "backup.export"
        assert json.loads(events[0].details)["include_secrets"] is True

    async def test_healthz_and_metrics(self, admin: AdminHarness) -> None:
        anonymous = admin.client()
        async with anonymous.get("/healthz") as response:
            assert response.status == 200
            assert (await response.json())["status"] == "ok"
        async with anonymous.get("/metrics") as response:
            assert response.status == 401
        api = admin.client(basic=True)
        reject_chain(admin, [PKI.leaf(None, cn="metric.example")])
        async with api.get("/metrics") as response:
            assert response.status == 200
            assert response.content_type == "text/plain"
            text = await response.text()
        assert "sipsgate_rejected_chains 1" in text
        assert "sipsgate_admin_requests_total{" in text


class TestProvisioningApply:
    DOCUMENT = (
        b"SystemSettings.global.Security_Certificates_AcceptAllCertificates=1\n"
        b"Security.global.HTTPAuthUsername=7C2F80C6E5C2\n"
        b"Security.global.HTTPAuthPassword=prov-secret\n"
    )

    async def test_dry_run_then_apply(
        self, admin: AdminHarness, api: aiohttp.ClientSession
    ) -> None:
        async with api.post(
            f"{API}/provisioning/apply", params={"dry_run": "true"}, data=self.DOCUMENT
        ) as response:
            assert response.status == 200, await response.text()
            checked = await response.json()
        assert checked["dry_run"] is True
        assert admin.store.get_settings().accept_all_certificates is False
        async with api.post(f"{API}/provisioning/apply", data=self.DOCUMENT) as response:
            assert response.status == 200
            text = await response.text()
        assert json.loads(text)["status"] == "applied"
        assert "prov-secret" not in text
        settings = admin.store.get_settings()
        assert settings.accept_all_certificates is True
        assert settings.http_auth_username == "7C2F80C6E5C2"

    async def test_invalid_document_changes_nothing(
        self, admin: AdminHarness, api: aiohttp.ClientSession
    ) -> None:
        bad = self.DOCUMENT + b"Security.global.HTTPAuthUsername=" + b"u" * 75 + b"\n"
        async with api.post(f"{API}/provisioning/apply", data=bad) as response:
            assert response.status == 422
            assert (await response.json())["status"] == "invalid"
        assert admin.store.get_settings().accept_all_certificates is False
        async with api.post(f"{API}/provisioning/apply", data=b"\xff\xfe<x") as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "invalid-document"


class TestReasonsExplained:
    async def test_rejected_chain_page_gives_probes_sentence_and_fix(
        self, admin: AdminHarness
    ) -> None:
        """Each reason code on the chain page comes with the sentence `probe` prints."""
        ca = PKI.ca("Unknown Provider CA")
        leaf = PKI.leaf(ca, cn="sip.example.net", dns=["sip.example.net"])
        chain_id = reject_chain(admin, [leaf, ca])
        entry = admin.store.get_rejected(chain_id)
        expected = advise(
            "unknown-issuer",
            chain=entry.chain,
            peer=entry.peer,
            now=datetime.now(UTC),
            rejected_id=chain_id,
        )
        browser = admin.client()
        await login(browser)
        async with browser.get(f"/rejected/{chain_id}") as response:
            assert response.status == 200
            page = html.unescape(await response.text())
        assert f"unknown-issuer</span> {expected.sentence}</li>" in page
        assert f"sipsgate certs trust {chain_id}" in expected.sentence


class TestExpiredCertificateTrap:
    """Trusting an expired certificate looked like a fix: it is refused, with what helps."""

    async def test_api_refuses_to_trust_an_expired_certificate(self, admin: AdminHarness) -> None:
        expired = PKI.leaf(None, cn="sip.example.net", dns=["sip.example.net"],
                           valid_days=(-30, -1))  # fmt: skip
        chain_id = reject_chain(admin, [expired])
        before = admin.store.snapshot()
        api = admin.client(basic=True)
        body = {"fingerprints": [expired.model.fingerprint]}
        async with api.post(f"{API}/rejected/{chain_id}/trust", json=body) as response:
            assert response.status == 422
            answer = await response.json()
        assert_error(answer, "certificate-out-of-date")
        assert "expired on" in answer["error"]["message"]
        assert f"/api/v1/rejected/{chain_id}/accept" in answer["error"]["message"]
        after = admin.store.snapshot()
        assert len(after.trust) == len(before.trust)
        assert admin.store.get_rejected(chain_id).id == chain_id  # still listed

    async def test_page_does_not_offer_an_expired_certificate_to_trust(
        self, admin: AdminHarness
    ) -> None:
        expired = PKI.leaf(None, cn="sip.example.net", dns=["sip.example.net"],
                           valid_days=(-30, -1))  # fmt: skip
        chain_id = reject_chain(admin, [expired])
        browser = admin.client()
        await login(browser)
        async with browser.get(f"/rejected/{chain_id}") as response:
            page = await response.text()
        checkbox = page[page.index('name="fingerprint"') :].split(">", 1)[0]
        assert "disabled" in checkbox
        assert "checked" not in checkbox
        assert "trusting it would not fix the connection" in page
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        form = {"csrf_token": token, "fingerprint": expired.model.fingerprint}
        async with browser.post(f"/rejected/{chain_id}/trust", data=form) as response:
            shown = html.unescape(await response.text())
        assert "expired on" in shown
        assert not any(
            e.certificate.fingerprint == expired.model.fingerprint
            for e in admin.store.snapshot().trust
        )


class TestAnyPeerTrap:
    """An accept from a chain page applied to any peer when the field was left as shown."""

    async def accept(self, browser: aiohttp.ClientSession, chain_id: int, **fields: str) -> str:
        async with browser.get(f"/rejected/{chain_id}") as response:
            page = await response.text()
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        form = {"csrf_token": token, "match": "certificate", **fields}
        async with browser.post(f"/rejected/{chain_id}/accept", data=form) as response:
            return html.unescape(await response.text())

    async def test_destination_is_prefilled_and_any_peer_is_explicit(
        self, admin: AdminHarness
    ) -> None:
        ca = PKI.ca("Unknown Provider CA")
        leaf = PKI.leaf(ca, cn="sip.example.net", dns=["sip.example.net"])
        chain_id = reject_chain(admin, [leaf, ca])
        browser = admin.client()
        await login(browser)
        async with browser.get(f"/rejected/{chain_id}") as response:
            page = await response.text()
        scope_input = page[page.index('id="accept-scope"') :].split(">", 1)[0]
        assert 'value="sip.example.net:5061"' in scope_input  # a real value, not a placeholder

        shown = await self.accept(browser, chain_id, scope="")
        assert "Enter the destination" in shown
        assert not admin.store.list_pins()

        await self.accept(browser, chain_id, scope="sip.example.net:5061")
        (pin,) = admin.store.list_pins()
        assert pin.scope == "sip.example.net:5061"

    async def test_any_peer_when_ticked(self, admin: AdminHarness) -> None:
        ca = PKI.ca("Unknown Provider CA")
        leaf = PKI.leaf(ca, cn="sip.example.net", dns=["sip.example.net"])
        chain_id = reject_chain(admin, [leaf, ca])
        browser = admin.client()
        await login(browser)
        await self.accept(browser, chain_id, scope="sip.example.net:5061", any_peer="on")
        (pin,) = admin.store.list_pins()
        assert pin.scope is None


async def test_pages_name_a_favicon(admin: AdminHarness) -> None:
    browser = admin.client()
    await login(browser)
    async with browser.get("/") as response:
        page = await response.text()
    href = page.split('<link rel="icon" type="image/svg+xml" href="', 1)[1].split('"', 1)[0]
    async with browser.get(href) as response:
        assert response.status == 200
        assert (await response.read()).startswith(b"<svg")
