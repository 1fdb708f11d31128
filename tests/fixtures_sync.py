"""Fixtures for the sync and Admin-client tests: the Shopify sandbox on loopback, one shop each.

A pytest plugin (registered in ``tests/conftest.py``); test modules import only its helpers.

- ``make_sync_env(build=..., clock=...)``: a started :class:`ShopifySandbox` holding one shop
  (by default :func:`shaped_store`, the sandbox's copy of :func:`bulk_store`), the app's row for
  it installed with the sandbox's tokens, a context pointed at the sandbox that records what it
  enqueues, and an HTTP transport that records what the app sent (:class:`RecordingHttp`).
  ``clock`` is shared with the sandbox's cost bucket (see :class:`FakeClock`).
- ``sync_env``: the default one.
- ``recording_ctx``: the test context recording what it enqueues, for tests without Shopify.

The sandbox is the one stand-in: faults, throttling, bulk operations and tokens are its own,
as Shopify documents them. Tests only observe the traffic and drive time.

Also the pure builders of bulk JSONL objects (:func:`bulk_store` and friends) for the ingest
tests, which need no Shopify at all.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from goldpan_sandbox.bulk import BulkOperation
from goldpan_sandbox.cost import LeakyBucket
from goldpan_sandbox.shopify import ShopifySandbox
from goldpan_sandbox.store import Address, Customer, LineItem, Order, Product, Store, Variant
from shopify_app.crypto import TokenCipher
from shopify_app.db.models import Shop
from shopify_app.jobs import Context
from shopify_app.shopify.client import AdminClient, gid_number
from tests.conftest import TEST_API_KEY, TEST_API_SECRET

UTC = dt.UTC
HOLD = 3600.0
"""``bulk_delay`` that keeps bulk operations RUNNING until the test sets it back to 0."""

_OPERATION = re.compile(r"^(?:query|mutation)\s+(\w+)", re.MULTILINE)


# --- observing the app's traffic ----------------------------------------------------------------


@dataclass
class Call:
    """One Admin GraphQL request the app sent, with the sandbox's answer."""

    operation: str
    variables: dict[str, Any]
    token: str | None
    status: int
    answer: Any

    @property
    def cost(self) -> dict[str, Any]:
        return ((self.answer or {}).get("extensions") or {}).get("cost") or {}

    @property
    def throttled(self) -> bool:
        errors = (self.answer or {}).get("errors") or []
        return any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors)


class RecordingHttp(requests.Session):
    """The app's HTTP transport (``AdminClient(http=...)``), recording the GraphQL requests it
    sends and the staged uploads it posts; everything still goes to the sandbox."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.uploads: list[dict[str, Any]] = []

    def post(self, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().post(url, *args, **kwargs)
        if str(url).endswith("/graphql.json"):
            payload = kwargs.get("json") or {}
            match = _OPERATION.search(payload.get("query", ""))
            try:
                answer = response.json()
            except ValueError:
                answer = None
            self.calls.append(
                Call(
                    operation=match.group(1) if match else "anonymous",
                    variables=payload.get("variables") or {},
                    token=(kwargs.get("headers") or {}).get("X-Shopify-Access-Token"),
                    status=response.status_code,
                    answer=answer,
                )
            )
        elif "files" in kwargs:
            self.uploads.append(
                {"fields": dict(kwargs.get("data") or []), "content": kwargs["files"]["file"][1]}
            )
        return response

    def operation_names(self) -> list[str]:
        return [c.operation for c in self.calls]

    def named(self, operation: str) -> list[Call]:
        return [c for c in self.calls if c.operation == operation]


class RecordingContext(Context):
    """A Context whose enqueued tasks are recorded instead of run (tests inspect them)."""

    enqueued: list[tuple[str, dict[str, Any]]]

    def enqueue(self, name: str, **kwargs: Any) -> None:
        self.enqueued.append((name, kwargs))


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps.

    Given to the sandbox too (``ShopifySandbox(clock=...)``), its cost bucket refills by exactly
    the seconds the client slept. ``on_sleep`` runs after each sleep: another worker of the same
    app spending the bucket meanwhile, say.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep()


# --- the sandbox with one shop ------------------------------------------------------------------


@dataclass
class SyncEnv:
    """One sandbox shop and the app's view of it."""

    sandbox: ShopifySandbox
    store: Store
    shop: Shop
    ctx: RecordingContext
    http: RecordingHttp
    tokens: dict[str, Any] = field(default_factory=dict)

    @property
    def bucket(self) -> LeakyBucket:
        """The sandbox's cost bucket for (the app, this shop)."""
        return self.sandbox.bucket(self.store.domain)

    def client(self, **kwargs: Any) -> AdminClient:
        """An Admin client for the shop, sending through :attr:`http`."""
        return AdminClient(self.ctx, self.shop.id, http=self.http, **kwargs)

    def bulk_operation(self, gid: str) -> BulkOperation:
        """The sandbox's side of bulk operation ``gid``."""
        op = self.sandbox.bulk.get(self.store.domain, gid_number(gid) or 0)
        assert op is not None, gid
        return op

    def hold_bulk(self) -> None:
        """Keep bulk operations RUNNING (those started from now on, and those waiting)."""
        self.sandbox.faults.bulk_delay = HOLD

    def release_bulk(self) -> None:
        """Let held bulk operations finish, and wait until every one of the shop's has."""
        self.sandbox.faults.bulk_delay = 0.0
        for op in self.sandbox.bulk.operations(self.store.domain):
            assert self.sandbox.bulk.wait(op), f"bulk operation {op.id} never finished"

    def wait_running(self, gid: str) -> None:
        """Wait until the sandbox has started running ``gid`` (it starts in a thread)."""
        op = self.bulk_operation(gid)
        deadline = time.monotonic() + 10
        while op.status == "CREATED":
            assert time.monotonic() < deadline, f"{gid} never started"
            time.sleep(0.01)


