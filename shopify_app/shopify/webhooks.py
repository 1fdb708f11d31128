"""Webhook intake: verify, deduplicate, store, enqueue, answer fast; then handle by topic.

The intake (``/webhooks``, ``/webhooks/compliance``, as declared in ``shopify.app.toml``) reads the
raw body, checks ``X-Shopify-Hmac-Sha256`` in constant time *before* parsing anything (missing or
forged → 401), and inserts a :class:`~shopify_app.db.models.WebhookEvent`. The unique constraint on
``(shop_domain, event_id)`` makes a redelivery a no-op. The row id is queued as
``webhooks.process`` and Shopify gets its 200 at once; the row is the durable inbox, so rows
still ``queued`` are queued again on start-up (:func:`requeue_pending`).

A delivery for a shop Goldpan does not know gets 200 and changes nothing.

:func:`process` dispatches on the topic (:data:`HANDLERS`): the app lifecycle and the three
compliance topics are handled here; store data goes to ``shopify_app.sync`` and bulk mutation
results to ``shopify_app.tagging``. A delivery nothing applies to is marked ``skipped`` with
the reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shopify_app import jobs, logs, sync, tagging
from shopify_app.db import transaction, write_engine
from shopify_app.db.models import (
    AuditEntry,
    Customer,
    DataRequest,
    LineItem,
    Membership,
    MetaAudience,
    MetaAudienceMember,
    Order,
    Segment,
    Shop,
    WebhookEvent,
    utcnow,
)
from shopify_app.errors import stored_error
from shopify_app.segments import recompute
from shopify_app.shopify import auth

log = logging.getLogger(__name__)

COMPLIANCE_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact"})

STALE_PROCESSING = dt.timedelta(minutes=10)
"""A row left ``processing`` this long belongs to a worker that died; it is queued again."""


# --- intake -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One verified delivery, as read from its headers and body."""

    shop_domain: str
    topic: str
    event_id: str
    webhook_id: str | None
    api_version: str | None
    triggered_at: dt.datetime | None
    body: str


async def receive(request: Request) -> Response:
    """The endpoint: HMAC first, then store + enqueue in the threadpool, then 200."""
    ctx: jobs.Context = request.app.state.ctx
    body = await request.body()
    if not auth.verify_webhook_hmac(
        ctx.settings.api_secret, body, request.headers.get("x-shopify-hmac-sha256")
    ):
        return JSONResponse({"error": "invalid hmac"}, status_code=401)
    headers = request.headers
    shop = auth.sanitize_shop(headers.get("x-shopify-shop-domain"))
    topic = (headers.get("x-shopify-topic") or "").strip().lower()
    if shop is None or not topic:
        return JSONResponse({"error": "missing shop or topic header"}, status_code=400)
    try:
        json.loads(body or b"null")
    except ValueError:
        return JSONResponse({"error": "body is not JSON"}, status_code=400)
    event_id = (
        headers.get("x-shopify-event-id")
        or headers.get("x-shopify-webhook-id")
        or "sha256:" + hashlib.sha256(body).hexdigest()
    )
    delivery = Delivery(
        shop_domain=shop,
        topic=topic,
        event_id=event_id.strip()[:255],
        webhook_id=headers.get("x-shopify-webhook-id"),
        api_version=headers.get("x-shopify-api-version"),
        triggered_at=_parse_time(headers.get("x-shopify-triggered-at")),
        body=body.decode("utf-8", errors="replace"),
    )
    outcome = await run_in_threadpool(accept, ctx, delivery)
    return JSONResponse({"status": outcome})


def accept(ctx: jobs.Context, delivery: Delivery) -> str:
    """Store and enqueue ``delivery``; returns ``queued``, ``duplicate`` or ``ignored``."""
    try:
        # Core statements on a connection, not an ORM session: this runs for every delivery,
        # and the unit of work would cost more than the insert itself.
        with write_engine(ctx.engine).begin() as conn:
            known = conn.scalar(select(Shop.id).where(Shop.domain == delivery.shop_domain))
            if known is None:
                log.info(
                    "webhook for an unknown shop ignored",
                    extra={"shop": delivery.shop_domain, "topic": delivery.topic},
                )
                return "ignored"
            event_pk = conn.scalar(
                insert(WebhookEvent)
                .values(
                    shop_domain=delivery.shop_domain,
                    event_id=delivery.event_id,
                    webhook_id=delivery.webhook_id,
                    topic=delivery.topic,
                    api_version=delivery.api_version,
                    triggered_at=delivery.triggered_at,
                    payload=delivery.body,
                    status="queued",
                )
                .returning(WebhookEvent.id)
            )
    except IntegrityError:
        log.info(
            "duplicate webhook delivery",
            extra={"shop": delivery.shop_domain, "topic": delivery.topic},
        )
        return "duplicate"
    try:
        ctx.enqueue("webhooks.process", event_id=event_pk)
    except Exception:
        # Inline processing (no queue) failed, or the queue is down: the row stays in the inbox
        # and is retried; Shopify must still get its 200.
        log.exception("webhook %s could not be processed now", event_pk)
    return "queued"


