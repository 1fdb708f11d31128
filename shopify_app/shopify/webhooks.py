"""Webhook intake: verify, deduplicate, store, enqueue, answer fast.

The intake (``/webhooks``, ``/webhooks/compliance``, as declared in ``shopify.app.toml``) reads the
raw body up to :data:`MAX_BODY_BYTES` (413 above it, refused by ``Content-Length`` before reading),
checks ``X-Shopify-Hmac-Sha256`` in constant time *before* parsing anything (missing or forged →
401), and inserts a :class:`~shopify_app.db.models.WebhookEvent`. The unique constraint on
``(shop_domain, event_id, body_hash)`` makes a redelivery a no-op: the event id is a header, which
the HMAC does not cover, so only the same event with the same signed body is a redelivery.
Store-data deliveries (:data:`GROUPED_TOPICS`, the bulk of the traffic) are handled in groups:
the first of a shop's queues ``webhooks.drain`` for the shop (after ``WEBHOOK_GATHER_MS``), the
ones stored before it runs queue nothing (:class:`~shopify_app.db.models.InboxDrain`); any other
delivery's row id is queued as ``webhooks.process``. Shopify gets its 200 at once. The row is
the durable inbox, so rows still ``queued`` are queued again on start-up
(:func:`requeue_pending`) and every five minutes. A handled row keeps no payload, and
:func:`purge` deletes finished rows after :data:`RETENTION`.

The HMAC covers the body, not the headers, so a genuine body could be replayed under another
shop's domain or topic: :func:`check_payload` ties the headers to the signed payload (the shop
it names, the object type its topic implies, the fields its topic always has) and
:func:`check_age` refuses deliveries older than Shopify's retry window; both answer 400.

A delivery for a shop Goldpan does not know gets 200 and changes nothing. Handling a stored
delivery is :mod:`shopify_app.sync.inbox`'s work; the intake queues it by task name and never
imports it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, insert, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shopify_app import jobs
from shopify_app.db import write_engine
from shopify_app.db.models import InboxDrain, Shop, WebhookEvent
from shopify_app.db.types import utcnow
from shopify_app.shopify import auth
from shopify_app.states import WebhookStatus

log = logging.getLogger(__name__)


STALE_PROCESSING = dt.timedelta(minutes=10)
"""A row left ``processing`` this long belongs to a worker that died; it is queued again."""

HANDLED = (WebhookStatus.DONE, WebhookStatus.SKIPPED)
"""The statuses of a delivery there is nothing more to do with: its row keeps no payload."""

GROUPED_TOPICS = (
    "orders/create",
    "orders/updated",
    "orders/cancelled",
    "orders/edited",
    "refunds/create",
    "customers/create",
    "customers/update",
)
"""Store-data topics, the bulk of the traffic: a shop's are handled in groups by one
``webhooks.drain`` (their follow-ups coalesce: each customer recomputed once, one tag request)."""

DRAIN_LOST_AFTER = dt.timedelta(minutes=1)
"""A shop's drain due this long ago and not begun was lost with its process (a web process's
timer, a worker's task): the shop's next delivery queues another instead of waiting for it."""

RETENTION = dt.timedelta(days=30)
"""How long a finished delivery's row (ids, topic, body hash, outcome) is kept. Deduplication
needs it only for Shopify's retry window (four hours); the rest is for the audit."""


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
    body_hash: str


