"""The customer drill-down in headless Chromium: from a member row to the customer's orders,
segments with reasons, predictions and the admin link; another shop's customer is not found.

The real app against a running Shopify sandbox (``seeded_page``), after a real full recompute so
that memberships, reasons and predictions are the engine's own.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, select, update

from shopify_app.db.models import Customer, Order, Segment, Shop
from shopify_app.segments import recompute
from tests.fixtures_api import ApiClient
from tests.fixtures_browser import open_view
from tests.fixtures_demo import SeededPage
from tests.test_predictions_page import seed

pytestmark = pytest.mark.e2e


def _segment_id(app: SeededPage, handle: str) -> int:
    with app.ctx.sessions() as s:
        return s.scalars(
            select(Segment.id).where(Segment.handle == handle, Segment.member_count > 0)
        ).one()


def test_a_member_opens_their_orders_segments_predictions_and_admin_link(
    page: Page, seeded_page: SeededPage
) -> None:
    shop_id = _shop_id(seeded_page)
    # Customers on a steady rhythm beside the seeded ones: enough history for a purchase model.
    seed(seeded_page.ctx.sessions, shop_id, 400)
    recompute.recompute_shop_now(seeded_page.ctx, shop_id)
    with seeded_page.ctx.sessions.begin() as s:  # a tenth of each order given back, as synced
        s.execute(update(Order).values(refunded=func.round(Order.total * 0.1, 2)))
    open_view(
        page, seeded_page.page_url, f"#/segments/{_segment_id(seeded_page, 'true-fans')}", "segment"
    )
    link = page.locator("[data-customer-link]").first
    customer_id = link.get_attribute("data-customer-link")
    name = link.inner_text()
    link.click()
    page.wait_for_selector("body[data-view='customer']", timeout=30_000)
    assert page.evaluate("location.hash") == f"#/customers/{customer_id}"
    expect(page.locator("h1")).to_have_text(name)
    with seeded_page.ctx.sessions() as s:
        city, country = s.execute(
            select(Customer.city, Customer.country_code).where(Customer.id == int(customer_id))
        ).one()
    names = {
        "US": "United States",
        "GR": "Greece",
        "KR": "South Korea",
        "AE": "United Arab Emirates",
    }
    expected = f"{city}, {names[country]}" if city else names[country]
    expect(page.locator("[data-customer-location]")).to_have_text(expected)

    said: dict[str, Any] = (
        ApiClient(seeded_page.app_url, seeded_page.shop).get(f"/customers/{customer_id}").json()
    )
    orders = page.locator("[data-table='customer-orders'] s-table-body s-table-row")
    expect(orders).to_have_count(len(said["orders"]))
    assert len(said["orders"]) >= 2  # a true fan
    first = said["orders"][0]
    expect(orders.first).to_contain_text(first["name"])
    for item in first["items"]:
        expect(orders.first).to_contain_text(f"{item['quantity']} × {item['title']}")
    expect(orders.first).to_contain_text(f"${first['amount']:,.2f}")
    assert first["refunded"] > 0
    expect(orders.first.locator("[data-refunded]")).to_have_text(f"${first['refunded']:,.2f}")
    status = page.locator("[data-table='customer-orders'] s-table-header", has_text="Status")
    expect(status).to_have_count(0)  # no order is cancelled or a test: no empty column

    segments = page.locator("[data-table='customer-segments'] s-table-body s-table-row")
    expect(segments).to_have_count(len(said["segments"]))
    fans = segments.filter(has=page.locator("a[href^='#/segments/']", has_text="True fans"))
    expect(fans).to_have_count(1)
    # The reason in words, translated from its structured form ("4 orders, about every …").
    expect(fans.locator(".gp-reason")).to_have_text(re.compile(r"^\d+ orders, about every \d+"))

    predictions = said["predictions"]
    assert predictions is not None
    p_alive = page.locator("[data-prediction='p_alive'] .gp-metric-value")
    expect(p_alive).to_have_text(f"{round(predictions['p_alive'] * 100)}%")
    r, f, m = predictions["rfm_score"]
    expect(page.locator("[data-prediction='rfm'] .gp-metric-value")).to_contain_text(
        f"R{r} F{f} M{m}"
    )
    for key in ("expected_orders_90d", "predicted_value_12m", "next_order_date"):
        expect(page.locator(f"[data-prediction='{key}'] .gp-metric-value")).not_to_have_text("—")

    admin = page.locator(f"[data-admin-link='{customer_id}']")
    store = seeded_page.shop.removesuffix(".myshopify.com")
    expect(admin).to_have_attribute(
        "href", f"https://admin.shopify.com/store/{store}/customers/{customer_id}"
    )

    # Cancelled in Shopify (as a sync would store it): the order says so when the view reopens.
    with seeded_page.ctx.sessions.begin() as s:
        s.execute(
            update(Order)
            .where(Order.id == first["id"])
            .values(cancelled_at=func.coalesce(Order.updated_at, Order.processed_at))
        )
    page.evaluate("() => { location.hash = '#/segments'; }")
    page.wait_for_selector("body[data-view='segments']", timeout=30_000)
    page.go_back()
    page.wait_for_selector("body[data-view='customer']", timeout=30_000)
    expect(status).to_have_count(1)
    expect(orders.first.locator("s-badge")).to_have_text("Cancelled")
    expect(orders.nth(1).locator("s-badge")).to_have_count(0)

    page.get_by_role("link", name="← Back").click()
    page.wait_for_selector("body[data-view='segment']", timeout=30_000)


def test_another_shops_customer_is_not_found_on_the_page(
    page: Page, seeded_page: SeededPage, make_shop: Any
) -> None:
    other = make_shop("elsewhere.myshopify.com")
    with seeded_page.ctx.sessions.begin() as s:
        s.add(Customer(shop_id=other.id, id=8_100_000_000_001, first_name="Not yours"))
    open_view(page, seeded_page.page_url, "#/customers/8100000000001", "customer")
    expect(page.get_by_text("Not yours")).to_have_count(0)
    expect(page.locator("s-banner[tone='warning']")).to_contain_text(
        "This customer is not in the store's data"
    )
    expect(page.locator("s-banner [data-action='back']")).to_have_attribute("href", "#/segments")


def test_without_a_purchase_model_the_page_says_so_and_shows_no_made_up_numbers(
    page: Page, seeded_page: SeededPage
) -> None:
    recompute.recompute_shop_now(seeded_page.ctx, _shop_id(seeded_page))
    with seeded_page.ctx.sessions() as s:
        customer_id = s.scalars(
            select(Customer.id).where(Customer.number_of_orders > 1).order_by(Customer.id)
        ).first()
    said = ApiClient(seeded_page.app_url, seeded_page.shop).get(f"/customers/{customer_id}").json()
    assert said["predictions"]["p_alive"] is None  # the seeded store alone is too small to fit
    open_view(page, seeded_page.page_url, f"#/customers/{customer_id}", "customer")
    expect(page.locator("[data-prediction='rfm']")).to_be_visible()
    expect(page.locator("[data-prediction='next_order_date']")).to_be_visible()
    expect(page.locator("[data-prediction='p_alive']")).to_have_count(0)
    expect(page.get_by_text("Not enough order history in this store yet")).to_be_visible()


def _shop_id(app: SeededPage) -> int:
    with app.ctx.sessions() as s:
        return s.scalars(select(Shop.id).where(Shop.domain == app.shop)).one()