def _parse_time(raw: str | None) -> dt.datetime | None:
    if not raw:
        return None
    # Shopify sends nanoseconds; Python parses at most microseconds.
    cleaned = re.sub(r"(\.\d{6})\d+", r"\1", raw.strip()).replace("Z", "+00:00")
    try:
        parsed = dt.datetime.fromisoformat(cleaned)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def requeue_pending(ctx: jobs.Context) -> int:
    """Queue again every event still ``queued`` (or stuck ``processing``); returns how many."""
    stale = utcnow() - STALE_PROCESSING
    with ctx.sessions() as session:
        ids = list(
            session.scalars(
                select(WebhookEvent.id)
                .where(
                    or_(
                        WebhookEvent.status == "queued",
                        (WebhookEvent.status == "processing") & (WebhookEvent.received_at < stale),
                    )
                )
                .order_by(WebhookEvent.id)
            )
        )
    for event_pk in ids:
        ctx.enqueue("webhooks.process", event_id=event_pk)
    if ids:
        log.info("re-queued %d webhook events", len(ids))
    return len(ids)


@jobs.periodic("webhooks.requeue_stale", minute="*/5")
def requeue_stale(ctx: jobs.Context) -> int:
    """Every five minutes: queue again what a dead worker left behind (see
    :func:`requeue_pending`), so recovery does not wait for the next process start."""
    return requeue_pending(ctx)


routes = [
    Route("/webhooks", receive, methods=["POST"]),
    Route("/webhooks/compliance", receive, methods=["POST"]),
]
"""Mounted at the root by :func:`shopify_app.server.app.build_routes`."""


# --- processing -------------------------------------------------------------------------------


Outcome = tuple[str, str | None]
"""(status, reason): ``done`` or ``skipped`` with why."""

Handler = Callable[[jobs.Context, Shop, dict[str, Any], WebhookEvent], Outcome]


TAKE_ALONG = 20
"""At most this many other queued deliveries of the same shop a worker handles together with
the one it was given (see :func:`process`)."""

TAKE_ALONG_TOPICS = (
    "orders/create",
    "orders/updated",
    "orders/cancelled",
    "orders/edited",
    "customers/create",
    "customers/update",
)
"""Store-data topics, the bulk of the traffic: handled together, their follow-ups coalesce."""


@jobs.task("webhooks.process", retries=3, retry_delay=30)
def process(ctx: jobs.Context, event_id: int) -> str:
    """Handle one stored webhook event (idempotent: a finished event is not handled twice).

    Store-data deliveries of the same shop still queued are taken along (up to
    :data:`TAKE_ALONG`; their own queued tasks then find them done): under load a shop's
    deliveries are handled in groups, and their follow-ups coalesce (each customer recomputed
    once, one tag request for the group's customers) — the work per delivery falls as the rate
    rises. A taken-along delivery that fails is queued again on its own.
    """
    events = _claim(ctx, event_id)
    if isinstance(events, str):
        return events
    # The customers' recompute, tag write and Meta update run right here once the events are
    # stored as done, not as three more queued tasks each (jobs.FollowUps): that is what keeps
    # webhook → tags written within seconds at 50 deliveries a second.
    follow_ups = jobs.FollowUps(ctx)
    own_status = "failed"
    own_error: Exception | None = None
    shops: dict[str, Shop | None] = {}
    finished: dict[tuple[str, str | None], list[int]] = {}
    for event in events:
        with logs.bind(shop=event.shop_domain, job=f"webhook:{event.id}"):
            try:
                status, reason = dispatch(follow_ups, event, shops)
            except Exception as exc:
                _finish(ctx, [event.id], "failed", stored_error(exc))
                log.exception("webhook %s (%s) failed", event.id, event.topic)
                if event.id == event_id:
                    own_error = exc  # raised below, once the others are handled: huey retries it
                else:
                    ctx.enqueue("webhooks.process", event_id=event.id)
                continue
            finished.setdefault((status, reason), []).append(event.id)
            log.info("webhook %s %s", event.topic, status, extra={"reason": reason})
            if event.id == event_id:
                own_status = status
    # The group's outcomes in one transaction: each delivery's own changes are committed by
    # now, and one left ``processing`` by a crash here is handled again (idempotently).
    for (status, reason), ids in finished.items():
        _finish(ctx, ids, status, reason)
    with logs.bind(shop=events[0].shop_domain, job=f"webhook:{event_id}"):
        follow_ups.run()
    if own_error is not None:
        raise own_error
    return own_status


