"""Analytics in headless Chromium against the whole demo: the cohort views are real tabs
(arrow keys, one tab stop, a labelled panel), a month no one in a cohort has finished is a
blank cell rather than 0%, and cohorts narrow to a range of first-order months and a segment."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from goldpan_sandbox.demo import Demo
from shopify_app.db.models import Segment, ShopMetrics
from tests.e2e.test_home import browser, goto, page

pytestmark = pytest.mark.e2e

__all__ = ["browser", "page"]  # fixtures shared with the home tests


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
    goto(page, running_demo, "analytics", view="analytics")
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


def test_cohorts_narrow_to_a_range_of_months_and_a_segment(page: Page, running_demo: Demo) -> None:
    goto(page, running_demo, "analytics", view="analytics")
    months = [row["key"] for row in _stored(running_demo)["cohorts"]["month"]]
    assert len(months) >= 4
    status = page.locator("[data-cohort-status]")
    page.locator("[data-input='cohort-from']").fill(months[1])
    page.locator("[data-input='cohort-from']").dispatch_event("change")
    page.locator("[data-input='cohort-to']").fill(months[3])
    page.locator("[data-input='cohort-to']").dispatch_event("change")
    expect(page.locator("[data-cohorts] s-table-body s-table-row")).to_have_count(
        len([m for m in months if months[1] <= m <= months[3]])
    )
    everyone = int("".join(filter(str.isdigit, status.inner_text())))
    # One segment's members only: fewer customers, never more than the segment holds.
    with running_demo.ctx.sessions() as session:
        vip = session.scalar(
            select(Segment).where(Segment.shop_id == running_demo.shop_id, Segment.handle == "vip")
        )
    assert vip is not None
    before = status.inner_text()
    page.locator("[data-input='cohort-segment']").select_option(str(vip.id))
    expect(status).not_to_have_text(before)
    members = int("".join(filter(str.isdigit, status.inner_text())))
    assert members < everyone and members <= vip.member_count
    # A range the server refuses is said in words, and nothing else on the page is lost.
    page.locator("[data-input='cohort-from']").fill("2001-01")
    page.locator("[data-input='cohort-from']").dispatch_event("change")
    expect(page.locator("[data-cohorts]")).to_contain_text("at most 36 months")
    expect(page.locator("[data-table='figures']")).to_be_visible()


def test_right_to_left_the_arrow_keys_follow_the_reading_order(
    page: Page, running_demo: Demo
) -> None:
    goto(page, running_demo, "analytics", view="analytics", locale="ar")
    tabs = page.locator("[role='tablist'] [role='tab']")
    tabs.nth(0).focus()
    # In Arabic the next tab sits to the left.
    page.keyboard.press("ArrowLeft")
    expect(tabs.nth(1)).to_be_focused()
    expect(tabs.nth(1)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowRight")
    expect(tabs.nth(0)).to_be_focused()
