"""Shopify's mandatory compliance webhooks: ``customers/data_request``, ``customers/redact``,
``shop/redact``.

A data request stores an export of everything Goldpan holds about the customer, for the
merchant to hand over; a customer redaction deletes the person (leaving a tombstone so nothing
brings them back), scrubs their orders and every other row that names them (deliveries still in
the inbox, audit entries, exports) and queues their removal from every Meta audience; a shop
redaction, 48 hours after uninstall, deletes everything about the shop.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Text, cast, delete, func, or_, select, update
from sqlalchemy.orm import Session

from shopify_app import jobs
from shopify_app.db import transaction
from shopify_app.db.models import (
    AuditEntry,
    Customer,
    DataRequest,
    InboxDrain,
    LineItem,
    Membership,
    MetaAudience,
    MetaAudienceMember,
    Order,
    ScoreDigest,
    Segment,
    Shop,
    WebhookEvent,
)
from shopify_app.db.types import utcnow
from shopify_app.segments import recompute
from shopify_app.states import AuditTarget, WebhookStatus
from shopify_app.sync.tombstones import deleted_among, record_deletion

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


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _int_list(values: Any) -> list[int]:
    numbers = (_as_int(v) for v in (values if isinstance(values, list) else []))
    return [n for n in numbers if n is not None]


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
                target=AuditTarget.APP,
                subject=str(customer_id) if customer_id is not None else None,
                count=len(export["orders"]),
                detail={"request_id": request_id, "found": export["customer"] is not None},
            )
        )
    return WebhookStatus.DONE, None


@dataclass(frozen=True)
class Subject:
    """The person a ``customers/redact`` is about: what identifies them in stored rows."""

    customer_id: int | None
    order_ids: frozenset[int]
    email: str | None
    phone: str | None

    @property
    def pattern(self) -> re.Pattern[str] | None:
        """The customer id (as a whole number), email and phone as they appear in text."""
        parts = [re.escape(v) for v in (self.email, self.phone) if v]
        if self.customer_id is not None:
            parts.append(rf"(?<!\d){self.customer_id}(?!\d)")
        return re.compile("|".join(parts), re.IGNORECASE) if parts else None

    def is_id(self, value: Any) -> bool:
        """Whether ``value`` is the customer's id (number, numeric text or GID)."""
        if self.customer_id is None or isinstance(value, bool):
            return False
        if isinstance(value, int):
            return value == self.customer_id
        return isinstance(value, str) and value.strip() in (
            str(self.customer_id),
            f"gid://shopify/Customer/{self.customer_id}",
        )

    def is_contact(self, value: Any) -> bool:
        """Whether ``value`` is the customer's email or phone (phones compared by digits)."""
        if not isinstance(value, str) or not value.strip():
            return False
        if self.email and value.strip().casefold() == self.email.strip().casefold():
            return True
        digits = re.sub(r"\D", "", value)
        return len(digits) >= 7 and digits == re.sub(r"\D", "", self.phone or "")

    def in_payload(self, topic: str, payload: Any) -> bool:
        """Whether a webhook payload of ``topic`` is about the person."""
        if not isinstance(payload, dict):
            return False
        customer = payload.get("customer")
        if isinstance(customer, dict) and self.is_id(customer.get("id")):
            return True
        if topic.startswith("customers/") and self.is_id(payload.get("id")):
            return True
        if topic.startswith("orders/") and _as_int(payload.get("id")) in self.order_ids:
            return True
        return any(self.is_contact(text) for text in _strings(payload))

    def in_export(self, export: Any) -> bool:
        """Whether a data-request export holds the person or one of their orders."""
        if not isinstance(export, dict):
            return False
        customer = export.get("customer")
        if isinstance(customer, dict) and self.is_id(customer.get("id")):
            return True
        for order in export.get("orders") or []:
            if isinstance(order, dict) and (
                self.is_id(order.get("customer_id")) or _as_int(order.get("id")) in self.order_ids
            ):
                return True
        return any(self.is_contact(text) for text in _strings(export))

    def redact(self, value: Any) -> Any:
        """``value`` (JSON) without the person: entries keyed by or holding their id, rows that
        start with it (``[customer id, …]``), their id, email and phone in text."""
        if isinstance(value, dict):
            return {
                k: self.redact(v)
                for k, v in value.items()
                if not (self.is_id(k) or self.is_id(v) or self.is_contact(k))
            }
        if isinstance(value, list):
            return [
                self.redact(v)
                for v in value
                if not (self.is_id(v) or (isinstance(v, list) and v and self.is_id(v[0])))
            ]
        if isinstance(value, str):
            pattern = self.pattern
            return pattern.sub("[redacted]", value) if pattern is not None else value
        return value


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value (keys and values)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def handle_customer_redact(
    ctx: jobs.Context, shop: Shop, payload: dict[str, Any], event: WebhookEvent
) -> Outcome:
    """``customers/redact``: delete the customer's personal data and memberships, unlink and
    scrub their orders, and scrub every other stored row that names them: deliveries not yet
    handled, audit entries, data-request exports. Their removal from every Meta audience is
    queued (the uploaded, hashed rows are deleted once Meta confirms).

    What stays is the tombstone (the bare id, so nothing brings the person back) and the
    anonymous orders (totals and line items, which the shop's metrics count).
    """
    customer_id = _customer_id(payload)
    order_ids = set(_int_list(payload.get("orders_to_redact")))
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
                delete(Customer).where(Customer.shop_id == shop.id, Customer.id == customer_id)
            )
            # A late customers/update or an older export must not bring the person back.
            record_deletion(session.connection(), shop.id, "customers", customer_id)
        conditions = []
        if customer_id is not None:
            conditions.append(Order.customer_id == customer_id)
        if email:
            conditions.append(func.lower(Order.email) == email.strip().lower())
        if order_ids:
            conditions.append(Order.id.in_(order_ids))
        if conditions:
            order_ids |= set(
                session.scalars(select(Order.id).where(Order.shop_id == shop.id, or_(*conditions)))
            )
        subject = Subject(customer_id, frozenset(order_ids), email, phone)
        scrubbed = 0
        if order_ids:
            result = session.execute(
                update(Order)
                .where(Order.shop_id == shop.id, Order.id.in_(order_ids))
                .values(customer_id=None, email=None, billing_company=None)
                .execution_options(synchronize_session=False)
            )
            scrubbed = int(getattr(result, "rowcount", 0) or 0)
        _scrub_exports(session, shop.id, subject)
        _scrub_audit(session, shop.id, subject)
        _scrub_deliveries(session, shop.domain, subject, event.id)
        session.add(
            AuditEntry.of(shop.id, "customers/redact", target=AuditTarget.APP, count=scrubbed)
        )
    ctx.enqueue(
        "meta.forget_customer",
        shop_id=shop.id,
        customer_id=customer_id,
        email=email,
        phone=phone,
    )
    return WebhookStatus.DONE, None


