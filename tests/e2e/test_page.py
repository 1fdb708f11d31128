"""The embedded page in a real headless Chromium against the whole demo (sandboxes + app + worker).

Scenarios from the issue: the page loads with segments populated; a segment opens with its
members; a changed setting changes the counts; an order placed in the sandbox shows up on the
page and, once tag sync is on, in the customer's tags in Shopify. The CDN (App Bridge, Polaris)
is unreachable here, so the page runs on its fallback styles and the demo's session-token shim.
"""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from goldpan_sandbox import control
from goldpan_sandbox.demo import Demo
from shopify_app.segments import metrics
from tests.fixtures_browser import open_view, wait_until

pytestmark = pytest.mark.e2e


def segment_members(page: Page, handle: str) -> int:
    row = page.locator("s-table-row", has=page.locator(f"[data-segment='{handle}']"))
    return int(row.locator("[data-members]").get_attribute("data-members") or "-1")


def test_page_loads_with_segments_populated(page: Page, demo: Demo) -> None:
    open_view(page, demo.page_url, "segments")
    table = page.locator("[data-table='segments']")
    expect(table).to_be_visible()
    handles = table.locator("[data-segment]").evaluate_all("els => els.map(e => e.dataset.segment)")
    assert {"business-buyers", "repeat-customers", "one-time-buyers", "vip"} <= set(handles)
    assert segment_members(page, "repeat-customers") > 0
    expect(page.locator("[data-segment='true-fans']")).to_have_text("True fans")


def test_home_shows_sync_and_retention_headline(page: Page, demo: Demo) -> None:
    open_view(page, demo.page_url)
    expect(page.locator("[data-sync='done']")).to_be_visible()
    expect(page.locator("[data-metric='repeat_purchase_rate'] .gp-metric-value")).to_have_text(
        re.compile(r"\d")
    )
    # Each figure beside its definition; amounts in the shop's currency (the demo sells in USD).
    aov = page.locator("[data-metric='average_order_value']")
    expect(aov.locator(".gp-metric-value")).to_have_text(re.compile(r"^\$[\d,]+\.\d\d$"))
    expect(aov.locator("[data-definition]")).to_have_text(
        metrics.DEFINITIONS["average_order_value"]
    )
    expect(page.locator("[data-definition]")).to_have_count(6)


def test_reasons_and_counts_follow_the_locale_and_the_shops_currency(
    page: Page, demo: Demo
) -> None:
    """The page's own formatting code in a real browser: plural forms from the locale's rules,
    amounts in the currency with its own decimals."""
    open_view(page, demo.page_url)
    said = page.evaluate(
        """async () => {
          const i18n = await import("/static/i18n.js");
          const reason = (key, params, currency) =>
            i18n.reason(JSON.stringify({ key, params }), currency);
          const out = {};
          for (const lang of ["en", "ar", "el", "ko"]) {
            await i18n.init(lang);
            out[lang] = [
              reason("repeat", { orders: 1, last_date: "2026-03-03" }),
              reason("repeat", { orders: 3, last_date: "2026-03-03" }),
              reason("true_fan", { orders: 3, days: 1, last_date: "2026-03-03" }),
              reason("one_time", { day_date: "2026-03-03", spend_money: 1250 }, "KRW"),
              i18n.t("count.days", { count: 0.96 }),
            ];
          }
          return out;
        }"""
    )
    assert said["en"] == [
        "1 order, the last on March 3, 2026",
        "3 orders, the last on March 3, 2026",
        "3 orders, about every 1 day; the last on March 3, 2026",
        "one order on March 3, 2026 (₩1,250)",
        "1 day",
    ]
    assert said["ar"][0].startswith("طلب واحد،") and said["ar"][1].startswith("3 طلبات،")
    assert said["el"][0].startswith("1 παραγγελία,") and said["el"][1].startswith("3 παραγγελίες,")
    assert said["ko"][0].startswith("주문 1건,") and "₩1,250" in said["ko"][3]


def test_a_segment_opens_with_members_search_and_export(page: Page, demo: Demo) -> None:
    open_view(page, demo.page_url, "segments")
    page.locator("[data-segment='one-time-buyers']").click()
    members = page.locator("[data-table='members'] s-table-body s-table-row")
    expect(members.first).to_be_visible()
    assert members.count() == min(50, int(page.locator("[data-members]").first.inner_text()))
    first = members.first.locator("[data-customer] .gp-subdued").inner_text()
    page.locator("[data-input='member-search']").fill(first)
    expect(members).to_have_count(1)
    expect(members.first).to_contain_text(first)
    with page.expect_download() as download:
        page.get_by_text("Export CSV").click()
    path = Path(download.value.path())
    # UTF-8 with a byte order mark: Excel reads it as UTF-8 only then.
    assert path.read_bytes().startswith(b"\xef\xbb\xbfcustomer_id,first_name")


