"""Fixtures for the Shopify stand-in: a running sandbox with a small hand-made shop.

A pytest plugin (registered in ``tests/conftest.py``); test modules import only its helpers.

- ``shopify_sandbox``: a started :class:`ShopifySandbox` (function scope) with one shop,
  :data:`SANDBOX_SHOP`, holding :func:`small_store`; webhooks go to ``webhook_sink``'s URL when
  the test asks for both (set ``shopify_sandbox.app_url = webhook_sink.url``).
- ``shopify_sandbox_module``: the same, shared by a test module.
- ``sandbox_token``: a live access token for :data:`SANDBOX_SHOP`.
- ``webhook_sink``: a loopback app that records every webhook it receives.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from goldpan_sandbox.server import RunningServer, start_server
from goldpan_sandbox.shopify import ShopifySandbox
from goldpan_sandbox.store import (
    Address,
    Customer,
    LineItem,
    Order,
    Product,
    Store,
    Variant,
)
from tests.conftest import TEST_API_KEY, TEST_API_SECRET

SANDBOX_SHOP = "linen-sandbox.myshopify.com"
SANDBOX_TOPICS = {
    "orders/create": "/webhooks",
    "orders/updated": "/webhooks",
    "orders/cancelled": "/webhooks",
    "customers/create": "/webhooks",
    "customers/update": "/webhooks",
    "customers/delete": "/webhooks",
    "bulk_operations/finish": "/webhooks",
}


def small_store(domain: str = SANDBOX_SHOP) -> Store:
    """Three customers (a wedding buyer, a fan, a hotel), two products, five orders."""
    store = Store(domain, name="Linen Sandbox")
    t0 = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
    napkin = Product(store.next_id(), "Linen napkin", "linen-napkin", "Napkins", "Goldpan", t0, t0)
    napkin.variants.append(Variant(store.next_id(), napkin.id, "White", "NAP-W", Decimal("8.50")))
    runner = Product(store.next_id(), "Table runner", "runner", "Runners", "Goldpan", t0, t0)
    runner.variants.append(Variant(store.next_id(), runner.id, "Sage", "RUN-S", Decimal("42.00")))
    for product in (napkin, runner):
        store.add_product(product)
    people = [
        ("Ελένη", "Παπαδοπούλου", "eleni@example.gr", "+306912345678", "GR", None, "SUBSCRIBED"),
        ("Min-jun", "Kim", "minjun@example.kr", "+821012345678", "KR", None, "NOT_SUBSCRIBED"),
        ("Dana", "Reyes", "dana@grandhotel.com", "+12125550123", "US", "Grand Hotel", "SUBSCRIBED"),
    ]
    customers = []
    for i, (first, last, email, phone, country, company, consent) in enumerate(people):
        customers.append(
            store.add_customer(
                Customer(
                    id=store.next_id(),
                    first_name=first,
                    last_name=last,
                    email=email,
                    phone=phone,
                    created_at=t0 + dt.timedelta(days=i),
                    updated_at=t0 + dt.timedelta(days=i),
                    email_marketing_state=consent,
                    default_address=Address(
                        first_name=first,
                        last_name=last,
                        company=company,
                        city="New York" if country == "US" else "Athens",
                        province_code="NY" if country == "US" else None,
                        country_code=country,
                        zip="10001" if country == "US" else "10558",
                    ),
                    tags=["vip"] if i == 1 else [],
                    rfm_group="CHAMPIONS" if i == 1 else None,
                ),
                notify=False,
            )
        )
    plan = [(0, napkin, 12, 0), (1, runner, 1, 10), (1, napkin, 4, 40), (1, runner, 2, 80)]
    plan.append((2, napkin, 120, 20))
    for who, product, quantity, day in plan:
        when = t0 + dt.timedelta(days=day)
        variant = product.variants[0]
        store.add_order(
            Order(
                id=store.next_id(),
                name=store.next_order_name(),
                customer_id=customers[who].id,
                email=customers[who].email,
                created_at=when,
                processed_at=when,
                updated_at=when,
                currency="USD",
                line_items=[
                    LineItem(
                        store.next_id(),
                        product.id,
                        variant.id,
                        variant.sku,
                        product.title,
                        quantity,
                        variant.price,
                    )
                ],
                discount_codes=["WEDDING10"] if who == 0 else [],
                billing_address=customers[who].default_address,
            ),
            notify=False,
        )
    return store


def crowded_store(customers: int, domain: str = SANDBOX_SHOP) -> Store:
    """:func:`small_store` plus ``customers`` more, some sharing ``updated_at`` (for paging)."""
    store = small_store(domain)
    t0 = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    variant = next(iter(store.products.values())).variants[0]
    for i in range(customers):
        when = t0 + dt.timedelta(hours=i // 3)  # three customers per timestamp: ties
        customer = store.add_customer(
            Customer(store.next_id(), f"C{i}", "Crowd", f"c{i}@example.com", None, when, when),
            notify=False,
        )
        for k in range(i % 3):
            store.add_order(
                Order(
                    store.next_id(),
                    store.next_order_name(),
                    customer.id,
                    customer.email,
                    when,
                    when,
                    when,
                    "USD",
                    [
                        LineItem(
                            store.next_id(),
                            variant.product_id,
                            variant.id,
                            variant.sku,
                            "Linen napkin",
                            k + 1,
                            variant.price,
                        )
                    ],
                ),
                notify=False,
            )
    return store


@pytest.fixture
def shopify_sandbox(tmp_path: Any) -> Iterator[ShopifySandbox]:
    """A started sandbox with :data:`SANDBOX_SHOP`; webhooks off until ``app_url`` is set."""
    sandbox = ShopifySandbox(
        TEST_API_KEY,
        TEST_API_SECRET,
        webhook_topics=dict(SANDBOX_TOPICS),
        retry_backoff=0.05,
        workdir=tmp_path / "sandbox",
        seed=7,
    )
    sandbox.add_shop(SANDBOX_SHOP, small_store())
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.fixture(scope="module")
def shopify_sandbox_module(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ShopifySandbox]:
    """Like ``shopify_sandbox`` but shared by a test module (tests must not depend on state)."""
    sandbox = ShopifySandbox(
        TEST_API_KEY,
        TEST_API_SECRET,
        webhook_topics=dict(SANDBOX_TOPICS),
        retry_backoff=0.05,
        workdir=tmp_path_factory.mktemp("sandbox"),
        seed=7,
    )
    sandbox.add_shop(SANDBOX_SHOP, small_store())
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.fixture
def sandbox_token(shopify_sandbox: ShopifySandbox) -> str:
    """A live (expiring) access token for :data:`SANDBOX_SHOP`."""
    return str(shopify_sandbox.install(SANDBOX_SHOP)["access_token"])


def graphql(
    sandbox: ShopifySandbox,
    token: str,
    query: str,
    variables: dict[str, Any] | None = None,
    shop: str = SANDBOX_SHOP,
) -> requests.Response:
    """POST a document to the sandbox's Admin GraphQL endpoint over real HTTP."""
    return requests.post(
        sandbox.graphql_url(shop),
        json={"query": query, "variables": variables or {}},
        headers={"X-Shopify-Access-Token": token},
        timeout=10,
    )


@dataclass
class WebhookSink:
    """Records webhooks; answers with ``statuses`` in turn (then 200)."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def topics(self) -> list[str]:
        with self.lock:
            return [h["x-shopify-topic"] for h, _ in self.received]


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink()

    async def receive(request: Request) -> PlainTextResponse:
        body = await request.body()
        with sink.lock:
            sink.received.append((dict(request.headers), body))
            status = sink.statuses.pop(0) if sink.statuses else 200
        return PlainTextResponse("ok", status_code=status)

    server: RunningServer = start_server(
        Starlette(routes=[Route("/webhooks", receive, methods=["POST"])])
    )
    sink.url = server.url
    try:
        yield sink
    finally:
        server.stop()
