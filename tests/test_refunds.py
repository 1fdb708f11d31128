"""Refunds are not purchases: the app counts orders net of refunds, through every door.

A store on the sandbox is synced in bulk, refunds arrive as ``refunds/create`` deliveries, and
the segments recompute; the same store exported as Shopify's orders CSV gives the same
segments; the generated demo store's refunded orders are left out.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from goldpan_sandbox.delivery import order_payload, refund_payload
from goldpan_sandbox.generator import generate_labelled, generate_store
from goldpan_sandbox.store import Address as StoreAddress
from goldpan_sandbox.store import Customer as StoreCustomer
from goldpan_sandbox.store import LineItem as StoreLineItem
from goldpan_sandbox.store import Order as StoreOrder
from goldpan_sandbox.store import Store
from shopify_app.db.models import LineItem, Membership, Order, Segment, WebhookEvent
from shopify_app.segments import loader, recompute
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import (
    Dataset,
    DatasetBuilder,
    net_value,
    product_key_for_title,
)
from shopify_app.segments.library import evaluate, reasons
from shopify_app.sync import bulk, inbox
from shopify_app.sync.orders_csv import read_orders
from shopify_app.sync.webhooks import apply_webhook
from tests.fixtures_sync import SyncEnv

TODAY = dt.datetime.now(dt.UTC).date()


def _noon(days_ago: int) -> dt.datetime:
    day = TODAY - dt.timedelta(days=days_ago)
    return dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC)


def _buyer(store: Store, first: str, email: str, units: int, days_ago: int) -> StoreOrder:
    """A new customer with one order of ``units`` of the shop's dearest variant."""
    when = _noon(days_ago)
    customer = store.add_customer(
        StoreCustomer(store.next_id(), first, "Buyer", email, None, when, when), notify=False
    )
    variant = max((v for p in store.products.values() for v in p.variants), key=lambda v: v.price)
    line = StoreLineItem(
        store.next_id(), variant.product_id, variant.id, variant.sku, "Big line", units,
        variant.price,
    )  # fmt: skip
    order = StoreOrder(
        store.next_id(), store.next_order_name(), customer.id, email, when, when, when,
        store.currency, [line],
    )  # fmt: skip
    return store.add_order(order, notify=False)


def _store_with_buyers(domain: str) -> Store:
    """A generated store plus a huge recent one-order buyer and a 48-unit one-order buyer."""
    store = generate_store(domain, customers=150, seed=5, as_of=TODAY)
    _buyer(store, "Huge", "huge.buyer@gmail.com", 400, days_ago=3)
    _buyer(store, "Case", "case.buyer@gmail.com", 48, days_ago=20)
    return store


def _members(sessions: sessionmaker[Session], shop_id: int, handle: str) -> dict[int, str]:
    with sessions() as session:
        return dict(
            session.execute(
                select(Membership.customer_id, Membership.reason)
                .join(Segment, Segment.id == Membership.segment_id)
                .where(Segment.shop_id == shop_id, Segment.handle == handle)
            ).all()
        )


def _order_rows(sessions: sessionmaker[Session], shop_id: int, order_id: int) -> Any:
    with sessions() as session:
        order = session.execute(
            select(Order.total, Order.updated_at).where(
                Order.shop_id == shop_id, Order.id == order_id
            )
        ).one()
        lines = session.execute(
            select(LineItem.id, LineItem.quantity)
            .where(LineItem.shop_id == shop_id, LineItem.order_id == order_id)
            .order_by(LineItem.id)
        ).all()
    return tuple(order), [tuple(line) for line in lines]


def _deliver(env: SyncEnv, topic: str, payload: dict[str, Any]) -> tuple[str, str | None]:
    """A stored delivery routed as the webhook worker routes it."""
    event = WebhookEvent(
        shop_domain=env.shop.domain, event_id=f"{topic}-{payload['id']}", topic=topic,
        payload=json.dumps(payload),
    )  # fmt: skip
    return inbox.dispatch(env.ctx, event)


