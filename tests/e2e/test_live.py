"""Numbers that stay correct on an open page, in a real headless Chromium against the whole demo:
an order placed through the sandbox's control API reaches the open members view (orders, spent,
sort order) without a reload; tag sync shows its progress until every tag is written; member
search takes ``%`` and ``_`` literally and says how many matched."""

from __future__ import annotations

import re
import time

import pytest
import requests
from playwright.sync_api import Page, expect

from goldpan_sandbox import control
from goldpan_sandbox.demo import Demo
from tests.fixtures_browser import open_view, wait_until

pytestmark = pytest.mark.e2e


ROWS = "[data-table='members'] s-table-body s-table-row"


def open_segment(page: Page, demo: Demo, handle: str) -> None:
    open_view(page, demo.page_url, "segments")
    page.locator(f"[data-segment='{handle}']").click()
    page.wait_for_selector("body[data-view='segment']")
    expect(page.locator(ROWS).first).to_be_visible()


def test_a_new_customers_order_reaches_the_open_members_view(page: Page, demo: Demo) -> None:
    open_segment(page, demo, "one-time-buyers")
    sort = page.locator("[data-input='member-sort']")
    sort.select_option("-spent")
    rows = page.locator(ROWS)
    expect(rows.first).to_be_visible()
    top = rows.first.locator("[data-customer]")
    assert float(top.get_attribute("data-spent") or "0") < 9_876
    size = page.locator(".gp-metric-value[data-members]")
    before = int(size.get_attribute("data-members") or "0")
    sort.focus()
    email = f"live-{time.monotonic_ns()}@aurora-hotel.example"
    placed = requests.post(
        f"{demo.sandbox_url}/_sandbox/shops/{demo.shop_domain}/orders",
        json={
            "email": email,
            "first_name": "Nikos",
            "last_name": "Live",
            "line_items": [{"quantity": 1, "price": "9876.00"}],
        },
        timeout=30,
    )
    assert placed.status_code == 201, placed.text
    # No reload: the page follows the shop's data version and redraws the rows in place.
    expect(rows.first).to_contain_text(email, timeout=45_000)
    expect(top).to_have_attribute("data-orders", "1")
    expect(top).to_have_attribute("data-spent", "9876")
    expect(rows.first).to_contain_text("$9,876.00")
    expect(rows.first.locator(".gp-reason")).to_contain_text("one order on")
    # The segment's own figures above the list follow too.
    expect(size).to_have_attribute("data-members", str(before + 1))
    expect(size).to_have_text(f"{before + 1:,}")
    # The redraw kept the merchant's place: the sort still chosen and still focused.
    expect(sort).to_have_value("-spent")
    assert page.evaluate("document.activeElement?.dataset?.input") == "member-sort"


def test_tag_sync_shows_progress_until_every_tag_is_written(page: Page, demo: Demo) -> None:
    handle = "repeat-customers"
    open_segment(page, demo, handle)
    members = int(page.locator("[data-members]").first.get_attribute("data-members") or "0")
    assert members > 10  # more than one aliased write
    switch = page.locator("[data-tag-sync]")
    expect(switch).to_have_attribute("data-tag-sync", "off")
    button = switch.get_by_role("button", name="Tag sync for Repeat customers")
    # Shopify answers slowly while the tags are written, so the progress can be seen.
    demo.shopify.faults.slow_next(1.5, None)
    try:
        button.click()
        page.locator("dialog[open] [data-action='confirm']").click()
        progress = page.locator("[data-tag-progress]")
        expect(progress).to_contain_text(
            re.compile(rf"^Writing tags: [\d,]+ of {members:,}$"), timeout=15_000
        )
        expect(page.locator("[data-tag-sync]")).to_have_attribute("data-tag-sync", "on")
    finally:
        demo.shopify.faults.clear()
    # Every tag written: "On", without leaving the view.
    expect(page.locator("[data-tag-progress]")).to_have_count(0, timeout=60_000)
    expect(page.locator("[data-tag-sync] s-badge")).to_have_text("On")
    store = demo.shopify.store(demo.shop_domain)
    tagged = sum("goldpan-repeat-customers" in c.tags for c in store.customers.values())
    assert tagged == members


def test_member_search_is_literal_and_counts_its_matches(page: Page, demo: Demo) -> None:
    open_segment(page, demo, "one-time-buyers")
    rows = page.locator(ROWS)
    customer_id = int(rows.first.locator("[data-customer]").get_attribute("data-customer") or 0)
    control.edit_customer(
        demo.shopify, demo.shop_domain, customer_id, {"last_name": "Under_Score 100%"}
    )
    search = page.locator("[data-input='member-search']")
    count = page.locator("[data-matches]")

    def found(q: str) -> int:
        search.fill(q)
        expect(count).to_contain_text(q)
        return int(count.get_attribute("data-matches") or "-1")

    def renamed() -> bool:
        search.fill("")
        search.fill("r_s")
        page.wait_for_timeout(700)
        return count.count() == 1 and count.get_attribute("data-matches") == "1"

    # The edit arrives by webhook: wait until the search finds the new name.
    wait_until(renamed)
    expect(count).to_have_text("1 customer matches “r_s”")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Under_Score 100%")
    # As wildcards, "%" would match everyone and "_" any one character.
    assert found("%") == 1
    assert found("0%") == 1
    search.fill("rXs")
    expect(page.get_by_text("No customers match “rXs”")).to_be_visible()
    expect(count).to_have_count(0)
    search.fill("")
    expect(rows).not_to_have_count(1)


def place_order_for_a_new_customer(demo: Demo) -> None:
    placed = requests.post(
        f"{demo.sandbox_url}/_sandbox/shops/{demo.shop_domain}/orders",
        json={"email": f"new-{time.monotonic_ns()}@aurora-hotel.example"},
        timeout=30,
    )
    assert placed.status_code == 201, placed.text


def test_the_segment_list_and_home_follow_orders_without_a_reload(page: Page, demo: Demo) -> None:
    open_view(page, demo.page_url, "segments")
    row = page.locator("s-table-row", has=page.locator("[data-segment='one-time-buyers']"))
    count = row.locator("[data-members]")
    before = int(count.get_attribute("data-members") or "0")
    place_order_for_a_new_customer(demo)
    expect(count).to_have_attribute("data-members", str(before + 1), timeout=45_000)
    # Home's card for the segment, drawn before the next order, follows it too.
    open_view(page, demo.page_url)
    card = page.locator("li.gp-card", has=page.get_by_text("One-time buyers", exact=True))
    figure = card.locator(".gp-metric-value")
    expect(figure).to_have_text(f"{before + 1:,}")
    place_order_for_a_new_customer(demo)
    expect(figure).to_have_text(f"{before + 2:,}", timeout=45_000)
