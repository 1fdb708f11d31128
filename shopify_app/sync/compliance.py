"""Shopify's mandatory compliance webhooks: ``customers/data_request``, ``customers/redact``,
``shop/redact``.

A data request stores an export of everything Goldpan holds about the customer, for the
merchant to hand over; a customer redaction deletes the person (leaving a tombstone so nothing
brings them back), scrubs their orders and queues their removal from every Meta audience; a
shop redaction, 48 hours after uninstall, deletes everything about the shop.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, or_, select, update

from shopify_app import jobs
from shopify_app.db import transaction
from shopify_app.db.models import (
    AuditEntry,
    Customer,
    DataRequest,
    LineItem,
    Membership,
    MetaAudience,
    MetaAudienceMember,
    Order,
    ScoreDigest,
    Segment,
    Shop,
    WebhookEvent,
    utcnow,
)
from shopify_app.segments import recompute
from shopify_app.sync.tombstones import record_deletion

if TYPE_CHECKING:
    from shopify_app.sync.inbox import Handler, Outcome

log = logging.getLogger(__name__)


def _customer_id(payload: dict[str, Any]) -> int | None:
    customer = payload.get("customer")
    raw = customer.get("id") if isinstance(customer, dict) else None
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _int_list(values: Any) -> list[int]:
    out = []
    for value in values if isinstance(values, list) else []:
        try:
            out.append(int(value))
        except (TypeError, ValueError):
            continue
    return out


def _row(obj: Any) -> dict[str, Any]:
    data = {}
    for column in obj.__table__.columns:
        value = getattr(obj, column.key)
        data[column.key] = value.isoformat() if isinstance(value, dt.datetime | dt.date) else value
    return data


def build_export(
    session: Any, shop_id: int, customer_id: int | None, order_ids: list[int]
) -> dict[str, Any]:
    """Everything Goldpan holds about one customer of ``shop_id`` (a data request's answer)."""
    customer = session.get(Customer, (shop_id, customer_id)) if customer_id is not None else None
    conditions = []
    if customer_id is not None:
        conditions.append(Order.customer_id == customer_id)
    if order_ids:
        conditions.append(Order.id.in_(order_ids))
    orders = (
        list(session.scalars(select(Order).where(Order.shop_id == shop_id, or_(*conditions))))
        if conditions
        else []
    )
    order_rows = []
    for order in orders:
        row = _row(order)
        row["line_items"] = [
            _row(item)
            for item in session.scalars(
                select(LineItem).where(LineItem.shop_id == shop_id, LineItem.order_id == order.id)
            )
        ]
        order_rows.append(row)
    segments = []
    audiences: list[dict[str, Any]] = []
    if customer_id is not None:
        # Imported here: the segment engine (numpy) is only needed for this rare request.
        from shopify_app.segments.library.reasons import render as render_reason

        for membership, segment in session.execute(
            select(Membership, Segment)
            .join(Segment, Segment.id == Membership.segment_id)
            .where(Membership.shop_id == shop_id, Membership.customer_id == customer_id)
        ):
            segments.append(
                {
                    "segment": segment.handle,
                    "name": segment.name,
                    "tag": segment.tag,
                    "since": membership.since.isoformat(),
                    "reason": render_reason(membership.reason),
                }
            )
        for audience in session.scalars(
            select(MetaAudience)
            .join(MetaAudienceMember, MetaAudienceMember.audience_id == MetaAudience.id)
            .where(MetaAudience.shop_id == shop_id, MetaAudienceMember.customer_id == customer_id)
        ):
            audiences.append({"audience_id": audience.audience_id, "kind": audience.kind})
    return {
        "generated_at": utcnow().isoformat(),
        "customer": _row(customer) if customer is not None else None,
        "orders": order_rows,
        "segments": segments,
        "meta_audiences": audiences,
    }


def handle_data_request(
    ctx: jobs.Context, shop: Shop, payload: dict[str, Any], event: WebhookEvent
) -> Outcome:
    """``customers/data_request``: store an export of what we hold, for the merchant."""
    customer_id = _customer_id(payload)
    order_ids = _int_list(payload.get("orders_requested"))
    request = payload.get("data_request")
    request_id = request.get("id") if isinstance(request, dict) else None
    with transaction(ctx.sessions) as session:
        export = build_export(session, shop.id, customer_id, order_ids)
        session.add(
            DataRequest(
                shop_id=shop.id,
                request_id=str(request_id) if request_id is not None else None,
                customer_id=customer_id,
                export=export,
            )
        )
        session.add(
            AuditEntry.of(
                shop.id,
                "customers/data_request",
                target="app",
                subject=str(customer_id) if customer_id is not None else None,
                count=len(export["orders"]),
                detail={"request_id": request_id, "found": export["customer"] is not None},
            )
        )
    return "done", None


def handle_customer_redact(
    ctx: jobs.Context, shop: Shop, payload: dict[str, Any], event: WebhookEvent
) -> Outcome:
    """``customers/redact``: delete the customer's personal data and memberships, unlink and
    scrub their orders, and queue their removal from every Meta audience."""
    customer_id = _customer_id(payload)
    order_ids = _int_list(payload.get("orders_to_redact"))
    given = payload.get("customer") if isinstance(payload.get("customer"), dict) else {}
    email = given.get("email") if isinstance(given, dict) else None
    phone = given.get("phone") if isinstance(given, dict) else None
    with transaction(ctx.sessions) as session:
        if customer_id is not None:
            stored = session.get(Customer, (shop.id, customer_id))
            if stored is not None:
                email = email or stored.email
                phone = phone or stored.phone
            recompute.forget_customers(session.connection(), shop.id, [customer_id])
            session.execute(
                delete(DataRequest).where(
                    DataRequest.shop_id == shop.id, DataRequest.customer_id == customer_id
                )
            )
            session.execute(
                delete(Customer).where(Customer.shop_id == shop.id, Customer.id == customer_id)
            )
            # A late customers/update or an older export must not bring the person back.
            record_deletion(session.connection(), shop.id, "customers", customer_id)
        conditions = []
        if customer_id is not None:
            conditions.append(Order.customer_id == customer_id)
        if order_ids:
            conditions.append(Order.id.in_(order_ids))
        scrubbed = 0
        if conditions:
            result = session.execute(
                update(Order)
                .where(Order.shop_id == shop.id, or_(*conditions))
                .values(customer_id=None, email=None, billing_company=None)
                .execution_options(synchronize_session=False)
            )
            scrubbed = int(getattr(result, "rowcount", 0) or 0)
        session.add(
            AuditEntry.of(
                shop.id,
                "customers/redact",
                target="app",
                subject=str(customer_id) if customer_id is not None else None,
                count=scrubbed,
            )
        )
    ctx.enqueue(
        "meta.forget_customer",
        shop_id=shop.id,
        customer_id=customer_id,
        email=email,
        phone=phone,
    )
    return "done", None


def handle_shop_redact(
    ctx: jobs.Context, shop: Shop, payload: dict[str, Any], event: WebhookEvent
) -> Outcome:
    """``shop/redact`` (48 h after uninstall): delete everything about the shop.

    A shop that has installed the app again since is left alone: the redaction was meant for
    the old installation, and the merchant is using the app now.
    """
    if shop.is_installed:
        return "skipped", "the shop has the app installed again"
    with transaction(ctx.sessions) as session:
        # Every table keyed by shop cascades from shops (ON DELETE CASCADE), except memberships
        # and score digests (no foreign keys: they would slow every full recompute's write).
        session.execute(delete(Membership).where(Membership.shop_id == shop.id))
        session.execute(delete(ScoreDigest).where(ScoreDigest.shop_id == shop.id))
        session.execute(delete(Shop).where(Shop.id == shop.id))
        session.execute(
            delete(WebhookEvent).where(
                WebhookEvent.shop_domain == shop.domain, WebhookEvent.id != event.id
            )
        )
    log.info("shop redacted", extra={"shop": shop.domain})
    return "done", None


HANDLERS: dict[str, Handler] = {
    "customers/data_request": handle_data_request,
    "customers/redact": handle_customer_redact,
    "shop/redact": handle_shop_redact,
}

TOPICS = frozenset(HANDLERS)
"""The compliance topics, delivered to ``/webhooks/compliance``."""