def _scrub_exports(session: Session, shop_id: int, subject: Subject) -> None:
    """Delete the data-request exports that hold the person (theirs, or one of their orders)."""
    doomed = [
        request.id
        for request in session.scalars(select(DataRequest).where(DataRequest.shop_id == shop_id))
        if subject.is_id(request.customer_id) or subject.in_export(request.export)
    ]
    if doomed:
        session.execute(delete(DataRequest).where(DataRequest.id.in_(doomed)))


def _scrub_audit(session: Session, shop_id: int, subject: Subject) -> None:
    """Take the person out of the shop's audit entries (subject, detail, error text)."""
    needles = [str(v) for v in (subject.customer_id, subject.email, subject.phone) if v]
    if not needles:
        return
    text = cast(AuditEntry.detail, Text)
    candidates = session.scalars(
        select(AuditEntry).where(
            AuditEntry.shop_id == shop_id,
            or_(
                *(
                    column.contains(needle, autoescape=True)
                    for needle in needles
                    for column in (AuditEntry.subject, AuditEntry.error, text)
                )
            ),
        )
    )
    for entry in candidates:
        if entry.subject is not None and subject.is_id(entry.subject):
            entry.subject = None
        elif entry.subject is not None:
            entry.subject = subject.redact(entry.subject)
        entry.detail = subject.redact(entry.detail or {})
        entry.error = subject.redact(entry.error) if entry.error else entry.error


