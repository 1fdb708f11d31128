"""One customer's drill-down: their orders, every segment they are in and why, and the engine's
predictions for them.

Only the requesting shop's customer: another shop's id, or a customer redacted on Shopify's
request (the row is deleted, :mod:`shopify_app.sync.compliance`), answers 404.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shopify_app.actions.scores import score_values
from shopify_app.db.models import Customer, LineItem, Membership, Order, Segment, Shop
from shopify_app.errors import NotFound
from shopify_app.segments import library, loader
from shopify_app.segments.recompute import cached_stats, shop_config
from shopify_app.server.api.request import (
    db_session,
    get_shop,
    iso,
    path_id,
    request_shop_id,
    today,
)

ORDERS_SHOWN = 100
"""The most recent orders listed (the customer's ``orders`` says how many there are)."""


def _orders(session: Session, shop_id: int, customer_id: int) -> list[dict[str, Any]]:
    orders = session.scalars(
        select(Order)
        .where(Order.shop_id == shop_id, Order.customer_id == customer_id)
        .order_by(Order.processed_at.desc(), Order.id.desc())
        .limit(ORDERS_SHOWN)
    ).all()
    items: dict[int, list[dict[str, Any]]] = {o.id: [] for o in orders}
    if items:
        for li in session.scalars(
            select(LineItem)
            .where(LineItem.shop_id == shop_id, LineItem.order_id.in_(items))
            .order_by(LineItem.order_id, LineItem.id)
        ):
            items[li.order_id].append(
                {"title": li.title, "quantity": li.quantity, "amount": float(li.amount or 0)}
            )
    return [
        {
            "id": o.id,
            "name": o.name,
            "processed_at": iso(o.processed_at),
            "amount": float(o.total or 0),
            "refunded": None if o.refunded is None else float(o.refunded),
            "currency": o.currency,
            "cancelled": o.cancelled_at is not None,
            "test": o.test,
            "items": items[o.id],
        }
        for o in orders
    ]


def _segments(session: Session, shop_id: int, customer_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Segment, Membership.reason, Membership.since)
        .join(Membership, Membership.segment_id == Segment.id)
        .where(
            Membership.shop_id == shop_id,
            Membership.customer_id == customer_id,
            Segment.shop_id == shop_id,
        )
        .order_by(Segment.kind, Segment.name)
    ).all()
    return [
        {
            "id": seg.id,
            "handle": seg.handle,
            "name": seg.name,
            "kind": seg.kind,
            "reason": reason,
            "since": iso(since),
        }
        for seg, reason, since in rows
    ]


def _number(text: str) -> float | None:
    return float(text) if text else None


def _predictions(session: Session, shop: Shop, customer_id: int) -> dict[str, Any] | None:
    """The same rounded scores Goldpan writes to the customer's metafields, so the page and
    the Shopify admin show one number; None before the first full recompute (no yardsticks)
    or for a customer without orders."""
    stats = cached_stats(shop)
    if stats is None:
        return None
    ds = loader.load(session, shop.id, [customer_id])
    ev = library.evaluate(ds, shop_config(shop), today(), stats=stats)
    for found, values in score_values(ev):
        if found == customer_id:
            return {
                "p_alive": _number(values["p_alive"]),
                "expected_orders_90d": _number(values["expected_orders_90d"]),
                "predicted_value_12m": _number(values["predicted_value_12m"]),
                "next_order_date": values["next_order_date"],
                "rfm_score": values["rfm_score"],
                "rfm_group": values["rfm_group"] or None,
            }
    return None


def customer_detail(request: Request) -> Response:
    """One customer: contact, orders (newest first), segments with reasons, predictions."""
    shop_id = request_shop_id(request)
    customer_id = path_id(request, "customer_id", "customer", maximum=2**63)
    with db_session(request) as session:
        shop = get_shop(session, shop_id)
        cust = session.scalar(
            select(Customer).where(Customer.shop_id == shop_id, Customer.id == customer_id)
        )
        if cust is None:
            raise NotFound("customer not found")
        orders = _orders(session, shop_id, customer_id)
        return JSONResponse(
            {
                "customer": {
                    "id": cust.id,
                    "first_name": cust.first_name,
                    "last_name": cust.last_name,
                    "email": cust.email,
                    "company": cust.company,
                    "country": cust.country_code,
                    "province": cust.province_code,
                    "city": cust.city,
                    "orders": cust.number_of_orders,
                    "spent": float(cust.amount_spent or 0),
                    "since": iso(cust.created_at),
                },
                "shop": {"domain": shop.domain, "currency": shop.currency},
                "orders": orders,
                "orders_shown": len(orders),
                "segments": _segments(session, shop_id, customer_id),
                "predictions": _predictions(session, shop, customer_id),
            }
        )
