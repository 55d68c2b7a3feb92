"""The chain picture and the expiry timeline on the pages, over real HTTPS, real store."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import aiohttp

from certstore.model import PinDecision, PinMatch, TrustSource
from certstore.store import PinRequest
from gateway.admin.security import CSP
from tests.admin_support import PKI, TEST_ACTOR, AdminHarness, login
from tests.integration.admin.test_api import reject_chain
from tests.pki import name

SVG = "{http://www.w3.org/2000/svg}"


def svgs(page: str, cls: str) -> list[ET.Element]:
    """Every inline SVG of ``cls`` on the page, parsed as XML (so it must be well formed)."""
    found = re.findall(rf'<svg [^>]*class="{cls}".*?</svg>', page, flags=re.S)
    return [ET.fromstring(s) for s in found]  # noqa: S314 (our own pages, under test)


def link_states(svg: ET.Element) -> list[str]:
    return [g.get("data-state", "") for g in svg.iter(f"{SVG}g") if g.get("class") == "link"]


def words(element: ET.Element) -> str:
    return " ".join("".join(t.itertext()) for t in element.iter(f"{SVG}text"))


async def get_page(browser: aiohttp.ClientSession, path: str) -> str:
    async with browser.get(path) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Security-Policy"] == CSP
        return await response.text()


async def test_rejected_chain_page_draws_the_failing_link_then_the_valid_chain(
    admin: AdminHarness,
) -> None:
    ca = PKI.ca("Picture Provider CA")
    leaf = PKI.leaf(ca, cn="sip.example.net", dns=["sip.example.net"])
    chain_id = reject_chain(admin, [leaf])
    browser = admin.client()
    await login(browser)
    (svg,) = svgs(await get_page(browser, f"/rejected/{chain_id}"), "chain-picture")
    assert svg.get("data-verdict") == "failing"
    assert link_states(svg) == ["ok", "bad"]
    assert "missing intermediate" in words(svg)  # the server sent no CA certificate
    assert "Picture Provider CA" in words(svg)

    admin.store.add_trust([ca.model], source=TrustSource.UPLOADED, actor=TEST_ACTOR)
    (svg,) = svgs(await get_page(browser, f"/rejected/{chain_id}"), "chain-picture")
    assert svg.get("data-verdict") == "valid"
    assert link_states(svg) == ["ok", "ok"]


async def test_hostile_subject_is_escaped_on_the_page(admin: AdminHarness) -> None:
    hostile = '"><script>alert(1)</script><svg onload=alert(2)>'
    ca = PKI.ca(subject=name(hostile))
    leaf = PKI.leaf(ca, cn="sip.example.net", subject=name(hostile + " leaf"))
    chain_id = reject_chain(admin, [leaf, ca])
    browser = admin.client()
    await login(browser)
    page = await get_page(browser, f"/rejected/{chain_id}")
    assert "<script>alert(1)" not in page
    (svg,) = svgs(page, "chain-picture")
    assert not list(svg.iter(f"{SVG}script"))
    assert hostile[:20] in words(svg)


async def test_trust_entry_page_draws_the_anchor(admin: AdminHarness) -> None:
    ca = PKI.ca("Listed Picture CA")
    admin.store.add_trust([ca.model], source=TrustSource.UPLOADED, actor=TEST_ACTOR)
    browser = admin.client()
    await login(browser)
    (svg,) = svgs(await get_page(browser, f"/trust/{ca.model.fingerprint}"), "chain-picture")
    assert svg.get("data-verdict") == "valid"
    assert "Listed Picture CA" in words(svg)
    assert "Trust anchor" in words(svg)


async def test_status_page_draws_the_expiry_timeline(admin: AdminHarness) -> None:
    soon = PKI.ca("Timeline Soon CA", valid_days=(-30, 10))
    admin.store.add_trust([soon.model], source=TrustSource.UPLOADED, actor=TEST_ACTOR)
    leaf = PKI.leaf(None, cn="pinned.example.net")
    admin.store.add_pin(
        PinRequest(
            decision=PinDecision.ACCEPT,
            match=PinMatch.CERTIFICATE,
            fingerprint=leaf.model.fingerprint,
            scope="pinned.example.net:5061",
            expires_at=datetime.now(UTC) + timedelta(days=100),
        ),
        actor=TEST_ACTOR,
    )
    browser = admin.client()
    await login(browser)
    (svg,) = svgs(await get_page(browser, "/"), "timeline")
    rows = {
        (g.findtext(f"{SVG}title") or "").split(":")[0]: g.get("data-state")
        for g in svg.iter(f"{SVG}g")
        if g.get("class") == "row"
    }
    assert rows["Trust anchor"] == "soon"
    assert rows["Pin"] == "ok"
    assert rows["Device identity"] == "ok"
    assert "Timeline Soon CA" in words(svg)
    assert "pinned.example.net:5061" in words(svg)