MAX_BODY_BYTES = 8 * 1024 * 1024
"""The largest body the intake reads (413 above it). Shopify documents no limit for HTTPS
deliveries; its staff report bodies "upwards of a megabyte" for big orders, and its EventBridge
deliveries stop at 1,000,000 bytes. 8 MiB leaves room for the largest order Shopify will send
while a client cannot make a worker hold hundreds of megabytes before the HMAC check."""


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The raw body, or None when it is larger than ``limit``.

    A declared ``Content-Length`` above the limit is refused without reading a byte; a body
    without one (chunked) is read only up to the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def receive(request: Request) -> Response:
    """The endpoint: size cap, HMAC, then store + enqueue in the threadpool, then 200."""
    ctx: jobs.Context = request.app.state.ctx
    body = await read_body(request)
    if body is None:
        return JSONResponse({"error": f"body larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
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
        payload = json.loads(body or b"null")
    except ValueError:
        return JSONResponse({"error": "body is not JSON"}, status_code=400)
    triggered_at = _parse_time(headers.get("x-shopify-triggered-at"))
    reason = check_payload(shop, topic, payload) or check_age(triggered_at, utcnow())
    if reason is not None:
        log.warning("webhook refused: %s", reason, extra={"shop": shop, "topic": topic})
        return JSONResponse({"error": reason}, status_code=400)
    body_hash = hashlib.sha256(body).hexdigest()
    event_id = (
        headers.get("x-shopify-event-id")
        or headers.get("x-shopify-webhook-id")
        or "sha256:" + body_hash
    )
    delivery = Delivery(
        shop_domain=shop,
        topic=topic,
        event_id=event_id.strip()[:255],
        webhook_id=headers.get("x-shopify-webhook-id"),
        api_version=headers.get("x-shopify-api-version"),
        triggered_at=triggered_at,
        body=body.decode("utf-8", errors="replace"),
        body_hash=body_hash,
    )
    outcome = await run_in_threadpool(accept, ctx, delivery)
    return JSONResponse({"status": outcome})


@dataclass(frozen=True)
class Shape:
    """What a topic's payload looks like, for :func:`check_payload`."""

    resource: str | None = None
    """The type in ``admin_graphql_api_id`` (``gid://shopify/<resource>/<id>``), required."""
    shop_key: str | None = None
    """The key naming the shop, required."""
    keys: frozenset[str] = frozenset()
    """Other keys the payload always has."""
    foreign: frozenset[str] = frozenset()
    """Keys of other topics' payloads, which this one never has."""


_COMPLIANCE_KEYS = frozenset({"customer", "orders_to_redact", "orders_requested", "data_request"})

SHAPES: dict[str, Shape] = {
    "app/uninstalled": Shape(shop_key="myshopify_domain"),
    "app/scopes_update": Shape(keys=frozenset({"current"})),
    **dict.fromkeys(("orders/create", "orders/updated", "orders/cancelled"), Shape("Order")),
    "refunds/create": Shape("Refund", keys=frozenset({"order_id"})),
    **dict.fromkeys(
        ("customers/create", "customers/update", "customers/delete"), Shape("Customer")
    ),
    "bulk_operations/finish": Shape("BulkOperation"),
    "customers/data_request": Shape(
        shop_key="shop_domain", keys=frozenset({"customer", "data_request"})
    ),
    "customers/redact": Shape(
        shop_key="shop_domain", keys=frozenset({"customer", "orders_to_redact"})
    ),
    "shop/redact": Shape(shop_key="shop_domain", foreign=_COMPLIANCE_KEYS),
}
"""The payload of every topic Goldpan subscribes to (``shopify.app.toml``), as Shopify sends it.
The HMAC covers the body but not the headers: these tie the headers to what was signed, so a
genuine body replayed under another shop's domain or another topic is refused."""

SHOP_KEYS = ("shop_domain", "myshopify_domain", "domain")
"""Payload keys that name a shop; ``domain`` is the primary domain, compared when it is the
``*.myshopify.com`` one."""

_GID = re.compile(r"gid://shopify/(\w+)/(\d+)")


def check_payload(shop: str, topic: str, payload: Any) -> str | None:
    """Why ``payload`` cannot be ``topic`` for ``shop`` (the delivery's headers), or None."""
    if not isinstance(payload, dict):
        return "payload is not a JSON object"
    for key in SHOP_KEYS:
        named = payload.get(key)
        if not isinstance(named, str) or (
            key == "domain" and not named.lower().endswith(".myshopify.com")
        ):
            continue
        if named.strip().lower() != shop:
            return f"payload {key} is not the shop of X-Shopify-Shop-Domain"
    shape = SHAPES.get(topic)
    if shape is None:
        return None  # not subscribed: stored and skipped
    if shape.shop_key is not None and not isinstance(payload.get(shape.shop_key), str):
        return f"{topic} payload without {shape.shop_key}"
    missing = sorted(shape.keys - payload.keys())
    if missing:
        return f"{topic} payload without {', '.join(missing)}"
    if shape.foreign & payload.keys():
        return f"{topic} payload with another topic's fields"
    if shape.resource is not None:
        match = _GID.fullmatch(str(payload.get("admin_graphql_api_id") or ""))
        if match is None or match.group(1) != shape.resource:
            return f"{topic} payload's admin_graphql_api_id is not gid://shopify/{shape.resource}/…"
        if "id" in payload and str(payload["id"]) != match.group(2):
            return "payload id and admin_graphql_api_id disagree"
    return None


RETRY_WINDOW = dt.timedelta(hours=4)
"""Shopify retries a failed delivery 8 times over 4 hours and then gives up (developer
changelog, 2024-09-10), telling apps to judge staleness by ``X-Shopify-Triggered-At``."""

CLOCK_SKEW = dt.timedelta(minutes=5)
"""Tolerance between Shopify's clock and ours."""


def check_age(triggered_at: dt.datetime | None, now: dt.datetime) -> str | None:
    """Why a delivery triggered at ``triggered_at`` cannot be a Shopify delivery now, or None."""
    if triggered_at is None:
        return None
    if triggered_at < now - RETRY_WINDOW - CLOCK_SKEW:
        return "delivery is older than Shopify's retry window"
    if triggered_at > now + CLOCK_SKEW:
        return "delivery is triggered in the future"
    return None


@functools.cache
def _drain_due(dialect: str) -> Any:
    """Mark the shop's drain due unless one is (or is lost, see :data:`DRAIN_LOST_AFTER`);
    returns the domain when it did, so the caller queues the drain.

    ON CONFLICT DO UPDATE locks the shop's row even when its WHERE leaves it as it is, so this
    waits for a drain clearing it (:func:`shopify_app.sync.inbox.drain`) and that drain waits for
    this transaction: a delivery stored without queueing a drain is one the drain claims.
    """
    stmt: Any = (pg_insert if dialect == "postgresql" else sqlite_insert)(InboxDrain)
    stmt = stmt.values(shop_domain=bindparam("domain"), due_at=bindparam("due"))
    return stmt.on_conflict_do_update(
        index_elements=[InboxDrain.shop_domain],
        set_={"due_at": stmt.excluded.due_at},
        where=or_(InboxDrain.due_at.is_(None), InboxDrain.due_at < bindparam("lost_before")),
    ).returning(InboxDrain.shop_domain)


def accept(ctx: jobs.Context, delivery: Delivery) -> str:
    """Store and enqueue ``delivery``; returns ``queued``, ``duplicate`` or ``ignored``.

    A :data:`GROUPED_TOPICS` delivery queues its shop's drain when none is due, else nothing:
    the due drain claims it (see :func:`_drain_due`).
    """
    grouped = delivery.topic in GROUPED_TOPICS
    delay = ctx.settings.webhook_gather_ms / 1000 if ctx.runtime is not None else 0.0
    now = utcnow()
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
                    body_hash=delivery.body_hash,
                    payload=delivery.body,
                    status=WebhookStatus.QUEUED,
                )
                .returning(WebhookEvent.id)
            )
            drain = grouped and (
                conn.scalar(
                    _drain_due(conn.dialect.name),
                    {
                        "domain": delivery.shop_domain,
                        "due": now + dt.timedelta(seconds=delay),
                        "lost_before": now - DRAIN_LOST_AFTER,
                    },
                )
                is not None
            )
    except IntegrityError:
        log.info(
            "duplicate webhook delivery",
            extra={"shop": delivery.shop_domain, "topic": delivery.topic},
        )
        return "duplicate"
    try:
        if not grouped:
            ctx.enqueue("webhooks.process", event_id=event_pk)
        elif drain and delay > 0 and ctx.runtime is not None:
            # The wait lets the shop's next deliveries join the group (a timer here: huey's
            # own schedule looks once a second). Lost with this process, the drain is queued
            # again by the shop's next delivery or by requeue_stale (DRAIN_LOST_AFTER).
            ctx.runtime.enqueue_soon(delay, "webhooks.drain", shop_domain=delivery.shop_domain)
        elif drain:
            ctx.enqueue("webhooks.drain", shop_domain=delivery.shop_domain)
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
    """Queue again every event still ``queued`` (or stuck ``processing``); returns how many.

    A shop's queued :data:`GROUPED_TOPICS` deliveries get one ``webhooks.drain``, as does a
    shop whose drain is due (a process that died may have taken it along); the rest one
    ``webhooks.process`` each.
    """
    stale = utcnow() - STALE_PROCESSING
    with ctx.sessions() as session:
        rows = session.execute(
            select(
                WebhookEvent.id, WebhookEvent.shop_domain, WebhookEvent.topic, WebhookEvent.status
            )
            .where(
                or_(
                    WebhookEvent.status == WebhookStatus.QUEUED,
                    (WebhookEvent.status == WebhookStatus.PROCESSING)
                    & (WebhookEvent.received_at < stale),
                )
            )
            .order_by(WebhookEvent.id)
        ).all()
        due = set(
            session.scalars(select(InboxDrain.shop_domain).where(InboxDrain.due_at.is_not(None)))
        )
    singles: list[int] = []
    for event_pk, domain, topic, status in rows:
        if status == WebhookStatus.QUEUED and topic in GROUPED_TOPICS:
            due.add(domain)
        else:
            singles.append(event_pk)
    for domain in sorted(due):
        ctx.enqueue("webhooks.drain", shop_domain=domain)
    for event_pk in singles:
        ctx.enqueue("webhooks.process", event_id=event_pk)
    if rows:
        log.info("re-queued %d webhook events", len(rows))
    return len(rows)


@jobs.periodic("webhooks.requeue_stale", minute="*/5")
def requeue_stale(ctx: jobs.Context) -> int:
    """Every five minutes: queue again what a dead worker left behind (see
    :func:`requeue_pending`), so recovery does not wait for the next process start."""
    return requeue_pending(ctx)


@jobs.periodic("webhooks.purge", hour="3", minute="41")
def purge(ctx: jobs.Context) -> int:
    """Daily: delete the rows of deliveries finished more than :data:`RETENTION` ago (a failed
    one's payload with it); returns how many. Queued or running deliveries are never touched."""
    cutoff = utcnow() - RETENTION
    with write_engine(ctx.engine).begin() as conn:
        result = conn.execute(
            delete(WebhookEvent).where(
                WebhookEvent.status.in_((*HANDLED, WebhookStatus.FAILED)),
                WebhookEvent.received_at < cutoff,
            )
        )
    purged = int(result.rowcount or 0)
    if purged:
        log.info("purged %d old webhook deliveries", purged)
    return purged


routes = [
    Route("/webhooks", receive, methods=["POST"]),
    Route("/webhooks/compliance", receive, methods=["POST"]),
]
"""Mounted at the root by :func:`shopify_app.server.app.build_routes`."""