def test_arabic_is_right_to_left(page: Page, demo: Demo) -> None:
    open_view(page, demo.page_url, "segments", locale="ar")
    assert page.evaluate("document.documentElement.dir") == "rtl"
    expect(page.locator("[data-segment='vip']")).to_have_text("كبار العملاء")
    expect(page.locator("[data-nav='analytics']")).to_have_text("التحليلات")


def test_analytics_charts_are_accessible_svg(page: Page, demo: Demo) -> None:
    open_view(page, demo.page_url, "analytics")
    figures = page.locator("[data-table='figures'] [data-figure]")
    expect(figures).to_have_count(len(metrics.NAMES))
    charts = page.locator("svg.gp-chart[role='img']")
    expect(charts.first).to_be_visible()
    assert charts.count() >= 5
    for i in range(charts.count()):
        labelled = charts.nth(i).get_attribute("aria-labelledby") or ""
        assert all(page.locator(f"[id='{ref}']").text_content() for ref in labelled.split())


def test_a_changed_setting_changes_the_counts(page: Page, demo: Demo) -> None:
    open_view(page, demo.page_url, "segments")
    before = segment_members(page, "business-buyers")
    open_view(page, demo.page_url, "settings")
    units = page.locator("[data-setting='business_units_per_order']")
    units.fill("0")
    page.locator("[data-action='save']").click()
    expect(
        page.locator("[data-field='business_units_per_order'] .gp-field-error")
    ).not_to_be_empty()
    units.fill("6")
    page.locator("[data-action='save']").click()
    expect(page.locator("s-banner[tone='success']")).to_be_visible()

    def grown() -> bool:
        open_view(page, demo.page_url, "segments")
        return segment_members(page, "business-buyers") > before

    wait_until(grown)


def test_an_order_in_the_sandbox_shows_up_on_the_page_and_in_tags(page: Page, demo: Demo) -> None:
    email = f"banquets-{time.monotonic_ns()}@hotel-aurora.example"
    order = control.place_order(
        demo.shopify,
        demo.shop_domain,
        {
            "email": email,
            "first_name": "Eleni",
            "last_name": "Papadaki",
            "email_marketing_state": "SUBSCRIBED",
            "line_items": [{"quantity": 60}],
        },
    )
    customer_id = order.customer_id
    open_view(page, demo.page_url, "segments")
    page.locator("[data-segment='business-buyers']").click()
    search = page.locator("[data-input='member-search']")
    rows = page.locator("[data-table='members'] s-table-body s-table-row")

    def listed() -> bool:
        search.fill("")
        search.fill(email)
        page.wait_for_timeout(700)
        return rows.count() == 1 and email in rows.first.inner_text()

    wait_until(listed)
    expect(rows.first).to_contain_text("60")

    # Turn tag sync on through the page: the preview comes first, then the tag reaches Shopify.
    switch = page.locator("[data-tag-sync] s-button").first
    if page.locator("[data-tag-sync='off']").count():
        switch.click()
        dialog = page.locator("dialog[open]")
        expect(dialog.locator("[data-preview='tags']")).to_be_visible()
        assert int(dialog.locator("[data-gain]").get_attribute("data-gain") or "0") >= 1
        dialog.locator("[data-action='confirm']").click()
        expect(page.locator("[data-tag-sync='on']").first).to_be_visible()
    store = demo.shopify.store(demo.shop_domain)
    wait_until(lambda: "goldpan-business-buyers" in store.customers[customer_id].tags)


def test_member_reasons_are_in_the_pages_language_and_the_csv_in_english(
    page: Page, demo: Demo
) -> None:
    # Reasons are stored structured; the page says them in the admin's language.
    open_view(page, demo.page_url, "segments", locale="ar")
    page.locator("[data-segment='one-time-buyers']").click()
    reason = page.locator("[data-table='members'] .gp-reason").first
    expect(reason).to_contain_text("طلب واحد في")
    assert "{" not in reason.inner_text()
    open_view(page, demo.page_url, "segments")
    page.locator("[data-segment='one-time-buyers']").click()
    expect(page.locator("[data-table='members'] .gp-reason").first).to_contain_text("one order on")
    with page.expect_download() as download:
        page.get_by_text("Export CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text("utf-8-sig"))))
    assert rows and all(row["reason"].startswith("one order on ") for row in rows)


def test_scores_switch_writes_metafields_on_the_sandbox_customers(page: Page, demo: Demo) -> None:
    open_view(page, demo.page_url, "settings")
    expect(page.locator("[data-actions='discounts'] [data-tier='1']")).to_be_visible()
    page.locator("[data-action='scores']").click()
    store = demo.shopify.store(demo.shop_domain)

    def written() -> bool:
        with store.lock:
            return any(c.metafields for c in store.customers.values())

    wait_until(written)
    open_view(page, demo.page_url, "settings")
    expect(page.locator("[data-actions='scores'] [data-action='scores']")).to_have_text("Turn off")
