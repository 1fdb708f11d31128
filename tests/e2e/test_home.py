"""Home in headless Chromium against the whole demo: what Goldpan does in two lines, the
first-steps checklist as the server has it (each step linking to where it is done), a
definition beside each figure, and the older-orders notice naming the orders really used.

Also the tab helpers the other page tests here share (navigation, analytics, layout).
"""

from __future__ import annotations

import datetime as dt

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, select, update

from goldpan_sandbox.demo import Demo
from shopify_app.db.models import Order, Segment
from shopify_app.segments import metrics
from tests.fixtures_browser import open_view

pytestmark = pytest.mark.e2e

STEPS = ["review_segments", "tag_sync", "connect_meta", "win_back", "scores"]


def _steps(page: Page) -> dict[str, str]:
    items = page.locator("[data-checklist] [data-step]")
    return dict(
        items.evaluate_all("els => els.map(e => [e.dataset.step, e.dataset.done])")  # type: ignore[arg-type]
    )


def test_home_says_what_goldpan_does_and_what_to_do_first(page: Page, running_demo: Demo) -> None:
    demo = running_demo
    open_view(page, demo.page_url)
    expect(page.locator("[data-intro] p")).to_have_count(2)
    # The demo has computed segments and switched nothing on yet.
    assert _steps(page) == {
        "review_segments": "1",
        "tag_sync": "0",
        "connect_meta": "0",
        "win_back": "0",
        "scores": "0",
    }
    expect(page.locator("[data-checklist-done]")).to_have_text("1 of 5 done")
    # Each step links to where it is done.
    page.locator("[data-step='tag_sync'] a").click()
    page.wait_for_selector("body[data-view='segments']")
    page.go_back()
    page.wait_for_selector("body[data-view='home']")
    page.locator("[data-step='win_back'] a").click()
    page.wait_for_selector("body[data-view='settings']")
    # The state is the server's: tag sync switched on elsewhere shows as done on the next visit.
    with demo.ctx.sessions.begin() as session:
        session.execute(
            update(Segment)
            .where(Segment.shop_id == demo.shop_id, Segment.handle == "vip")
            .values(tag_sync=True)
        )
    try:
        open_view(page, demo.page_url)
        assert _steps(page)["tag_sync"] == "1"
        expect(page.locator("[data-checklist-done]")).to_have_text("2 of 5 done")
    finally:
        with demo.ctx.sessions.begin() as session:
            session.execute(
                update(Segment)
                .where(Segment.shop_id == demo.shop_id, Segment.handle == "vip")
                .values(tag_sync=False)
            )


def test_each_figure_has_its_definition_and_the_notice_names_the_first_order(
    page: Page, running_demo: Demo
) -> None:
    demo = running_demo
    open_view(page, demo.page_url)
    cards = page.locator("[data-metric]")
    for key in cards.evaluate_all("els => els.map(e => e.dataset.metric)"):
        expect(page.locator(f"[data-definition='{key}']")).to_have_text(metrics.DEFINITIONS[key])
    # The demo's shop has not been granted read_all_orders (shopify.app.toml does not ask
    # for it), yet its history reaches further back than 60 days: the notice names the first
    # order the figures use rather than claiming 60 days.
    with demo.ctx.sessions() as session:
        oldest = session.scalar(
            select(func.min(Order.processed_at)).where(Order.shop_id == demo.shop_id)
        )
    assert oldest is not None and (dt.datetime.now(dt.UTC) - oldest).days > 60
    notice = page.locator("[data-notice='scope_all_orders']")
    expect(notice).to_contain_text(f"{oldest:%B} {oldest.day}, {oldest.year}")
    expect(notice).not_to_contain_text("only the last 60 days of orders are visible")
