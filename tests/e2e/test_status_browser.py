"""The operator's cockpit in a real browser (Debian's chromium, Playwright) against a real
``sipsgate run``, a real kamailio TLS upstream and SIPp base stations:

the status page shows the flow up and two registered base stations; the provider's
certificate is replaced by one from an unknown CA (kamailio restarted with it); the
status page shows the flow down with the reason sentence; the rejected chain's picture
marks the failing link; one click trusts the CA; the status page shows the flow up
again, with no restart of the gateway. Desktop and phone widths; the screenshots are
those of docs/admin-guide.md (written to docs/images/ with SIPSGATE_DOCS_SCREENSHOTS=1).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.admin_support import PASSWORD
from tests.e2e.test_admin_browser import browser, new_page, shoot  # noqa: F401 (fixture)
from tests.e2e.test_gateway_sip import sipsgate
from tests.gateway_process import GatewayProcess, start_gateway, write_config
from tests.pki import CertFactory
from tests.sip_peers import DOMAIN, KamailioRegistrar, Sipp

pytestmark = pytest.mark.slow
WAIT = 30.0


async def reload_until(page: Page, selector: str, text: str, within: float = WAIT) -> None:
    """Reload the page until ``selector`` shows ``text`` (the pages do not poll)."""
    async with asyncio.timeout(within):
        while True:
            await page.reload()
            shown = await page.locator(selector).all_text_contents()
            if any(text in item for item in shown):
                return
            await asyncio.sleep(0.3)


async def assert_no_sideways_scroll(page: Page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    if width > page.viewport_size["width"] + 1:  # type: ignore[index]
        wide = await page.evaluate(
            "[...document.querySelectorAll('main *')]"
            ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)"
            ".map(e => e.tagName + (e.id ? '#' + e.id : '')).slice(0, 12).join(' ')"
        )
        raise AssertionError(f"the page scrolls sideways ({width}px): {wide}")


async def register(relay_udp: tuple[str, int], relay_tcp: tuple[str, int]) -> None:
    """Two base stations register through the gateway, one over UDP, one over TCP."""
    bs1 = await Sipp("register.xml", relay_udp, service="bs1").run()
    assert bs1.ok, f"bs1 did not register: {bs1!r}"
    bs2 = await Sipp("register.xml", relay_tcp, transport="tcp", service="bs2").run()
    assert bs2.ok, f"bs2 did not register: {bs2!r}"


async def log_in(page: Page, gateway: GatewayProcess) -> None:
    await page.goto(gateway.url)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_contain_text("Status")


async def test_flow_down_on_unknown_ca_then_one_click_trust_brings_it_up(
    tmp_path: Path,
    browser: Browser,  # noqa: F811 (the fixture)
) -> None:
    factory = CertFactory()
    provider_root = factory.ca("Provider Root CA (status e2e)")
    provider_leaf = factory.leaf(provider_root, cn=DOMAIN, dns=(DOMAIN,))
    stranger_root = factory.ca("New Provider Root CA")
    stranger_ca = factory.ca("New Provider Issuing CA", issuer=stranger_root)
    stranger_leaf = factory.leaf(stranger_ca, cn=DOMAIN, dns=(DOMAIN,))

    # The gateway trusts the provider's root from the start, as a provisioned one would.
    write_config(tmp_path / "sipsgate.toml", tmp_path / "var", ["127.0.0.1:0"])
    (tmp_path / "provider-root.pem").write_bytes(provider_root.pem)
    sipsgate(tmp_path, "certs", "add", "provider-root.pem")

    with KamailioRegistrar(provider_leaf) as kamailio:
        gateway = await start_gateway(
            tmp_path,
            extra_env={
                "SIPSGATE_SIP_UPSTREAM": f"sips:{DOMAIN}",
                "SIPSGATE_SIP_UPSTREAM_ADDRESS": f"127.0.0.1:{kamailio.port}",
            },
        )
        try:
            listeners = await gateway.relay_listeners()
            udp, tcp = listeners["udp"], listeners["tcp"]
            pid = gateway.process.pid
            await register(udp, tcp)

            # 1. Up, two base stations registered: desktop and phone.
            desk = await new_page(browser)
            await log_in(desk, gateway)
            await reload_until(desk, "#flow-state", "up")
            rows = desk.locator("#base-stations tbody tr")
            await expect(rows).to_have_count(2)
            await expect(rows.filter(has_text="bs1@")).to_contain_text("UDP")
            await expect(rows.filter(has_text="bs2@")).to_contain_text("TCP")
            await expect(desk.locator("#base-stations")).not_to_contain_text("not registered")
            await expect(desk.locator("#problems")).to_have_count(0)
            await expect(desk.locator("svg.timeline")).to_be_visible()
            await shoot(desk, "status")
            phone = await new_page(browser, phone=True)
            await log_in(phone, gateway)
            await expect(phone.locator("#flow-state")).to_have_text("up")
            await expect(phone.locator("#base-stations tbody tr")).to_have_count(2)
            await assert_no_sideways_scroll(phone)
            await shoot(phone, "status-phone")

            # 2. The provider's certificate changes to one from an unknown CA.
            kamailio.replace_identity(stranger_leaf)
            # The relay reconnects on its own (backoff from 0.5 s) and is rejected.
            await reload_until(desk, "#last-error", "certificate was rejected")
            await expect(desk.locator("#flow-state")).to_have_text("down")
            refused = await Sipp("register_503.xml", udp, service="bs1").run()
            assert refused.ok, f"the base station was not told 503: {refused!r}"
            last_error = desk.locator("#last-error")
            await expect(last_error).to_contain_text("The upstream certificate was rejected")
            await expect(last_error).to_contain_text("unknown-issuer")
            await expect(desk.locator("#problems")).to_contain_text("rejected")
            await shoot(desk, "status-down")

            # 3. The rejected chain: its picture marks the failing link.
            await desk.click("#last-error a[href='/rejected']")
            await desk.locator("#rejected-table a", has_text=DOMAIN).first.click()
            await expect(desk.locator("h1")).to_contain_text(DOMAIN)
            picture = desk.locator("#chain-picture svg.chain-picture")
            await expect(picture).to_have_attribute("data-verdict", "failing")
            failing = picture.locator("g.link[data-state=bad]")
            await expect(failing).to_have_count(1)
            await expect(failing).to_contain_text("unknown issuer")
            await expect(picture.locator("g.node-missing")).to_contain_text("New Provider Root CA")
            ca_box = picture.locator("g.node[data-state=ok]", has_text="New Provider Issuing CA")
            await expect(ca_box).to_have_count(1)
            checkbox = desk.locator(f"input[value='{stranger_ca.fingerprint}']")
            await expect(checkbox).to_be_checked()  # the CA, pre-selected
            await shoot(desk, "chain-picture")

            # The same chain through "Test this connection".
            probe = await new_page(browser)
            await log_in(probe, gateway)
            await probe.goto(gateway.url + "probe")
            await probe.fill("#probe-uri", f"sips:{DOMAIN}")
            await probe.fill("#probe-connect", f"127.0.0.1:{kamailio.port}")
            await probe.click("#probe-submit")
            await expect(probe.locator("#probe-verdict")).to_have_text("reject")
            await expect(probe.locator("#reasons")).to_contain_text("unknown-issuer")
            bad = probe.locator("svg.chain-picture g.link[data-state=bad]")
            await expect(bad).to_contain_text("unknown issuer")
            await shoot(probe, "test-connection")

            # 4. One click trusts the CA; the flow comes up again, no restart.
            await desk.click("#trust-selected")
            await expect(desk.locator(".flash.ok")).to_contain_text("added to the trust list")
            await register(udp, tcp)
            await desk.goto(gateway.url)
            await reload_until(desk, "#flow-state", "up")
            await expect(desk.locator("#problems")).to_have_count(0)
            # Each base station registered again (a TCP one from a new source port).
            for aor in ("bs1@", "bs2@"):
                row = desk.locator("#base-stations tbody tr", has_text=aor).first
                await expect(row).to_contain_text("200")
                await expect(row).not_to_contain_text("not registered")
            await expect(desk.locator("#upstream")).to_contain_text(DOMAIN)
            assert gateway.process.returncode is None and gateway.process.pid == pid
            await phone.reload()
            await expect(phone.locator("#flow-state")).to_have_text("up")
        finally:
            assert await gateway.stop() == 0
