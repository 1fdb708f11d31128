"""Navigation in headless Chromium against the whole demo: one navigation (App Bridge's
s-app-nav in the admin, the in-page tabs only without App Bridge), section paths the server
serves the page at, deep links and reload keeping the view, back and forward, and a way back
from a segment that does not exist."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from goldpan_sandbox.demo import Demo
from tests.fixtures_browser import new_tab, open_view

pytestmark = pytest.mark.e2e


# What App Bridge's script provides that the page uses: window.shopify with idToken (here the
# token the admin put in the page URL, valid for the minute this test needs).
APP_BRIDGE_STAND_IN = """
window.shopify = {
  config: { locale: "en" },
  idToken: async () => new URLSearchParams(location.search).get("id_token"),
  toast: { show() {} },
};
"""


@pytest.fixture
def bridged(browser: Browser) -> Iterator[Page]:
    tab, errors = new_tab(browser)
    tab.route(
        "https://cdn.shopify.com/shopifycloud/app-bridge.js",
        lambda route: route.fulfill(content_type="text/javascript", body=APP_BRIDGE_STAND_IN),
    )
    yield tab
    tab.context.close()
    assert errors == [], errors


def _path(page: Page) -> str:
    return urlsplit(page.url).path


def test_without_app_bridge_the_tabs_navigate_and_the_path_follows(
    page: Page, running_demo: Demo
) -> None:
    open_view(page, running_demo.page_url)
    tabs = page.locator("#tabs [data-nav]")
    expect(tabs).to_have_count(4)
    expect(page.locator("#tabs [aria-current='page']")).to_have_attribute("data-nav", "home")
    page.locator("#tabs [data-nav='analytics']").click()
    page.wait_for_selector("body[data-view='analytics']")
    assert _path(page) == "/analytics"
    expect(page.locator("#tabs [aria-current='page']")).to_have_attribute("data-nav", "analytics")
    # A reload lands on the same view (the server serves the page at the section's path).
    page.reload()
    page.wait_for_selector("body[data-view='analytics']", timeout=30_000)
    page.locator("#tabs [data-nav='settings']").click()
    page.wait_for_selector("body[data-view='settings']")
    # Back and forward cross paths: the view follows.
    page.go_back()
    page.wait_for_selector("body[data-view='analytics']")
    page.go_forward()
    page.wait_for_selector("body[data-view='settings']")
    assert _path(page) == "/settings"


def test_a_segment_that_does_not_exist_offers_the_way_back(page: Page, running_demo: Demo) -> None:
    open_view(page, running_demo.page_url, "segments/999999", view="segment")
    back = page.locator("[data-action='back']")
    expect(back).to_be_visible()
    back.click()
    page.wait_for_selector("body[data-view='segments']")
    assert _path(page) == "/segments"


def test_with_app_bridge_only_its_navigation_is_shown(bridged: Page, running_demo: Demo) -> None:
    page = bridged
    # App Bridge loads a sidebar link's path in the admin's frame: that section opens.
    url = running_demo.page_url.replace("/?", "/segments?", 1).replace("&demo=1", "")
    page.goto(url)
    page.wait_for_selector("body[data-view='segments']", timeout=30_000)
    expect(page.locator("#tabs")).to_have_count(0)
    links = page.locator("s-app-nav s-link")
    hrefs = links.evaluate_all(
        "els => els.map(e => [e.getAttribute('href'), e.getAttribute('rel')])"
    )
    assert hrefs == [
        ["/", "home"],
        ["/segments", None],
        ["/analytics", None],
        ["/settings", None],
    ]
    expect(links.nth(2)).to_have_text("Analytics")
    # In-page links still work, and the path (what App Bridge shows in the admin) follows.
    page.locator("[data-segment='vip']").click()
    page.wait_for_selector("body[data-view='segment']")
    assert _path(page) == "/segments" and re.search(r"#/segments/\d+$", page.url)
