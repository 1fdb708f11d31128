"""The settings page's Meta card in a real headless Chromium: Facebook Login in its own tab
against the Meta stand-in, then the merchant confirms whose Facebook account it connected."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from goldpan_sandbox.demo import Demo
from tests.e2e.test_page import browser, demo, open_page, page

pytestmark = pytest.mark.e2e

__all__ = ["browser", "demo", "page"]  # the page tests' fixtures, used here too


def test_facebook_login_shows_whose_account_and_waits_for_the_merchant(
    page: Page, demo: Demo
) -> None:
    open_page(page, demo, "settings")
    card = page.locator("[data-meta-status]")
    expect(card).to_have_attribute("data-meta-status", "disconnected")
    with page.context.expect_page() as opened:
        page.get_by_role("button", name="Connect with Facebook").click()
    tab = opened.value
    # The tab starts at Goldpan (/meta/login sets the browser's cookie), goes through the
    # dialog and comes back to the callback, which names the Facebook user.
    expect(tab.locator("h1")).to_have_text("Connected as Sandbox Merchant", timeout=30_000)
    tab.close()
    page.bring_to_front()
    page.evaluate("window.dispatchEvent(new Event('focus'))")
    expect(card).to_have_attribute("data-meta-status", "confirm")
    expect(page.locator("s-banner[tone='warning']").first).to_contain_text(
        "Connected as Sandbox Merchant"
    )
    page.locator("[data-action='meta-confirm']").click()
    expect(page.locator("[data-input='ad-account']")).to_be_visible()
    expect(page.locator("[data-meta-user]")).to_have_text("Connected as Sandbox Merchant")
