"""Analytics in headless Chromium against the whole demo: the cohort views are real tabs
(arrow keys, one tab stop, a labelled panel), a month no one in a cohort has finished is a
blank cell rather than 0%, and one filter bar narrows the whole page to a segment and a range
of months, kept in the URL hash."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from goldpan_sandbox.demo import Demo
from shopify_app.db.models import Segment, ShopMetrics
from tests.fixtures_browser import open_view

pytestmark = pytest.mark.e2e


def _cells(page: Page) -> list[list[str]]:
    """The cohort data table: per row, each month's cell text."""
    rows = page.locator("[data-cohorts] s-table-body s-table-row")
    return rows.evaluate_all(
        "rows => rows.map(r => [...r.querySelectorAll('[data-cell]')].map(c => c.textContent))"
    )


def _stored(demo: Demo) -> dict:  # type: ignore[type-arg]
    with demo.ctx.sessions() as session:
        row = session.get(ShopMetrics, demo.shop_id)
        assert row is not None
        return row.data


def test_cohort_tabs_are_tabs_and_unfinished_months_are_blank(
    page: Page, running_demo: Demo
) -> None:
    open_view(page, running_demo.page_url, "analytics", view="analytics")
    tabs = page.locator("[role='tablist'] [role='tab']")
    expect(tabs).to_have_count(3)
    panel = page.locator("[role='tabpanel'][data-cohorts]")
    first = tabs.nth(0)
    expect(first).to_have_attribute("aria-selected", "true")
    assert first.get_attribute("aria-controls") == panel.get_attribute("id")
    assert panel.get_attribute("aria-labelledby") == first.get_attribute("id")
    assert [tabs.nth(i).get_attribute("tabindex") for i in range(3)] == ["0", "-1", "-1"]
    # The cells follow the engine: a figure for every month a cohort has finished, a blank
    # cell (not 0%) for the months still ahead of it.
    stored = _stored(running_demo)["cohorts"]["month"]
    cells = _cells(page)
    assert len(cells) == len(stored)
    for row, shown in zip(stored, cells, strict=True):
        figures = len(row["retention"])
        assert all(text.endswith("%") for text in shown[:figures]), (row, shown)
        assert all(text == "" for text in shown[figures:]), (row, shown)
    assert any(text == "" for row in cells for text in row)
    # Arrow keys move between tabs and show their panel; End and Home jump.
    first.focus()
    page.keyboard.press("ArrowRight")
    expect(tabs.nth(1)).to_be_focused()
    expect(tabs.nth(1)).to_have_attribute("aria-selected", "true")
    expect(first).to_have_attribute("aria-selected", "false")
    assert panel.get_attribute("aria-labelledby") == tabs.nth(1).get_attribute("id")
    page.keyboard.press("End")
    expect(tabs.nth(2)).to_be_focused()
    page.keyboard.press("ArrowRight")  # wraps around
    expect(first).to_be_focused()
    expect(first).to_have_attribute("aria-selected", "true")


def _figure(page: Page, key: str) -> str:
    """The "now" column of one row of the figures table."""
    row = page.locator("[data-table='figures'] s-table-row").filter(
        has=page.locator(f"[data-figure='{key}']")
    )
    return row.locator("s-table-cell").nth(1).inner_text()


def _number(text: str) -> int:
    return int("".join(filter(str.isdigit, text)))


def test_one_filter_bar_narrows_the_whole_page_and_the_url_keeps_it(
    page: Page, running_demo: Demo
) -> None:
    open_view(page, running_demo.page_url, "analytics", view="analytics")
    bar = page.locator("[data-filter]")
    expect(bar).to_have_attribute("data-filter", "#/analytics")
    # The cohort section has no filter of its own any more.
    expect(page.locator("[data-input]")).to_have_count(3)
    expect(page.locator("[data-note='backtest']")).to_have_count(0)
    everyone = _number(_figure(page, "orders"))
    stored = _stored(running_demo)
    months = [row["key"] for row in stored["cohorts"]["month"]]
    assert len(months) >= 4
    with running_demo.ctx.sessions() as session:
        vip = session.scalar(
            select(Segment).where(Segment.shop_id == running_demo.shop_id, Segment.handle == "vip")
        )
    assert vip is not None
    # The picker groups segments as the segment list does.
    assert page.locator("[data-input='filter-segment'] optgroup").count() >= 2
    page.locator("[data-input='filter-segment']").select_option(str(vip.id))
    expect(bar).to_have_attribute("data-filter", f"#/analytics?segment={vip.id}")
    vip_orders = _number(_figure(page, "orders"))
    assert 0 < vip_orders < everyone
    expect(page.locator("[data-note='filter']")).to_be_visible()
    expect(page.locator("[data-note='backtest']")).to_be_visible()
    # A range on top of the segment: fewer orders still, cohorts of those months only.
    page.locator("[data-input='filter-from']").fill(months[0])
    page.locator("[data-input='filter-from']").dispatch_event("change")
    expect(bar).to_have_attribute(
        "data-filter", f"#/analytics?segment={vip.id}&from={months[0]}&to={stored['as_of'][:7]}"
    )
    page.locator("[data-input='filter-to']").fill(months[2])
    page.locator("[data-input='filter-to']").dispatch_event("change")
    wanted = f"#/analytics?segment={vip.id}&from={months[0]}&to={months[2]}"
    expect(bar).to_have_attribute("data-filter", wanted)
    assert page.evaluate("location.hash") == wanted
    ranged = _figure(page, "orders")
    assert _number(ranged) < vip_orders
    shown = [r[0] for r in _cells(page)]
    assert len(shown) <= 3
    # A reload keeps the filter and shows the same figures.
    page.reload()
    page.wait_for_selector("body[data-view='analytics']", timeout=30_000)
    expect(bar).to_have_attribute("data-filter", wanted)
    expect(page.locator("[data-input='filter-segment']")).to_have_value(str(vip.id))
    expect(page.locator("[data-input='filter-to']")).to_have_value(months[2])
    assert _figure(page, "orders") == ranged
    # A range the server refuses is said in words beside the bar, which stays to fix it.
    page.locator("[data-input='filter-from']").fill("2001-01")
    page.locator("[data-input='filter-from']").dispatch_event("change")
    expect(page.locator("#app")).to_contain_text("at most 36 months")
    expect(bar).to_be_visible()
    # Back to the whole shop: the stored figures.
    page.locator("[data-action='clear-filter']").click()
    expect(bar).to_have_attribute("data-filter", "#/analytics")
    assert _number(_figure(page, "orders")) == everyone


def test_right_to_left_the_arrow_keys_follow_the_reading_order(
    page: Page, running_demo: Demo
) -> None:
    open_view(page, running_demo.page_url, "analytics", view="analytics", locale="ar")
    tabs = page.locator("[role='tablist'] [role='tab']")
    tabs.nth(0).focus()
    # In Arabic the next tab sits to the left.
    page.keyboard.press("ArrowLeft")
    expect(tabs.nth(1)).to_be_focused()
    expect(tabs.nth(1)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowRight")
    expect(tabs.nth(0)).to_be_focused()
