"""The remaining traps of the admin pages (issue #16 point 5): pins without subject or
origin, accept-all switched on by a stray tick, and rejected entries that stay stale
after their peer was trusted (with an accept-all count that went stale with them)."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import aiohttp

from certstore.decision import decide
from certstore.model import Actor, Peer, PinDecision, PinMatch, Transport
from certstore.store import PinRequest
from certstore.x509 import to_pem
from tests.admin_support import PKI, AdminHarness, login
from tests.pki import Issued

API = "/api/v1"


def handshake(harness: AdminHarness, chain: list[Issued], host: str) -> int | None:
    """A handshake as the gateway judges and records it: the real decision, then the
    store's record (a rejected entry, or a first-use pin)."""
    certs = [c.model for c in chain]
    peer = Peer(host=host, port=5061, transport=Transport.SIPS, sni=host)
    now = datetime.now(UTC)
    verdict = decide(certs, peer, now, harness.store.snapshot())
    entry = harness.store.record_handshake(verdict, certs, peer, now)
    return None if entry is None else int(entry.id)


async def page_text(browser: aiohttp.ClientSession, path: str) -> str:
    async with browser.get(path) as response:
        assert response.status == 200
        return html.unescape(await response.text())


def token_of(page: str) -> str:
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def section(page: str, table_id: str) -> str:
    start = page.index(f'id="{table_id}"')
    return page[start : page.index("</table>", start)]


class TestPinsPage:
    async def test_each_pin_shows_subject_scope_note_expiry_and_where_it_came_from(
        self, admin: AdminHarness
    ) -> None:
        ca = PKI.ca("Provider CA")
        by_admin = PKI.leaf(ca, cn="admin-pinned.example", dns=["admin-pinned.example"])
        by_cli = PKI.leaf(ca, cn="cli-pinned.example", dns=["cli-pinned.example"])
        by_prov = PKI.leaf(ca, cn="prov-pinned.example", dns=["prov-pinned.example"])
        first = PKI.leaf(ca, cn="tofu.example", dns=["tofu.example"])
        api = admin.client(basic=True)
        expires = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
        body = {
            "decision": "accept",
            "certificate": to_pem(by_admin.model).decode(),
            "scope": "admin-pinned.example:5061",
            "note": "renewal pending at the provider",
            "expires_at": expires.isoformat(),
        }
        async with api.post(f"{API}/decisions", json=body) as response:
            assert response.status == 201
        for issued, actor in (
            (by_cli, Actor(name="operator", interface="cli")),
            (by_prov, Actor(name="provisioning", interface="provisioning")),
        ):
            admin.store.add_pin(
                PinRequest(
                    decision=PinDecision.REJECT,
                    match=PinMatch.CERTIFICATE,
                    fingerprint=issued.model.fingerprint,
                    certificate=issued.model,
                ),
                actor=actor,
            )
        admin.store.update_settings(
            {"trust_on_first_use": True}, actor=Actor(name="t", interface="cli")
        )
        assert handshake(admin, [first, ca], "tofu.example") is not None  # the first-use pin

        browser = admin.client()
        await login(browser)
        table = section(await page_text(browser, "/pins"), "pins-table")
        rows = {
            cn: next(r for r in table.split("<tr")[1:] if cn in r)
            for cn in ("admin-pinned.example", "cli-pinned.example", "prov-pinned.example",
                       "tofu.example")
        }  # fmt: skip
        admin_row = rows["admin-pinned.example"]
        assert "CN=admin-pinned.example" in admin_row  # the subject, not only a fingerprint
        assert "admin-pinned.example:5061" in admin_row
        assert "renewal pending at the provider" in admin_row
        assert expires.strftime("%Y-%m-%d %H:%M:%S") in admin_row
        assert '<span class="badge origin">admin</span>' in admin_row
        assert (
            '<span class="badge origin">cli</span> <small>(operator)</small>'
            in rows["cli-pinned.example"]
        )
        assert "<strong>any peer</strong>" in rows["cli-pinned.example"]
        assert '<span class="badge origin">provisioning</span>' in rows["prov-pinned.example"]
        assert '<span class="badge origin">first-use</span>' in rows["tofu.example"]
        assert "tofu.example:5061" in rows["tofu.example"]


