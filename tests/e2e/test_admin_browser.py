"""The admin pages in a real browser (Debian's chromium, headless, driven by Playwright)
against a real ``sipsgate run``.

Screenshots of every page go to ``test-output/screenshots/``. With
``SIPSGATE_DOCS_SCREENSHOTS=1`` they are also written to ``docs/images/`` for the admin
guide (done on purpose when the pages change, not on every run).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from certstore.model import Finding, Peer, Reason, Rule, Transport, Verdict, VerdictKind
from certstore.sqlite import SqliteStore
from tests.admin_support import PASSWORD, PKI
from tests.gateway_process import REPO, GatewayProcess, start_gateway
from tests.pki import CertFactory
from tests.revocation_support import make_crl

CHROMIUM = os.environ.get("SIPSGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = REPO / "test-output" / "screenshots"
DOCS_IMAGES = REPO / "docs" / "images"
TIMEOUT_MS = 15_000


async def shoot(page: Page, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    if os.environ.get("SIPSGATE_DOCS_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / f"{name}.png")


def chromium_present() -> bool:
    return shutil.which(CHROMIUM) is not None


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not chromium_present():
        pytest.fail(
            f"Chromium is needed for the browser tests and was not found at {CHROMIUM}; "
            "install Debian's chromium package (make test does) or set SIPSGATE_CHROMIUM.",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    process = await start_gateway(tmp_path)
    try:
        yield process
    finally:
        assert await process.stop() == 0


async def new_page(browser: Browser, *, phone: bool = False) -> Page:
    # The device certificate is self-signed; trusting it is tested without a browser
    # (tests/e2e/test_run.py), here the pages are.
    viewport = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 900}
    context = await browser.new_context(ignore_https_errors=True, viewport=viewport)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


async def log_in(page: Page, gateway: GatewayProcess) -> None:
    await page.goto(gateway.url)
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    # The landing page is the status, problems first; the workflows start at the trust list.
    await expect(page.locator("h1")).to_contain_text("Status")
    await expect(page.locator("#upstream")).to_be_visible()
    await page.goto(gateway.url + "trust")
    await expect(page.locator("h1")).to_have_text("Trust list")


def record_rejected_chain(gateway: GatewayProcess, host: str) -> tuple[int, str, str]:
    ca = PKI.ca("Provider Issuing CA")
    leaf = PKI.leaf(ca, cn=host, dns=[host])
    store = SqliteStore(gateway.data_dir / "sipsgate.db")
    try:
        verdict = Verdict(
            verdict=VerdictKind.REJECT,
            rule=Rule.UNTRUSTED,
            findings=(Finding(reason=Reason.UNKNOWN_ISSUER, message="unknown issuer", depth=1),),
            leaf_fingerprint=leaf.model.fingerprint,
        )
        peer = Peer(host=host, port=5061, transport=Transport.SIPS, sni=host)
        entry = store.record_handshake(verdict, [leaf.model, ca.model], peer, datetime.now(UTC))
    finally:
        store.close()
    assert entry is not None
    return int(entry.id), leaf.model.fingerprint, ca.model.fingerprint


class TestAdminPages:
    async def test_the_operator_workflows(
        self, browser: Browser, gateway: GatewayProcess, tmp_path: Path
    ) -> None:
        page = await new_page(browser)
        await log_in(page, gateway)

        # Upload a certificate file through the form; it shows in the trust list.
        cert = PKI.ca("Provisioning Server CA")
        upload = tmp_path / "provider-ca.pem"
        upload.write_bytes(cert.pem)
        await page.set_input_files("#upload-form input[name=file]", str(upload))
        await page.click("#upload-form button[type=submit]")
        await expect(page.locator(".flash.ok")).to_contain_text(
            "1 certificate added: Provisioning Server CA."
        )
        # The upload area is at the top of the list and names and links what was added.
        added = page.locator("#just-added a", has_text="Provisioning Server CA")
        await expect(added).to_have_count(1)
        upload_box = await page.locator("#upload-area").bounding_box()
        table_box = await page.locator("#trust-table").bounding_box()
        assert upload_box is not None and table_box is not None
        assert upload_box["y"] < table_box["y"], "the upload area comes before the list"
        await expect(page.locator("#upload-area")).to_contain_text("at most 1 MiB")
        await added.click()
        await expect(page.locator("h1")).to_have_text("Provisioning Server CA")
        await page.goto(f"{gateway.url}trust?kind=ca")
        await page.fill("input[name=q]", "Provisioning")
        await page.press("input[name=q]", "Enter")
        row = page.locator("#trust-table tr", has_text="Provisioning Server CA")
        await expect(row).to_have_count(1)
        await shoot(page, "trust-list")
        await page.click("text=Provisioning Server CA")
        await expect(page.locator("h1")).to_have_text("Provisioning Server CA")
        await shoot(page, "certificate-details")

        # Open a rejected chain and trust its issuing CA.
        chain_id, _leaf_fp, ca_fp = record_rejected_chain(gateway, "sip.provider.example")
        await page.goto(f"{gateway.url}rejected")
        await expect(page.locator("#rejected-table")).to_contain_text("sip.provider.example")
        await shoot(page, "rejected-list")
        await page.click(f"a[href='/rejected/{chain_id}'] >> nth=0")
        await expect(page.locator("h1")).to_contain_text("sip.provider.example")
        await expect(page.locator(f"input[value='{ca_fp}']")).to_be_checked()
        await shoot(page, "rejected-chain")
        await page.click("#trust-selected")
        await expect(page.locator(".flash.ok")).to_contain_text("added to the trust list")
        await expect(page.locator("#rejected-table")).to_have_count(0)
        await page.goto(f"{gateway.url}trust/{ca_fp}")
        await expect(page.locator("main")).to_contain_text("trusted-from-rejected")

        # A destructive action asks first (the <dialog>), then happens.
        await page.goto(f"{gateway.url}trust?q=Provisioning")
        row = page.locator("#trust-table tr", has_text="Provisioning Server CA")
        await row.locator("button", has_text="Remove").click()
        await expect(page.locator("#confirm-dialog")).to_be_visible()
        await expect(page.locator("#confirm-text")).to_contain_text("Provisioning Server CA")
        await page.click("#confirm-ok")
        await expect(page.locator(".flash.ok")).to_contain_text("was removed")

        # Create a signing request and download it.
        await page.goto(f"{gateway.url}device")
        await shoot(page, "device-certificate")
        await page.select_option("#create-type", "csr")
        await page.fill("#create-form input[name=cn]", "gw.closet.example")
        await page.fill("#create-form input[name=o]", "Example Telephony")
        await page.fill("#create-form textarea[name=sans]", "DNS:gw.closet.example\nIP:192.0.2.7")
        await page.click("#create-form button[type=submit]")
        await expect(page.locator(".flash.ok")).to_contain_text("signing request was created")
        async with page.expect_download() as download_info:
            await page.click("#csr-download")
        download = await download_info.value
        saved = tmp_path / "request.csr"
        await download.save_as(saved)
        assert saved.read_bytes().startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
        await page.goto(f"{gateway.url}csr")
        await expect(page.locator("main")).to_contain_text("CN=gw.closet.example")
        await shoot(page, "signing-request")

        # Turn accept-all on: the warning shows, with the count of overridden chains.
        await page.goto(f"{gateway.url}settings")
        await expect(page.locator("#accept-all-warning")).to_have_count(0)
        await shoot(page, "settings")
        await page.check("#accept-all")
        await page.click("#settings-form button[type=submit]")
        # A tick alone does not switch it on: the confirmation beside it is needed.
        await expect(page.locator(".flash.error")).to_contain_text("was not switched on")
        await expect(page.locator("#accept-all-warning")).to_have_count(0)
        await expect(page.locator("#accept-all")).not_to_be_checked()
        await page.check("#accept-all")
        await page.check("#accept-all-confirm")
        await page.click("#settings-form button[type=submit]")
        await expect(page.locator("#accept-all-warning")).to_be_visible()
        await expect(page.locator("#accept-all-warning")).to_contain_text("Accept all")
        await expect(page.locator("#accept-all")).to_be_checked()

        await page.goto(f"{gateway.url}pins")
        await shoot(page, "pins")
        await page.goto(f"{gateway.url}audit")
        await expect(page.locator("#audit-table")).to_contain_text("settings")
        await shoot(page, "audit-log")
        await page.context.close()

    async def test_revocation_page_upload_and_remove_a_crl(
        self, browser: Browser, gateway: GatewayProcess, tmp_path: Path
    ) -> None:
        """Reached from the navigation; a CRL uploaded through the form is listed with
        its issuer, dates and revoked count; removing it asks first, then it is gone."""
        now = datetime.now(UTC)
        factory = CertFactory(now)
        ca = factory.ca("Offline Site CA")
        crl = tmp_path / "site.crl"
        crl.write_bytes(make_crl(ca, [factory.leaf(ca), factory.leaf(ca)], now=now))
        junk = tmp_path / "junk.crl"
        junk.write_bytes(b"not a CRL")
        page = await new_page(browser)
        await log_in(page, gateway)
        await page.click("nav[aria-label=Main] >> text=Revocation")
        await expect(page.locator("h1")).to_have_text("Revocation")
        await expect(page.locator("#revocation-mode")).to_have_text("soft-fail")
        await page.set_input_files("#crl-form input[name=file]", str(junk))
        await page.click("#crl-form button[type=submit]")
        await expect(page.locator(".flash.error")).to_contain_text("not a readable CRL")
        await page.set_input_files("#crl-form input[name=file]", str(crl))
        await page.click("#crl-form button[type=submit]")
        await expect(page.locator(".flash.ok")).to_contain_text("2 revoked")
        row = page.locator("#revocation-table tbody tr", has_text="Offline Site CA")
        await expect(row).to_have_count(1)
        await expect(row.locator("td[data-label=Source]")).to_have_text("uploaded")
        await expect(row.locator("td[data-label=Revoked]")).to_have_text("2")
        await shoot(page, "revocation")
        await row.locator("button", has_text="Remove").click()
        await expect(page.locator("#confirm-dialog")).to_be_visible()
        await page.click("#confirm-ok")
        await expect(page.locator(".flash.ok")).to_contain_text("was removed")
        await expect(page.locator("#revocation-table")).to_have_count(0)
        await page.goto(f"{gateway.url}audit")
        await expect(page.locator("#audit-table")).to_contain_text("revocation.remove")
        await page.context.close()

    async def test_phone_sized_screen(self, browser: Browser, gateway: GatewayProcess) -> None:
        page = await new_page(browser, phone=True)
        await log_in(page, gateway)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, "the trust list must not scroll sideways on a phone"
        await shoot(page, "trust-list-phone")
        await page.goto(f"{gateway.url}settings")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        await page.context.close()

    async def test_login_page_and_wrong_password(
        self, browser: Browser, gateway: GatewayProcess
    ) -> None:
        page = await new_page(browser)
        await page.goto(f"{gateway.url}login")
        await shoot(page, "login")
        await page.fill("input[name=password]", "not the password")
        await page.click("button[type=submit]")
        await expect(page.locator(".flash.error")).to_contain_text("wrong")
        await page.context.close()


class TestBannerAndAudit:
    async def test_expiry_banner_hides_on_a_phone_and_audit_details_open(
        self, browser: Browser, gateway: GatewayProcess, tmp_path: Path
    ) -> None:
        page = await new_page(browser, phone=True)
        await log_in(page, gateway)
        soon = tmp_path / "soon.pem"
        soon.write_bytes(PKI.ca("Soon Expiring CA", valid_days=(-30, 10)).pem)
        await page.set_input_files("#upload-form input[name=file]", str(soon))
        await page.click("#upload-form button[type=submit]")
        banner = page.locator("#expiry-banner")
        await expect(banner).to_contain_text("1 certificate expires within 30 days")
        box = await banner.bounding_box()
        assert box is not None and box["height"] <= 844 / 2, "at most half a phone screen"
        await shoot(page, "expiry-banner-phone")
        await page.click("#banner-dismiss button")
        await expect(banner).to_have_count(0)
        await expect(page.locator("h1")).to_have_text("Trust list")  # back where it was
        await page.goto(f"{gateway.url}pins")
        await expect(page.locator("#expiry-banner")).to_have_count(0)

        # The audit log: a sentence per change, the raw record behind its toggle.
        await page.goto(f"{gateway.url}audit")
        row = page.locator("#audit-table tr", has_text="Added 1 certificate to the trust list")
        await expect(row).to_have_count(1)
        await expect(row.locator(".badge.origin")).to_have_text("admin")
        raw = row.locator("details pre")
        await expect(raw).not_to_be_visible()
        await row.locator("summary").click()
        await expect(raw).to_be_visible()
        await expect(raw).to_contain_text('"source": "uploaded"')
        await page.context.close()