def test_refunds_create_takes_refunded_buyers_out_of_their_segments(
    make_sync_env: Callable[..., SyncEnv], sessions: sessionmaker[Session]
) -> None:
    env = make_sync_env(_store_with_buyers)
    shop_id = env.shop.id
    bulk.initial(env.ctx, shop_id, http=env.http, poll_interval=0.01)
    recompute.recompute_shop_now(env.ctx, shop_id)
    huge_order, case_order = list(env.store.orders.values())[-2:]
    huge, case = huge_order.customer_id, case_order.customer_id
    assert huge in _members(sessions, shop_id, "vip")
    assert huge in _members(sessions, shop_id, "one-time-buyers")
    assert case in _members(sessions, shop_id, "business-buyers")

    # The huge order refunded in full the same day; 18 of the case's 48 units given back.
    full = env.store.refund_order(huge_order.id, None, at=_noon(3), notify=False)
    (line,) = case_order.line_items
    part = env.store.refund_order(case_order.id, {line.id: 18}, notify=False)
    for refund in (full, part):
        assert _deliver(env, "refunds/create", refund_payload(env.store, refund)) == ("done", None)
    assert {(name, kw.get("customer_id")) for name, kw in env.ctx.enqueued} >= {
        ("segments.recompute_customer", huge),
        ("segments.recompute_customer", case),
    }
    assert _order_rows(sessions, shop_id, huge_order.id)[0][0] == 0
    assert _order_rows(sessions, shop_id, case_order.id)[1] == [(line.id, 30)]
    # orders/updated, carrying the refunds, gives the very same rows.
    for order in (huge_order, case_order):
        before = _order_rows(sessions, shop_id, order.id)
        apply_webhook(env.ctx, shop_id, "orders/updated", order_payload(env.store, order))
        assert _order_rows(sessions, shop_id, order.id) == before

    recompute.recompute_shop_now(env.ctx, shop_id)
    assert huge not in _members(sessions, shop_id, "vip")
    one_time = _members(sessions, shop_id, "one-time-buyers")
    assert huge not in one_time and one_time
    for reason in one_time.values():
        parsed = reasons.Reason.parse(reason)
        assert parsed is not None and parsed.params["spend_money"] > 0, reason
    assert case not in _members(sessions, shop_id, "business-buyers")


# --- the orders CSV ---------------------------------------------------------------------------

EXPORT_COLUMNS = [
    "Name", "Email", "Financial Status", "Currency", "Total", "Created at", "Lineitem quantity",
    "Lineitem name", "Lineitem price", "Billing Company", "Billing City", "Billing Zip",
    "Billing Province", "Billing Country", "Cancelled at", "Payment Method", "Refunded Amount",
    "Id",
]  # fmt: skip


def export_store(store: Store, path: Path) -> None:
    """The sandbox store as Shopify's "Export orders" writes it: the total before returns, the
    refunded amount and the financial status on an order's first row, lines as ordered. The
    billing address is the customer's; orders without a customer (which the app cannot
    attribute) carry no email."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(EXPORT_COLUMNS)
        for order in sorted(store.orders.values(), key=lambda o: o.created_at, reverse=True):
            customer = store.customers.get(order.customer_id) if order.customer_id else None
            address = (customer.default_address if customer else None) or StoreAddress()
            head = {
                "Name": order.name,
                "Email": (customer.email if customer else None) or "",
                "Billing Company": (order.billing_address or StoreAddress()).company or "",
                "Billing City": address.city or "",
                "Billing Zip": address.zip or "",
                "Billing Province": address.province_code or "",
                "Billing Country": address.country_code or "",
                "Financial Status": order.financial_status.lower(),
                "Currency": order.currency,
                "Total": f"{order.total_price:.2f}",
                "Created at": f"{order.processed_at:%Y-%m-%d %H:%M:%S} +0000",
                "Cancelled at": f"{order.cancelled_at:%Y-%m-%d %H:%M:%S} +0000"
                if order.cancelled_at
                else "",
                "Payment Method": "bogus" if order.test else "shopify_payments",
                "Refunded Amount": f"{order.refunded_total:.2f}",
                "Id": str(order.id),
            }
            for n, item in enumerate(order.line_items):
                row = head if n == 0 else {"Name": order.name}
                row = {
                    **row,
                    "Lineitem quantity": str(item.quantity),
                    "Lineitem name": item.title,
                    "Lineitem price": f"{item.unit_price:.2f}",
                }
                writer.writerow([row.get(c, "") for c in EXPORT_COLUMNS])


def _by_email(ds: Dataset, leave_out: set[str]) -> dict[str, set[Any]]:
    """Each segment's members by email (as the CSV keys customers: lowercased), and each
    customer's orders and net spend; customers in ``leave_out`` and without email aside."""
    result = evaluate(ds, ShopConfig(), TODAY)
    emails = [(e or "").lower() for e in ds.info["email"]]
    kept = [bool(e) and e not in leave_out for e in emails]
    # Regions tied on customer count are picked in customer order, which differs between
    # the paths (Counter.most_common keeps insertion order): regions are not compared here.
    found: dict[str, set[Any]] = {
        handle: {emails[i] for i in seg.members.tolist() if kept[i]}
        for handle, seg in result.segments.items()
        if not handle.startswith("region-")
    }
    f = result.features
    found["orders and spend"] = {
        (emails[c], n, round(spend, 2))
        for c, (n, spend) in enumerate(zip(f.n_orders.tolist(), f.spend.tolist(), strict=True))
        if n and kept[c]
    }
    return found


