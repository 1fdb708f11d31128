"""Webhook intake: verify, deduplicate, store, enqueue, answer fast.

The intake (``/webhooks``, ``/webhooks/compliance``, as declared in ``shopify.app.toml``) reads the
raw body, checks ``X-Shopify-Hmac-Sha256`` in constant time *before* parsing anything (missing or
forged → 401), and inserts a :class:`~shopify_app.db.models.WebhookEvent`. The unique constraint on
``(shop_domain, event_id)`` makes a redelivery a no-op. The row id is queued as
``webhooks.process`` and Shopify gets its 200 at once; the row is the durable inbox, so rows
still ``queued`` are queued again on start-up (:func:`requeue_pending`) and every five minutes.

A delivery for a shop Goldpan does not know gets 200 and changes nothing. Handling a stored
delivery is :mod:`shopify_app.sync.inbox`'s work; the intake queues it by task name and never
imports it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from dataclasses import dataclass

from sqlalchemy import insert, or_, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shopify_app import jobs
from shopify_app.db import write_engine
from shopify_app.db.models import Shop, WebhookEvent
from shopify_app.db.types import utcnow
from shopify_app.shopify import auth
from shopify_app.states import WebhookStatus

log = logging.getLogger(__name__)


STALE_PROCESSING = dt.timedelta(minutes=10)
"""A row left ``processing`` this long belongs to a worker that died; it is queued again."""


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
                    status=WebhookStatus.QUEUED,
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
                        WebhookEvent.status == WebhookStatus.QUEUED,
                        (WebhookEvent.status == WebhookStatus.PROCESSING)
                        & (WebhookEvent.received_at < stale),
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
