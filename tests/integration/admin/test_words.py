"""Words and notation on the admin pages (issue #16 point 7): times to the second,
plural forms, sizes in KiB/MiB, audit entries as sentences with the real actor,
builtin roots named apart, the upload area that names what it added, an expiry banner
that can be hidden without a script, and addresses as the URIs users type."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import aiohttp

from certstore import notation
from certstore.model import (
    Actor,
    Finding,
    Peer,
    PinDecision,
    PinMatch,
    Reason,
    Rule,
    Transport,
    TrustSource,
    Verdict,
    VerdictKind,
)
from certstore.store import PinRequest
from tests.admin_support import PKI, TEST_ACTOR, AdminHarness, login
from tests.pki import Issued

API = "/api/v1"
CLI = Actor(name="operator", interface="cli")


def reject(harness: AdminHarness, chain: list[Issued], host: str) -> int:
    certs = [c.model for c in chain]
    verdict = Verdict(
        verdict=VerdictKind.REJECT,
        rule=Rule.UNTRUSTED,
        findings=(Finding(reason=Reason.UNKNOWN_ISSUER, message="unknown issuer", depth=0),),
        leaf_fingerprint=certs[0].fingerprint,
    )
    peer = Peer(host=host, port=5061, transport=Transport.SIPS, sni=host)
    entry = harness.store.record_handshake(verdict, certs, peer, datetime.now(UTC))
    assert entry is not None
    return int(entry.id)


async def text_of(browser: aiohttp.ClientSession, path: str) -> str:
    async with browser.get(path) as response:
        assert response.status == 200
        return html.unescape(await response.text())


def token_of(page: str) -> str:
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


async def logged_in(admin: AdminHarness) -> aiohttp.ClientSession:
    browser = admin.client()
    await login(browser)
    return browser


async def test_rejected_pages_write_times_to_the_second_and_peers_as_uris(
    admin: AdminHarness,
) -> None:
    ca = PKI.ca("Unknown Provider CA")
    chain_id = reject(admin, [PKI.leaf(ca, cn="sip.example.net", dns=["sip.example.net"]), ca],
                      "sip.example.net")  # fmt: skip
    entry = admin.store.get_rejected(chain_id)
    api = admin.client(basic=True)
    async with api.get(f"{API}/rejected/{chain_id}") as response:
        iso = (await response.json())["last_seen"]  # the API keeps ISO 8601
    assert "T" in iso
    browser = await logged_in(admin)
    for path in ("/rejected", f"/rejected/{chain_id}"):
        page = await text_of(browser, path)
        assert iso not in page
        assert notation.when(entry.last_seen) in page  # "2026-06-01 12:00:05 UTC"
        assert "sips:sip.example.net:5061" in page
        assert "sips://" not in page
    assert "seen 1 time)" in await text_of(browser, f"/rejected/{chain_id}")


async def test_upload_names_and_links_what_was_added_at_the_top_in_plural_forms(
    admin: AdminHarness,
) -> None:
    browser = await logged_in(admin)
    page = await text_of(browser, "/trust")
    assert "at most 1 MiB." in page  # admin.max_upload, not "1048576 bytes"
    first = PKI.ca("Alpha Provider CA")
    form = aiohttp.FormData()
    form.add_field("csrf_token", token_of(page))
    form.add_field("file", first.pem, filename="alpha.pem")
    async with browser.post("/trust/upload", data=form) as response:
        shown = html.unescape(await response.text())
        assert "added=" in str(response.url)
    assert "1 certificate added: Alpha Provider CA." in shown
    assert "(s)" not in shown
    assert f'<a href="/trust/{first.model.fingerprint}">Alpha Provider CA</a>' in shown
    assert shown.index('id="upload-area"') < shown.index('id="trust-table"')

    second = PKI.ca("Beta Provider CA")
    form = aiohttp.FormData()
    form.add_field("csrf_token", token_of(shown))
    form.add_field("file", first.pem + second.pem, filename="both.pem")
    async with browser.post("/trust/upload", data=form) as response:
        shown = html.unescape(await response.text())
    assert "1 certificate added: Beta Provider CA; 1 already in the trust list." in shown
    assert "Already in the trust list:" in shown


async def test_builtin_roots_with_the_same_name_are_told_apart(admin: AdminHarness) -> None:
    admin.store.restore_defaults(actor=TEST_ACTOR)
    globalsign = [
        e for e in admin.store.snapshot().trust if e.certificate.display_name == "GlobalSign"
    ]
    assert len(globalsign) >= 2, "the shipped roots hold several CN=GlobalSign"
    browser = await logged_in(admin)
    page = await text_of(browser, "/trust?q=GlobalSign")
    table = page[page.index('id="trust-table"') : page.index("</table>")]
    names = re.findall(r'<a href="/trust/[0-9a-f]{64}" title="[^"]*">([^<]+)</a>', table)
    shown = [n for n in names if n.startswith("GlobalSign")]
    assert len(shown) >= len(globalsign)
    assert len(set(shown)) == len(shown), shown  # no two rows with the same name
    assert "GlobalSign (GlobalSign Root CA - R3)" in shown
    detail = await text_of(browser, f"/trust/{globalsign[0].certificate.fingerprint}")
    assert "<h1>GlobalSign (" in detail


async def test_audit_entries_are_sentences_with_details_and_the_real_actor(
    admin: AdminHarness,
) -> None:
    leaf = PKI.leaf(None, cn="pbx.example.net", dns=["pbx.example.net"])
    admin.store.add_pin(
        PinRequest(
            decision=PinDecision.ACCEPT,
            match=PinMatch.CERTIFICATE,
            fingerprint=leaf.model.fingerprint,
            scope="pbx.example.net:5061",
        ),
        actor=CLI,
    )
    browser = await logged_in(admin)
    settings = await text_of(browser, "/settings")
    async with browser.post(
        "/settings", data={"csrf_token": token_of(settings), "allow_wildcards": "on"}
    ) as response:
        assert response.status == 200
    page = await text_of(browser, "/audit")
    table = page[page.index('id="audit-table"') : page.index("</table>")]
    rows = table.split("<tr>")[1:]
    changed = next(r for r in rows if "Changed the settings:" in r)
    assert "allow_wildcards" in changed
    assert '<span class="badge origin">admin</span>' in changed
    pinned = next(r for r in rows if "Added pin 1: an accept pin on a certificate" in r)
    assert "for pbx.example.net:5061" in pinned
    assert '<span class="badge origin">cli</span> <small>(operator)</small>' in pinned
    # The raw JSON is behind a toggle, not in the row's text.
    assert "<details" in pinned and "<summary>Details</summary>" in pinned
    before_toggle = pinned.split("<details", 1)[0]
    assert '"fingerprint"' not in before_toggle


async def test_the_expiry_banner_can_be_hidden_and_comes_back_with_news(
    admin: AdminHarness,
) -> None:
    soon = PKI.ca("Soon Expiring CA", valid_days=(-30, 10))
    admin.store.add_trust([soon.model], source=TrustSource.UPLOADED, actor=TEST_ACTOR)
    browser = await logged_in(admin)
    page = await text_of(browser, "/pins")
    assert 'id="expiry-banner"' in page
    assert "1 certificate expires within 30 days" in page
    async with browser.post(
        "/banner/dismiss", data={"csrf_token": token_of(page), "back": "/pins"}
    ) as response:
        assert str(response.url).endswith("/pins")
        assert 'id="expiry-banner"' not in await response.text()
    assert 'id="expiry-banner"' not in await text_of(browser, "/trust")
    later = PKI.ca("Later Expiring CA", valid_days=(-30, 20))
    admin.store.add_trust([later.model], source=TrustSource.UPLOADED, actor=TEST_ACTOR)
    page = await text_of(browser, "/trust")
    assert 'id="expiry-banner"' in page
    assert "2 certificates expire within 30 days" in page