def _scrub_deliveries(session: Session, domain: str, subject: Subject, current: int) -> None:
    """Drop the payload of every delivery about the person not yet handled; those still to be
    handled are skipped (a handled delivery keeps no payload already)."""
    rows = session.execute(
        select(
            WebhookEvent.id, WebhookEvent.topic, WebhookEvent.payload, WebhookEvent.status
        ).where(
            WebhookEvent.shop_domain == domain,
            WebhookEvent.payload.is_not(None),
            WebhookEvent.id != current,
        )
    ).all()
    for row in rows:
        try:
            payload = json.loads(row.payload or "null")
        except ValueError:
            payload = None
        if not subject.in_payload(row.topic, payload):
            continue
        values: dict[str, Any] = {"payload": None, "error": "customer redacted"}
        if row.status in ("queued", "failed"):
            values["status"] = "skipped"
        session.execute(update(WebhookEvent).where(WebhookEvent.id == row.id).values(**values))


ORDER_PERSONAL_FIELDS = frozenset(
    {
        "customer",
        "email",
        "contact_email",
        "phone",
        "billing_address",
        "shipping_address",
        "note",
        "browser_ip",
        "client_details",
    }
)
"""What an ``orders/*`` payload says about the buyer rather than the order."""


def without_forgotten_buyer(
    conn: Connection, shop_id: int, payload: dict[str, Any]
) -> dict[str, Any]:
    """An ``orders/*`` payload without its buyer when Goldpan forgot them (redacted or deleted).

    Deliveries arrive late and in any order: an ``orders/updated`` sent before the redaction
    would otherwise link the order to the person again and store their email.
    """
    return without_forgotten_buyers(conn, shop_id, [payload])[0]


def without_forgotten_buyers(
    conn: Connection, shop_id: int, payloads: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """:func:`without_forgotten_buyer` for several payloads, with one read."""
    buyers = [_buyer(p) for p in payloads]
    forgotten = deleted_among(conn, shop_id, "customers", (b for b in buyers if b is not None))
    return [
        {k: v for k, v in p.items() if k not in ORDER_PERSONAL_FIELDS} if b in forgotten else p
        for p, b in zip(payloads, buyers, strict=True)
    ]


def _buyer(payload: dict[str, Any]) -> int | None:
    customer = payload.get("customer")
    return _as_int(customer.get("id")) if isinstance(customer, dict) else None


def handle_shop_redact(
    ctx: jobs.Context, shop: Shop, payload: dict[str, Any], event: WebhookEvent
) -> Outcome:
    """``shop/redact`` (48 h after uninstall): delete everything about the shop.

    Only a shop whose uninstall Goldpan recorded (a verified ``app/uninstalled``) is deleted. A
    shop that has installed the app again since is left alone: the redaction was meant for the
    old installation, and the merchant is using the app now.
    """
    if shop.is_installed:
        return WebhookStatus.SKIPPED, "the shop has the app installed again"
    if shop.uninstalled_at is None:
        return WebhookStatus.SKIPPED, "the shop never uninstalled the app"
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
        session.execute(delete(InboxDrain).where(InboxDrain.shop_domain == shop.domain))
    log.info("shop redacted", extra={"shop": shop.domain})
    return WebhookStatus.DONE, None


HANDLERS: dict[str, Handler] = {
    "customers/data_request": handle_data_request,
    "customers/redact": handle_customer_redact,
    "shop/redact": handle_shop_redact,
}

TOPICS = frozenset(HANDLERS)
"""The compliance topics, delivered to ``/webhooks/compliance``."""