def shaped_store(
    domain: str, customers: int = 20, orders: int = 30, *, name: str = "Test"
) -> Store:
    """The sandbox's copy of :func:`bulk_store`: the same ids, counts and shapes (order ``n`` has
    ``1 + n % 3`` line items; every sixth has no customer; five products of one variant each)."""
    store = Store(domain, name=name, currency="EUR")
    created = dt.datetime(2025, 1, 1, tzinfo=UTC)
    updated = dt.datetime(2026, 10, 1, 10, tzinfo=UTC)
    for number in range(1, 6):
        product = Product(
            number, f"Product {number}", f"product-{number}", "Tea", "Goldpan", created,
            dt.datetime(2026, 9, 1, tzinfo=UTC),
        )  # fmt: skip
        product.variants.append(
            Variant(number, number, "Default", f"SKU-{number - 1}", Decimal("14.97"))
        )
        store.add_product(product)
    for number in range(1, customers + 1):
        store.add_customer(
            Customer(
                id=number,
                first_name=f"First{number}",
                last_name="Ünal" if number % 2 else "Smith",
                email=f"c{number}@example.com",
                phone=None if number % 4 else f"+3361234{number:04d}",
                created_at=created,
                updated_at=updated,
                email_marketing_state="SUBSCRIBED" if number % 3 else "NOT_SUBSCRIBED",
                default_address=Address(
                    company="Acme" if number % 5 == 0 else None,
                    city="Lyon",
                    country_code="FR",
                    zip="69001",
                ),
                tags=["vip"] if number % 7 == 0 else [],
                rfm_group="LOYAL",
                predicted_spend_tier="HIGH",
            ),
            notify=False,
        )
    item = 1
    placed = dt.datetime(2026, 3, 1, 12, tzinfo=UTC)
    for number in range(1, orders + 1):
        items = []
        for _ in range(1 + number % 3):
            product = item % 5 + 1
            items.append(
                LineItem(item, product, product, f"SKU-{item % 5}", f"Item {item}", 2,
                         Decimal("14.975"))
            )  # fmt: skip
            item += 1
        store.add_order(
            Order(
                id=number,
                name=f"#{1000 + number}",
                customer_id=(number % customers) + 1 if number % 6 and customers else None,
                email=None,
                created_at=placed,
                processed_at=placed,
                updated_at=updated,
                currency="EUR",
                line_items=items,
                discount_codes=["WELCOME"] if number % 2 else [],
            ),
            notify=False,
        )
    return store


@pytest.fixture
def make_sync_env(
    ctx: Context, make_shop: Any, cipher: TokenCipher, tmp_path: Path
) -> Iterator[Callable[..., SyncEnv]]:
    """Start a sandbox holding ``build(domain)`` (default :func:`shaped_store`) and install the
    app on it; ``clock`` measures the sandbox's cost bucket."""
    sandboxes: list[ShopifySandbox] = []

    def factory(
        build: Callable[[str], Store] = shaped_store, *, clock: Callable[[], float] = time.monotonic
    ) -> SyncEnv:
        domain = f"sync-{len(sandboxes) + 1}.myshopify.com"
        sandbox = ShopifySandbox(
            TEST_API_KEY,
            TEST_API_SECRET,
            workdir=tmp_path / f"sandbox-{len(sandboxes)}",
            seed=7,
            clock=clock,
        )
        sandboxes.append(sandbox)
        store = sandbox.add_shop(domain, build(domain))
        sandbox.start()
        tokens = sandbox.install(domain)
        shop = make_shop(
            domain,
            token=tokens["access_token"],
            refresh_token=cipher.encrypt(tokens["refresh_token"]),
        )
        recording = RecordingContext(
            settings=ctx.settings.with_overrides(shopify_base_url=sandbox.shop_base("{shop}")),
            engine=ctx.engine,
            sessions=ctx.sessions,
            cipher=ctx.cipher,
        )
        recording.enqueued = []
        return SyncEnv(sandbox, store, shop, recording, RecordingHttp(), tokens)

    yield factory
    for sandbox in sandboxes:
        sandbox.faults.clear()  # lets operations a test still holds finish
        sandbox.close()