def test_the_orders_csv_gives_the_segments_the_sync_gives(
    make_sync_env: Callable[..., SyncEnv], sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    def build(domain: str) -> Store:
        # The CSV knows customers by email only: every customer has one here.
        store = _store_with_buyers(domain)
        for customer in store.customers.values():
            customer.email = customer.email or f"customer{customer.id}@example.com"
        return store

    env = make_sync_env(build)
    huge_order = list(env.store.orders.values())[-2]
    env.store.refund_order(huge_order.id, None, at=_noon(3), notify=False)
    bulk.initial(env.ctx, env.shop.id, http=env.http, poll_interval=0.01)
    # The export says how much money came back, not which units: buyers with a partly
    # refunded order are compared on neither side.
    orders = list(env.store.orders.values())
    partly = {
        (env.store.customers[o.customer_id].email or "").lower()
        for o in orders
        if o.financial_status == "PARTIALLY_REFUNDED" and o.customer_id
    }
    with sessions() as session:
        synced = _by_email(loader.load(session, env.shop.id), partly)
    export = tmp_path / "orders_export.csv"
    export_store(env.store, export)
    from_csv = _by_email(read_orders(export).dataset, partly)
    assert from_csv == synced
    # What was compared includes fully refunded buyers: the huge one has no orders left.
    refunded = [o for o in orders if o.financial_status == "REFUNDED"]
    assert len(refunded) > 1 and len(synced["orders and spend"]) > 100
    huge_email = env.store.customers[huge_order.customer_id].email
    assert huge_email not in partly
    assert not any(row[0] == huge_email for row in synced["orders and spend"])
    assert huge_email not in synced["vip"] | synced["one-time-buyers"]


# --- the rule itself, and the generated demo store ---------------------------------------------


def test_a_fully_refunded_order_is_no_purchase_but_a_free_sample_is() -> None:
    builder = DatasetBuilder()
    buyer = builder.add_customer(1, email="a@example.com")
    kinds = {
        "paid": (25.0, 2),
        "free sample": (0.0, 1),
        "fully refunded": (net_value(80.0, 80.0), 0),
        "money back, units kept": (net_value(30.0, 30.0), 3),
        "refunded above the total": (net_value(10.0, 12.5), 0),
    }
    for number, (total, units) in enumerate(kinds.values(), start=1):
        order = builder.add_order(buyer, number, day=20_000 + number, total=total)
        builder.add_line(order, product_key_for_title("Napkin"), "Napkin", units)
    ds = builder.build()
    assert ds.order_ids.tolist() == [1, 2, 4]
    assert ds.order_total.tolist() == [25.0, 0.0, 0.0]
    assert ds.line_quantity.tolist() == [2, 1, 3]
    assert ds.line_order.tolist() == [0, 1, 2]
    assert net_value(100.0, 30.0, current=90.0) == 70.0  # a money-only refund
    assert net_value(100.0, 0.0, current=60.0) == 60.0  # an edit removed unpaid units


def test_the_demo_stores_refunded_orders_are_left_out(
    make_sync_env: Callable[..., SyncEnv], sessions: sessionmaker[Session]
) -> None:
    labels: dict[int, str] = {}

    def build(domain: str) -> Store:
        store, kinds = generate_labelled(domain, customers=300, seed=11, as_of=TODAY)
        labels.update(kinds)
        return store

    env = make_sync_env(build)
    bulk.initial(env.ctx, env.shop.id, http=env.http, poll_interval=0.01)
    counts = recompute.recompute_shop_now(env.ctx, env.shop.id)
    with sessions() as session:
        ds = loader.load(session, env.shop.id)
    countable = [
        o
        for o in env.store.orders.values()
        if o.customer_id and not o.test and o.cancelled_at is None
    ]
    refunded = {o.id for o in countable if o.financial_status == "REFUNDED"}
    assert refunded and ds.n_orders == len(countable) - len(refunded)
    assert not refunded & set(ds.order_ids.tolist())
    (vip,) = [c for c, kind in labels.items() if kind == "refunded_vip"]
    (case,) = [c for c, kind in labels.items() if kind == "returned_case"]
    assert counts["vip"] and vip not in _members(sessions, env.shop.id, "vip")
    assert counts["business-buyers"]
    assert case not in _members(sessions, env.shop.id, "business-buyers")