class TestAcceptAllConfirmation:
    async def post_settings(self, browser: aiohttp.ClientSession, **fields: str) -> str:
        token = token_of(await page_text(browser, "/settings"))
        async with browser.post("/settings", data={"csrf_token": token, **fields}) as response:
            return html.unescape(await response.text())

    async def test_a_tick_alone_does_not_switch_accept_all_on(self, admin: AdminHarness) -> None:
        browser = admin.client()
        await login(browser)
        shown = await self.post_settings(browser, accept_all_certificates="on")
        assert "Accept all certificates was not switched on" in shown
        assert "Nothing was changed" in shown
        assert admin.store.get_settings().accept_all_certificates is False
        assert 'id="accept-all-warning"' not in shown

        shown = await self.post_settings(
            browser, accept_all_certificates="on", accept_all_confirmed="on"
        )
        assert admin.store.get_settings().accept_all_certificates is True
        assert 'id="accept-all-warning"' in shown
        # While it is on, saving other settings needs no second confirmation; off needs none.
        await self.post_settings(browser, accept_all_certificates="on", allow_wildcards="on")
        assert admin.store.get_settings().allow_wildcards is True
        await self.post_settings(browser)
        assert admin.store.get_settings().accept_all_certificates is False

    async def test_the_api_switches_it_on_as_asked(self, admin: AdminHarness) -> None:
        api = admin.client(basic=True)
        body = {"accept_all_certificates": True}
        async with api.patch(f"{API}/settings", json=body) as response:
            assert response.status == 200
        assert admin.store.get_settings().accept_all_certificates is True


class TestResolvedRejectedEntries:
    async def test_an_entry_whose_ca_is_trusted_later_is_marked_resolved_and_kept(
        self, admin: AdminHarness
    ) -> None:
        ca = PKI.ca("Provider CA")
        other_ca = PKI.ca("Other CA")
        leaf = PKI.leaf(ca, cn="sip.example.net", dns=["sip.example.net"])
        other = PKI.leaf(other_ca, cn="other.example.net", dns=["other.example.net"])
        fixed = handshake(admin, [leaf, ca], "sip.example.net")
        still = handshake(admin, [other, other_ca], "other.example.net")
        assert fixed is not None and still is not None
        api = admin.client(basic=True)
        # The CA is trusted by an upload, not from the rejected entry.
        async with api.post(f"{API}/trust", data=to_pem(ca.model)) as response:
            assert response.status == 201
        async with api.get(f"{API}/rejected") as response:
            listed = {e["id"]: e for e in await response.json()}
        assert listed[fixed]["resolved"] is True
        assert listed[still]["resolved"] is False
        async with api.get(f"{API}/rejected/{fixed}") as response:
            assert (await response.json())["resolved"] is True

        browser = admin.client()
        await login(browser)
        page = await page_text(browser, "/rejected")
        assert "other.example.net" in section(page, "rejected-table")
        assert "sip.example.net" not in section(page, "rejected-table")
        assert "sip.example.net" in section(page, "resolved-table")  # kept, shown apart
        detail = await page_text(browser, f"/rejected/{fixed}")
        assert 'id="resolved-note"' in detail

    async def test_an_accept_pin_for_the_peer_resolves_it(self, admin: AdminHarness) -> None:
        leaf = PKI.leaf(None, cn="pbx.example.net", dns=["pbx.example.net"])
        chain_id = handshake(admin, [leaf], "pbx.example.net")
        assert chain_id is not None
        api = admin.client(basic=True)
        body = {
            "decision": "accept",
            "fingerprint": leaf.model.fingerprint,
            "scope": "elsewhere.example.net:5061",
        }
        async with api.post(f"{API}/decisions", json=body) as response:
            assert response.status == 201
        async with api.get(f"{API}/rejected/{chain_id}") as response:
            assert (await response.json())["resolved"] is False  # a pin for another peer
        body["scope"] = "pbx.example.net:5061"
        async with api.post(f"{API}/decisions", json=body) as response:
            assert response.status == 201
        async with api.get(f"{API}/rejected/{chain_id}") as response:
            assert (await response.json())["resolved"] is True

    async def test_accept_all_count_is_live(self, admin: AdminHarness) -> None:
        admin.store.update_settings(
            {"accept_all_certificates": True}, actor=Actor(name="t", interface="cli")
        )
        ca = PKI.ca("Provider CA")
        other_ca = PKI.ca("Other CA")
        handshake(admin, [PKI.leaf(ca, cn="a.example", dns=["a.example"]), ca], "a.example")
        handshake(admin, [PKI.leaf(other_ca, cn="b.example", dns=["b.example"]), other_ca],
                  "b.example")  # fmt: skip
        browser = admin.client()
        await login(browser)

        def count(page: str) -> str:
            found = re.search(r'id="overridden-count">([^<]*)<', page)
            assert found is not None
            return found.group(1)

        assert count(await page_text(browser, "/settings")).startswith("2 of 2 ")
        api = admin.client(basic=True)
        async with api.post(f"{API}/trust", data=to_pem(ca.model)) as response:
            assert response.status == 201
        # a.example is trusted now on its own: accept-all no longer carries it.
        assert count(await page_text(browser, "/settings")).startswith("1 of 1 ")
        assert "1 of these chains is accepted now only" in await page_text(browser, "/rejected")
        async with api.get("/metrics") as response:
            assert "sipsgate_rejected_chains_overridden 1" in await response.text()
