"""Layout and keyboard in headless Chromium against the whole demo: no view scrolls sideways at
1024 px or 390 px in any of the four languages nor shows a raw message key (the screenshots to
look at come from scripts/screenshots.py), paging the members keeps focus on the pager, and
only status messages are live regions."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from goldpan_sandbox.demo import Demo
from shopify_app.db.models import Segment
from tests.fixtures_browser import new_tab, open_view
from tests.fixtures_demo import module_demo

pytestmark = pytest.mark.e2e


# (route, the view it draws): every view of the page; the segment is filled in per demo.
VIEWS = [
    ("", "home"),
    ("segments", "segments"),
    ("segments/{segment}", "segment"),
    ("segments/new", "builder"),
    ("analytics", "analytics"),
    ("settings", "settings"),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    # More customers than a page of members (50), so the pager has somewhere to go.
    with module_demo(
        tmp_path_factory,
        "layout-demo",
        customers=150,
        seed=13,
        shop="layout.myshopify.com",
        sync_timeout=90,
    ) as running:
        yield running


# Every message key: one shown as text is a missing translation (t() falls back to the key).
KEYS = set(json.loads((Path(__file__).resolve().parents[2] / "web/i18n/en.json").read_text()))

# What may be a live region: short status lines, field errors, banners, toasts, the spinner.
LIVE = "[aria-live], [role='status'], [role='alert'], [role='log']"


def _segment_id(demo: Demo, handle: str) -> int:
    with demo.ctx.sessions() as session:
        found = session.scalar(
            select(Segment.id).where(Segment.shop_id == demo.shop_id, Segment.handle == handle)
        )
    assert found is not None
    return found


@pytest.mark.parametrize("locale", ["en", "el", "ar", "ko"])
@pytest.mark.parametrize("width", [1024, 390])
def test_no_view_scrolls_sideways(browser: Browser, demo: Demo, width: int, locale: str) -> None:
    tab, errors = new_tab(browser, width)
    segment = _segment_id(demo, "repeat-customers")
    try:
        open_view(tab, demo.page_url, locale=locale)
        for route, view in VIEWS:
            tab.evaluate("r => { location.hash = '#/' + r; }", route.format(segment=segment))
            tab.wait_for_selector(f"body[data-view='{view}']", timeout=30_000)
            tab.wait_for_selector("#app[aria-busy='false']")
            if view == "segment":  # its members arrive after the view
                tab.wait_for_selector("[data-table='members']")
            sideways = tab.evaluate(
                "() => document.scrollingElement.scrollWidth - window.innerWidth"
            )
            assert sideways <= 0, f"{view} in {locale} at {width}px scrolls sideways {sideways}px"
            words = set(re.findall(r"[a-z_]+(?:\.[a-z0-9_]+)+", tab.locator("body").inner_text()))
            assert not words & KEYS, f"{view} in {locale} shows raw message keys {words & KEYS}"
    finally:
        tab.context.close()
    assert errors == [], errors


def test_paging_keeps_focus_on_the_pager(page: Page, demo: Demo) -> None:
    segment = _segment_id(demo, "repeat-customers")
    with demo.ctx.sessions() as session:
        members = session.get_one(Segment, segment).member_count or 0
    assert members > 50  # two pages at least
    open_view(page, demo.page_url, f"segments/{segment}", view="segment")
    pager = page.locator("[data-page]")
    expect(pager).to_have_attribute("data-page", "1")
    page.locator("[data-action='next-page']").focus()
    page.keyboard.press("Enter")
    expect(pager).to_have_attribute("data-page", "2")
    # The same button keeps focus; on the last page, where "Next" is off, "Previous" has it.
    kept = "prev-page" if members <= 100 else "next-page"
    expect(page.locator(f"[data-action='{kept}']")).to_be_focused()
    page.locator("[data-action='prev-page']").focus()
    page.keyboard.press("Enter")
    expect(pager).to_have_attribute("data-page", "1")
    # Back on the first page "Previous" is off: focus goes to "Next", not to the page's top.
    expect(page.locator("[data-action='next-page']")).to_be_focused()


def test_only_status_messages_are_live_regions(page: Page, demo: Demo) -> None:
    segment = _segment_id(demo, "repeat-customers")
    open_view(page, demo.page_url)
    for route, view in VIEWS:
        page.evaluate("r => { location.hash = '#/' + r; }", route.format(segment=segment))
        page.wait_for_selector(f"body[data-view='{view}']", timeout=30_000)
        page.wait_for_selector("#app[aria-busy='false']")
        # A live region is read out whenever it changes: a whole view, table or form in one
        # would be read out at every redraw.
        wide = page.locator(LIVE).evaluate_all(
            """els => els.filter(e => e.matches('main, form, section, s-section')
                || e.querySelector('s-table, table, form, input, select, s-section, svg'))
                .map(e => e.outerHTML.slice(0, 120))"""
        )
        assert wide == [], (view, wide)