@pytest.fixture
def sync_env(make_sync_env: Callable[..., SyncEnv]) -> SyncEnv:
    """A sandbox holding :func:`shaped_store`, the app installed on it."""
    return make_sync_env()


@pytest.fixture
def recording_ctx(ctx: Context) -> RecordingContext:
    """The test context recording what it enqueues (for tests that need no Shopify at all)."""
    recording = RecordingContext(
        settings=ctx.settings, engine=ctx.engine, sessions=ctx.sessions, cipher=ctx.cipher
    )
    recording.enqueued = []
    return recording


# --- bulk JSONL objects, as Shopify writes them -------------------------------------------------


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def bulk_customer(number: int, *, updated: str = "2026-10-01T10:00:00Z", **extra: Any) -> dict:
    row: dict[str, Any] = {
        "id": gid("Customer", number),
        "firstName": f"First{number}",
        "lastName": "Ünal" if number % 2 else "Smith",
        "defaultEmailAddress": {
            "emailAddress": f"c{number}@example.com",
            "marketingState": "SUBSCRIBED" if number % 3 else "NOT_SUBSCRIBED",
        },
        "defaultPhoneNumber": None
        if number % 4
        else {
            "phoneNumber": f"+3361234{number:04d}",
            "smsMarketingConsent": {"state": "SUBSCRIBED"},
        },
        "defaultAddress": {
            "countryCodeV2": "FR",
            "provinceCode": None,
            "city": "Lyon",
            "zip": "69001",
            "company": "Acme" if number % 5 == 0 else None,
        },
        "tags": ["vip"] if number % 7 == 0 else [],
        "numberOfOrders": "2",
        "amountSpent": {"amount": "120.50", "currencyCode": "EUR"},
        "statistics": {"rfmGroup": "LOYAL", "predictedSpendTier": "HIGH"},
        "createdAt": "2025-01-01T00:00:00Z",
        "updatedAt": updated,
    }
    row.update(extra)
    return row


def bulk_order(number: int, customer: int | None, *, updated: str = "2026-10-01T10:00:00Z") -> dict:
    return {
        "id": gid("Order", number),
        "name": f"#{1000 + number}",
        "email": None,
        "customer": {"id": gid("Customer", customer)} if customer else None,
        "createdAt": "2026-03-01T12:00:00Z",
        "processedAt": "2026-03-01T12:00:00Z",
        "updatedAt": updated,
        "cancelledAt": None,
        "test": False,
        "totalPriceSet": {"shopMoney": {"amount": "59.90", "currencyCode": "EUR"}},
        "totalRefundedSet": {"shopMoney": {"amount": "0.0"}},
        "discountCodes": ["WELCOME"] if number % 2 else [],
        "billingAddress": {"company": None},
    }


def bulk_line_item(number: int, order: int) -> dict:
    return {
        "id": gid("LineItem", number),
        "title": f"Item {number}",
        "sku": f"SKU-{number % 5}",
        "quantity": 2,
        "currentQuantity": 2,
        "product": {"id": gid("Product", number % 5 + 1)},
        "variant": {"id": gid("ProductVariant", number % 5 + 1)},
        "discountedTotalSet": {"shopMoney": {"amount": "29.95"}},
        "__parentId": gid("Order", order),
    }


def bulk_store(customers: int = 20, orders: int = 30) -> dict[str, list[dict[str, Any]]]:
    """Bulk JSONL objects per resource; some line items come *before* their order."""
    order_lines: list[dict[str, Any]] = []
    item = 1
    for number in range(1, orders + 1):
        children = [bulk_line_item(item + k, number) for k in range(1 + number % 3)]
        item += len(children)
        parent = bulk_order(number, customer=(number % customers) + 1 if number % 6 else None)
        order_lines += [*children, parent] if number % 4 == 0 else [parent, *children]
    product_lines: list[dict[str, Any]] = []
    for number in range(1, 6):
        product_lines.append(
            {
                "id": gid("Product", number),
                "title": f"Product {number}",
                "handle": f"product-{number}",
                "productType": "Tea",
                "vendor": "Goldpan",
                "status": "ACTIVE",
                "updatedAt": "2026-09-01T00:00:00Z",
            }
        )
        product_lines.append(
            {
                "id": gid("ProductVariant", number),
                "title": "Default",
                "sku": f"SKU-{number - 1}",
                "price": "14.97",
                "__parentId": gid("Product", number),
            }
        )
    return {
        "customers": [bulk_customer(n) for n in range(1, customers + 1)],
        "orders": order_lines,
        "products": product_lines,
    }
