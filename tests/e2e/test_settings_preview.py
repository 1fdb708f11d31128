"""The settings page in headless Chromium: a change that moves tags is shown before it applies.

The real app (``create_app`` with the demo's stand-in admin) against a running Shopify sandbox,
which mints the page's session tokens (``seeded_page``: a seeded shop whose VIP and True fans
segments sync their tags). Queued jobs wait in the app's queue, where the test reads them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.test_page import CHROMIUM_ARGS
from tests.fixtures_api import ApiClient
from tests.fixtures_auth import pending_tasks
from tests.fixtures_demo import SeededPage

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, seeded_page: SeededPage) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.route(re.compile(r"^https://cdn\.shopify\.com/.*"), lambda route: route.abort())
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    # As the admin loads it: bounce page, a session token from the sandbox, reload; then the view.
    tab.goto(seeded_page.page_url)
    tab.wait_for_selector("body[data-ready='1']", timeout=30_000)
    tab.evaluate("() => { location.hash = '#/settings'; }")
    tab.wait_for_selector("body[data-view='settings']", timeout=30_000)
    yield tab
    context.close()
    assert errors == [], errors


def _prefix(app: SeededPage) -> str:
    body = ApiClient(app.app_url, app.shop).get("/settings").json()
    return str(body["settings"]["tag_prefix"])


def test_a_prefix_change_is_previewed_and_applies_only_when_confirmed(
    page: Page, seeded_page: SeededPage
) -> None:
    vips = seeded_page.customers // 10  # the seeded VIP segment: the top tenth by spend
    prefix = page.locator("[data-setting='tag_prefix']")
    # The store tags its business customers "wholesale": a prefix that reads like it is refused.
    prefix.fill("wholesale-")
    page.locator("[data-action='save']").click()
    expect(page.locator("[data-field='tag_prefix'] .gp-field-error")).to_contain_text(
        "“wholesale” is already a tag in your store"
    )

    prefix.fill("gp-")
    page.locator("[data-action='save']").click()
    dialog = page.locator("dialog.gp-dialog")
    expect(dialog.locator("[data-tag='gp-vip']")).to_contain_text(f"added to {vips},")
    dialog.locator("[data-action='cancel']").click()
    expect(page.locator("s-banner[tone='info']")).to_contain_text("Nothing was changed")
    assert _prefix(seeded_page) == "goldpan-"
    assert pending_tasks(seeded_page.ctx) == []

    page.locator("[data-action='save']").click()
    page.locator("dialog.gp-dialog [data-action='confirm']").click()
    expect(page.locator("s-banner[tone='success']")).to_be_visible()
    assert _prefix(seeded_page) == "gp-"
    assert [(name, kw.get("old_prefix")) for name, kw in pending_tasks(seeded_page.ctx)] == [
        ("segments.recompute_shop", None),
        ("tags.prefix_changed", "goldpan-"),
    ]
