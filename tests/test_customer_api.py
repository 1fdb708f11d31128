"""``GET /api/customers/{id}``: one customer's orders, segments with reasons and predictions, over
real HTTP after a real full recompute; another shop's customer and a redacted one are 404."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from goldpan_sandbox.delivery import refund_payload
from shopify_app.actions.scores import score_values
from shopify_app.db.models import Customer, LineItem, Membership, Order, Segment, Shop, WebhookEvent
from shopify_app.jobs import Context
from shopify_app.segments import library, loader, recompute
from shopify_app.sync import bulk, inbox
from shopify_app.sync.compliance import handle_customer_redact
from tests.fixtures_api import ApiClient, serving
from tests.fixtures_sync import SyncEnv
from tests.test_predictions_page import TODAY, seed
from tests.test_refunds import _store_with_buyers


def _repeat_customer(sessions: sessionmaker[Session], shop_id: int) -> int:
    """A customer with several orders (the seed's), each given two line items."""
    with sessions.begin() as s:
        counts: dict[int, int] = {}
        for customer_id in s.scalars(select(Order.customer_id).where(Order.shop_id == shop_id)):
            counts[customer_id] = counts.get(customer_id, 0) + 1
        cid = max(counts, key=lambda c: (counts[c], -c))
        s.execute(
            Customer.__table__.update()
            .where(Customer.shop_id == shop_id, Customer.id == cid)
            .values(first_name="Eleni", last_name="Pappas", country_code="GR")
        )
        orders = s.scalars(select(Order).where(Order.shop_id == shop_id, Order.customer_id == cid))
        for n, order in enumerate(orders):
            s.add(
                LineItem(
                    shop_id=shop_id,
                    id=900_000 + 2 * n,
                    order_id=order.id,
                    title="Linen Napkins",
                    quantity=4,
                    amount=order.total - 5,
                )
            )
            s.add(
                LineItem(
                    shop_id=shop_id,
                    id=900_001 + 2 * n,
                    order_id=order.id,
                    title="Gift wrap",
                    quantity=1,
                    amount=5,
                )
            )
    return cid


def test_a_customer_shows_orders_segments_with_reasons_and_predictions(
    ctx: Context, make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    shop = make_shop(currency="EUR")
    seed(sessions, shop.id, 300)
    cid = _repeat_customer(sessions, shop.id)
    recompute.recompute_shop_now(ctx, shop.id)
    with serving(ctx) as server:
        r = ApiClient(server, shop.domain).get(f"/customers/{cid}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["customer"]["first_name"] == "Eleni" and body["customer"]["country"] == "GR"
    assert body["shop"]["currency"] == "EUR"

    with sessions() as s:
        orders = s.scalars(
            select(Order)
            .where(Order.shop_id == shop.id, Order.customer_id == cid)
            .order_by(Order.processed_at.desc())
        ).all()
        memberships = s.execute(
            select(Segment.handle, Membership.reason)
            .join(Membership, Membership.segment_id == Segment.id)
            .where(Membership.shop_id == shop.id, Membership.customer_id == cid)
        ).all()
        stored = s.get(Shop, shop.id)
        assert stored is not None
        ev = library.evaluate(
            loader.load(s, shop.id),
            recompute.shop_config(stored),
            TODAY.date(),
            stats=recompute.cached_stats(stored),
        )
    assert len(orders) >= 2
    assert [o["id"] for o in body["orders"]] == [o.id for o in orders]
    assert [o["amount"] for o in body["orders"]] == [float(o.total) for o in orders]
    for shown, order in zip(body["orders"], orders, strict=True):
        assert shown["items"] == [
            {"title": "Linen Napkins", "quantity": 4, "amount": float(order.total) - 5},
            {"title": "Gift wrap", "quantity": 1, "amount": 5.0},
        ]
    assert memberships, "the repeat customer is in no segment"
    assert sorted((s["handle"], s["reason"]) for s in body["segments"]) == sorted(memberships)
    assert all(s["reason"] for s in body["segments"])

    # The same numbers the engine writes to the customer's metafields, from a whole-shop run.
    expected = dict(score_values(ev))[cid]
    said = body["predictions"]
    assert said["p_alive"] == float(expected["p_alive"])
    assert said["expected_orders_90d"] == float(expected["expected_orders_90d"])
    assert said["predicted_value_12m"] == float(expected["predicted_value_12m"])
    assert said["next_order_date"] == expected["next_order_date"]
    assert said["rfm_score"] == expected["rfm_score"] and len(said["rfm_score"]) == 3
    assert said["rfm_group"] == (expected["rfm_group"] or None)


def test_another_shops_customer_is_not_found(
    ctx: Context, make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    mine, theirs = make_shop(), make_shop()
    with sessions.begin() as s:
        s.add(Customer(shop_id=theirs.id, id=7_000_000_000_123, first_name="Theirs"))
        s.add(Customer(shop_id=mine.id, id=7_000_000_000_124, first_name="Mine"))
    with serving(ctx) as server:
        client = ApiClient(server, mine.domain)
        assert client.get("/customers/7000000000124").status_code == 200
        other = client.get("/customers/7000000000123")
        missing = client.get("/customers/7000000000999")
        assert ApiClient(server, theirs.domain).get("/customers/7000000000123").ok
        bad = client.get("/customers/abc")
    assert other.status_code == 404 and other.json() == missing.json()
    assert bad.status_code == 400


def test_a_redacted_customer_is_not_found(
    ctx: Context, make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    shop = make_shop()
    now = dt.datetime.now(dt.UTC)
    with sessions.begin() as s:
        s.add(Customer(shop_id=shop.id, id=42, first_name="Gone", email="gone@example.com"))
        s.add(Order(shop_id=shop.id, id=43, customer_id=42, created_at=now, processed_at=now))
        event = WebhookEvent(shop_domain=shop.domain, event_id="e-1", topic="customers/redact")
        s.add(event)
    with serving(ctx) as server:
        client = ApiClient(server, shop.domain)
        assert client.get("/customers/42").status_code == 200
        with sessions() as s:
            stored, row = s.get(Shop, shop.id), s.get(WebhookEvent, event.id)
            assert stored is not None and row is not None
            handle_customer_redact(ctx, stored, {"customer": {"id": 42}}, row)
        assert client.get("/customers/42").status_code == 404


def test_each_order_shows_what_its_refunds_gave_back(
    make_sync_env: Callable[..., SyncEnv], sessions: sessionmaker[Session]
) -> None:
    env = make_sync_env(_store_with_buyers)
    shop_id = env.shop.id
    bulk.initial(env.ctx, shop_id, http=env.http, poll_interval=0.01)
    case_order = list(env.store.orders.values())[-1]
    (line,) = case_order.line_items
    refund = env.store.refund_order(case_order.id, {line.id: 18}, notify=False)
    event = WebhookEvent(
        shop_domain=env.shop.domain,
        event_id=f"refund-{refund.id}",
        topic="refunds/create",
        payload=json.dumps(refund_payload(env.store, refund)),
    )
    assert inbox.dispatch(env.ctx, event) == ("done", None)
    with serving(env.ctx) as server:
        body = ApiClient(server, env.shop.domain).get(f"/customers/{case_order.customer_id}").json()
        untouched = next(
            o for o in env.store.orders.values() if o.customer_id and not o.refunds and o.line_items
        )
        other = ApiClient(server, env.shop.domain).get(f"/customers/{untouched.customer_id}")
    (shown,) = body["orders"]
    given_back = float(case_order.refunded_total)
    assert given_back > 0 and shown["refunded"] == given_back
    assert shown["amount"] == float(case_order.total_price) - given_back
    # Synced in bulk with no refunds: none, not unknown.
    assert {o["refunded"] for o in other.json()["orders"] if o["id"] == untouched.id} == {0.0}