def _claim(ctx: jobs.Context, event_id: int) -> list[WebhookEvent] | str:
    """Mark ``event_id`` (and queued store-data deliveries of its shop) ``processing``.

    Returns the claimed events, ``event_id``'s first, as detached copies for the handlers to
    read; or the event's status when someone else has it (``gone`` when it does not exist).
    """
    table = WebhookEvent.__table__
    with ctx.engine.connect() as conn:
        # Most events taken along by another worker are done by the time their own task runs:
        # a read says so without taking SQLite's write lock.
        seen = conn.execute(
            select(WebhookEvent.status, WebhookEvent.received_at).where(WebhookEvent.id == event_id)
        ).first()
    if seen is None:
        return "gone"
    status = seen.status
    if status in ("done", "skipped"):
        return str(status)
    if status == "processing" and not _stale(seen.received_at):
        # Taken along by a worker handling its group right now: nothing to claim.
        return "processing"
    with write_engine(ctx.engine).begin() as conn:
        claimed = conn.execute(
            update(WebhookEvent)
            .where(
                WebhookEvent.id == event_id,
                or_(
                    WebhookEvent.status.in_(("queued", "failed")),
                    # A worker that died mid-way left it here; see requeue_pending.
                    (WebhookEvent.status == "processing")
                    & (WebhookEvent.received_at < utcnow() - STALE_PROCESSING),
                ),
            )
            .values(status="processing", attempts=WebhookEvent.attempts + 1)
            .returning(*table.columns)
        ).first()
        if claimed is None:
            status = conn.scalar(select(WebhookEvent.status).where(WebhookEvent.id == event_id))
            return "gone" if status is None else str(status)
        rows = [claimed]
        if claimed.topic in TAKE_ALONG_TOPICS and TAKE_ALONG > 0:
            # SKIP LOCKED (PostgreSQL): rows another worker is claiming right now are theirs.
            # SQLite has one writer at a time anyway (and renders no FOR UPDATE).
            others = (
                select(WebhookEvent.id)
                .where(
                    WebhookEvent.shop_domain == claimed.shop_domain,
                    WebhookEvent.status == "queued",
                    WebhookEvent.topic.in_(TAKE_ALONG_TOPICS),
                    WebhookEvent.id != event_id,
                )
                .order_by(WebhookEvent.id)
                .limit(TAKE_ALONG)
                .with_for_update(skip_locked=True)
            )
            rows += conn.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id.in_(others.scalar_subquery()))
                .values(status="processing", attempts=WebhookEvent.attempts + 1)
                .returning(*table.columns)
            ).all()
    return [WebhookEvent(**{c.key: row._mapping[c] for c in table.columns}) for row in rows]


def _stale(received_at: dt.datetime | None) -> bool:
    """Whether a row ``processing`` since ``received_at`` was left behind by a dead worker."""
    if received_at is None:
        return True
    cutoff = utcnow() - STALE_PROCESSING
    if received_at.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=None)
    return received_at < cutoff


def _finish(ctx: jobs.Context, event_pks: list[int], status: str, reason: str | None) -> None:
    """Record the outcome of the events ``event_pks`` (one statement for all of them)."""
    with write_engine(ctx.engine).begin() as conn:
        conn.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id.in_(event_pks))
            .values(status=status, error=reason, processed_at=utcnow())
        )


def dispatch(
    ctx: jobs.Context, event: WebhookEvent, shops: dict[str, Shop | None] | None = None
) -> Outcome:
    """Route ``event`` to its handler by topic.

    ``shops`` caches the shop rows by domain across a group of one shop's store-data events
    (read once, not once per delivery); handlers only read the row.
    """
    if shops is not None and event.shop_domain in shops:
        shop = shops[event.shop_domain]
    else:
        with ctx.sessions() as session:
            shop = session.scalar(select(Shop).where(Shop.domain == event.shop_domain))
        if shops is not None:
            shops[event.shop_domain] = shop
    if shop is None:
        return "skipped", "unknown shop"
    payload = json.loads(event.payload or "null")
    if not isinstance(payload, dict):
        return "skipped", "payload is not an object"
    handler = HANDLERS.get(event.topic)
    if handler is not None:
        return handler(ctx, shop, payload, event)
    if event.topic.startswith(("orders/", "customers/")):
        if not shop.is_installed:
            return "skipped", "shop is uninstalled"
        sync.apply_webhook(ctx, shop.id, event.topic, payload)
        return "done", None
    return "skipped", f"no handler for {event.topic}"


def _audit(session: Any, shop_id: int, action: str, **fields: Any) -> None:
    session.add(AuditEntry.of(shop_id, action, target="app", **fields))


def handle_uninstalled(
    ctx: jobs.Context, shop: Shop, payload: dict[str, Any], event: WebhookEvent
) -> Outcome:
    """``app/uninstalled``: drop the tokens, mark the time, keep the data until ``shop/redact``.

    Background jobs stop by themselves: :func:`shopify_app.shopify.auth.access_token` refuses an
    uninstalled shop. Idempotent.
    """
    if (
        shop.is_installed
        and event.triggered_at is not None
        and shop.installed_at is not None
        and event.triggered_at < shop.installed_at
    ):
        # Deliveries are unordered: this uninstall predates the merchant's latest install.
        return "skipped", "the shop installed the app again after this uninstall"
    already = shop.uninstalled_at is not None and shop.access_token is None
    auth.drop_tokens(ctx, shop.id)
    if not already:
        with transaction(ctx.sessions) as session:
            _audit(session, shop.id, "app/uninstalled")
    return "done", "already uninstalled" if already else None


def handle_scopes_update(
    ctx: jobs.Context, shop: Shop, payload: dict[str, Any], event: WebhookEvent
) -> Outcome:
    """``app/scopes_update``: remember the scopes the merchant granted now."""
    current = payload.get("current")
    if not isinstance(current, list):
        return "skipped", "payload has no current scopes"
    scopes = ",".join(str(s) for s in current)
    with transaction(ctx.sessions) as session:
        session.execute(
            update(Shop)
            .where(Shop.id == shop.id)
            .values(scopes=scopes)
            .execution_options(synchronize_session=False)
        )
        _audit(session, shop.id, "app/scopes_update", detail={"scopes": current})
    # Granted or revoked read_all_orders: the page's notice follows.
    sync.check_scopes(ctx, shop.id)
    return "done", None


def handle_bulk_finish(
    ctx: jobs.Context, shop: Shop, payload: dict[str, Any], event: WebhookEvent
) -> Outcome:
    """``bulk_operations/finish``: queries go to sync, mutations (tag writes) to tagging."""
    if not shop.is_installed:
        return "skipped", "shop is uninstalled"
    kind = str(payload.get("type", "")).lower()
    if kind == "query":
        sync.on_bulk_finish(ctx, shop.id, payload)
        return "done", None
    if kind == "mutation":
        tagging.on_bulk_finish(ctx, shop.id, payload)
        return "done", None
    return "skipped", f"unknown bulk operation type {kind!r}"


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
        from shopify_app.segments.library import render as render_reason

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
        _audit(
            session,
            shop.id,
            "customers/data_request",
            subject=str(customer_id) if customer_id is not None else None,
            count=len(export["orders"]),
            detail={"request_id": request_id, "found": export["customer"] is not None},
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
            sync.record_deletion(session.connection(), shop.id, "customers", customer_id)
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
        _audit(
            session,
            shop.id,
            "customers/redact",
            subject=str(customer_id) if customer_id is not None else None,
            count=scrubbed,
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
        # (no foreign keys: they would slow every full recompute's write).
        session.execute(delete(Membership).where(Membership.shop_id == shop.id))
        session.execute(delete(Shop).where(Shop.id == shop.id))
        session.execute(
            delete(WebhookEvent).where(
                WebhookEvent.shop_domain == shop.domain, WebhookEvent.id != event.id
            )
        )
    log.info("shop redacted", extra={"shop": shop.domain})
    return "done", None


HANDLERS: dict[str, Handler] = {
    "app/uninstalled": handle_uninstalled,
    "app/scopes_update": handle_scopes_update,
    "bulk_operations/finish": handle_bulk_finish,
    "customers/data_request": handle_data_request,
    "customers/redact": handle_customer_redact,
    "shop/redact": handle_shop_redact,
}
"""Topics handled here; other ``orders/*`` and ``customers/*`` topics go to sync."""
