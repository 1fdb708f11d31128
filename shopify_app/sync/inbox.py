"""Handling stored webhook deliveries: claim them (in groups), dispatch by topic, follow up.

The intake (:mod:`shopify_app.shopify.webhooks`) stores each verified delivery as a
:class:`~shopify_app.db.models.WebhookEvent`. A shop's store-data deliveries are handled in
groups by :func:`drain` (queued once per group by the intake), so that under load their
follow-ups coalesce; any other delivery by :func:`process`. :func:`dispatch` routes each by
topic (:data:`HANDLERS`): the app lifecycle here, the compliance topics to
:mod:`shopify_app.sync.compliance`, store data to :mod:`shopify_app.sync.webhooks` and bulk
mutation results to ``shopify_app.tagging``. A delivery nothing applies to is marked
``skipped`` with the reason.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Row, Update, bindparam, or_, select, update
from sqlalchemy.orm import defer

from shopify_app import db, jobs, logs
from shopify_app.db import transaction, write_engine
from shopify_app.db.models import AuditEntry, InboxDrain, Shop, WebhookEvent
from shopify_app.db.types import utcnow
from shopify_app.errors import stored_error
from shopify_app.shopify import auth
from shopify_app.shopify.webhooks import GROUPED_TOPICS, HANDLED, STALE_PROCESSING
from shopify_app.states import AuditTarget, WebhookStatus
from shopify_app.sync import compliance
from shopify_app.sync.bulk import on_bulk_finish
from shopify_app.sync.scopes import check_scopes
from shopify_app.sync.webhooks import (
    ORDER_TOPICS,
    STORED_TOPICS,
    apply_webhook,
    store_orders,
    store_webhook,
)
from shopify_app.tagging import bulk as tag_bulk

log = logging.getLogger(__name__)


Outcome = tuple[WebhookStatus, str | None]
"""(status, reason): ``done`` or ``skipped`` with why."""

Handler = Callable[[jobs.Context, Shop, dict[str, Any], WebhookEvent], Outcome]


GROUP_MAX = 20
"""At most this many of a shop's store-data deliveries are handled as one group."""


_EVENTS = WebhookEvent.__table__
# Built once (bound per call): every delivery runs them, and building costs more than running.
_SEEN = select(
    WebhookEvent.status, WebhookEvent.received_at, WebhookEvent.shop_domain, WebhookEvent.topic
).where(WebhookEvent.id == bindparam("event"))
_CLAIM = (
    update(WebhookEvent)
    .where(
        WebhookEvent.id == bindparam("event"),
        or_(
            WebhookEvent.status.in_((WebhookStatus.QUEUED, WebhookStatus.FAILED)),
            # A worker that died mid-way left it here; see requeue_pending.
            (WebhookEvent.status == WebhookStatus.PROCESSING)
            & (WebhookEvent.received_at < bindparam("stale_before")),
        ),
    )
    .values(status=WebhookStatus.PROCESSING, attempts=WebhookEvent.attempts + 1)
    .returning(*_EVENTS.columns)
)


def _claim_queued(limit: int, *more: Any) -> Update:
    """Claim (up to ``limit``) the shop's queued store-data deliveries, oldest first."""
    return (
        update(WebhookEvent)
        .where(
            WebhookEvent.id.in_(
                # SKIP LOCKED (PostgreSQL): rows another worker is claiming right now are
                # theirs. SQLite has one writer at a time anyway (and renders no FOR UPDATE).
                select(WebhookEvent.id)
                .where(
                    WebhookEvent.shop_domain == bindparam("domain"),
                    WebhookEvent.status == WebhookStatus.QUEUED,
                    WebhookEvent.topic.in_(GROUPED_TOPICS),
                    *more,
                )
                .order_by(WebhookEvent.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
        )
        .values(status=WebhookStatus.PROCESSING, attempts=WebhookEvent.attempts + 1)
        .returning(*_EVENTS.columns)
    )


_GROUP = _claim_queued(GROUP_MAX)
_TAKE_ALONG = _claim_queued(GROUP_MAX - 1, WebhookEvent.id != bindparam("event"))
_DRAINING = (
    update(InboxDrain).where(InboxDrain.shop_domain == bindparam("domain")).values(due_at=None)
)
# Without Shop.settings (a large JSON document): no handler here reads it.
_SHOP = (
    select(Shop)
    .where(Shop.domain == bindparam("domain"))
    .options(defer(Shop.settings, raiseload=True))
)
_FAILED = (
    update(WebhookEvent)
    .where(WebhookEvent.id.in_(bindparam("ids", expanding=True)))
    .values(
        status=bindparam("new_status"), error=bindparam("reason"), processed_at=bindparam("now")
    )
)
_HANDLED = _FAILED.values(payload=None)
_SHOP_STATE = select(Shop.id, Shop.is_installed).where(Shop.domain == bindparam("domain"))


Claimer = Callable[[Connection], "list[WebhookEvent] | str"]
"""Claims a group in the caller's transaction: the events, or why there are none."""


@jobs.task("webhooks.drain", retries=3, retry_delay=30)
def drain(ctx: jobs.Context, shop_domain: str) -> int:
    """Handle the shop's queued store-data deliveries, in groups of up to :data:`GROUP_MAX`;
    returns how many.

    Queued by the intake for the first of them (:func:`shopify_app.shopify.webhooks.accept`),
    after ``WEBHOOK_GATHER_MS`` so that those arriving meanwhile join the group. It first
    marks the shop's drain no longer due, in the transaction that claims: a delivery stored
    after that queues the next drain, one stored before is claimed here (the intake and this
    take the :class:`~shopify_app.db.models.InboxDrain` row's lock). One that fails is queued
    again on its own (``webhooks.process``, with its retries).
    """
    handled = 0
    first = True
    while True:
        claim = functools.partial(_claim_group, shop_domain, clear=first)
        first = False
        result = _handle(ctx, claim)
        if isinstance(result, str):
            return handled
        events, _, failed = result
        _retry_alone(ctx, failed)
        handled += len(events)
        if len(events) < GROUP_MAX:
            return handled


@jobs.task("webhooks.process", retries=3, retry_delay=30)
def process(ctx: jobs.Context, event_id: int) -> str:
    """Handle one stored webhook event (idempotent: a finished event is not handled twice).

    A store-data delivery takes along its shop's queued ones (up to :data:`GROUP_MAX` in all;
    those failing are queued again on their own): deliveries queued again by
    :func:`~shopify_app.shopify.webhooks.requeue_pending` or retried are handled as a drain
    would.
    """
    seen = _seen(ctx, event_id)
    if isinstance(seen, str):
        return seen
    result = _handle(ctx, functools.partial(_claim, event_id))
    if isinstance(result, str):
        return result
    _, outcomes, failed = result
    _retry_alone(ctx, {i: e for i, e in failed.items() if i != event_id})
    if event_id in failed:
        raise failed[event_id]  # once the others are handled: huey retries it
    return str(outcomes[event_id][0])


def _retry_alone(ctx: jobs.Context, failed: dict[int, Exception]) -> None:
    for event_pk in failed:
        ctx.enqueue("webhooks.process", event_id=event_pk)


def _handle(
    ctx: jobs.Context, claim: Claimer
) -> tuple[list[WebhookEvent], dict[int, Outcome], dict[int, Exception]] | str:
    """Claim a group, handle it, run its follow-ups: (events, outcomes, failures), or why
    nothing was claimed.

    Deliveries whose payload says everything (:data:`STORED_TOPICS`) are claimed, stored and
    marked done in one transaction, each under a savepoint so that one that fails is rolled
    back alone; the others are claimed there and handled one by one afterwards.
    """
    # The customers' recompute, tag write and Meta update run right here once the events are
    # stored as done, not as three more queued tasks each (jobs.FollowUps): that is what keeps
    # webhook → tags written within seconds at 50 deliveries a second.
    follow_ups = jobs.FollowUps(ctx)
    outcomes: dict[int, Outcome] = {}
    failed: dict[int, Exception] = {}
    with write_engine(ctx.engine).begin() as conn:
        claimed = claim(conn)
        if isinstance(claimed, str):
            return claimed
        events = claimed
        stored = [e for e in events if e.topic in STORED_TOPICS]
        payloads = {e.id: _payload(e) for e in stored}
        shop = None
        if stored:
            shop = conn.execute(_SHOP_STATE, {"domain": stored[0].shop_domain}).first()
            # PostgreSQL: the group's customers locked in one ascending pass (see
            # db.lock_customers), not one by one in delivery order, which could deadlock with
            # another worker's group.
            if shop is not None:
                db.lock_customers(conn, shop.id, _customers_of(stored, payloads))
        # Orders and customers are rows of their own (no order refers to a customer row), so
        # storing the orders first, together, leaves what storing all in turn would.
        if shop is not None and shop.is_installed:
            together = _orders_to_store_together(stored, payloads)
            if together and _store_together(conn, follow_ups, shop, together, payloads):
                outcomes.update((e.id, (WebhookStatus.DONE, None)) for e in together)
        for event in stored:
            if event.id in outcomes:
                continue
            with logs.bind(shop=event.shop_domain, job=f"webhook:{event.id}"):
                try:
                    with conn.begin_nested():
                        outcomes[event.id] = _store(
                            conn, follow_ups, shop, event, payloads[event.id]
                        )
                except Exception as exc:
                    failed[event.id] = exc
                    log.exception("webhook %s (%s) failed", event.id, event.topic)
        _finish_on(conn, outcomes, failed)
    shops: dict[str, Shop | None] = {}
    for event in events:
        if event.topic in STORED_TOPICS:
            continue
        with logs.bind(shop=event.shop_domain, job=f"webhook:{event.id}"):
            try:
                outcomes[event.id] = dispatch(follow_ups, event, shops)
            except Exception as exc:
                failed[event.id] = exc
                log.exception("webhook %s (%s) failed", event.id, event.topic)
                with write_engine(ctx.engine).begin() as conn:
                    _finish_on(conn, {}, {event.id: exc})
                continue
    # The group's other outcomes in one transaction: each delivery's own changes are
    # committed by now, and one left ``processing`` by a crash here is handled again.
    handled = {i: o for i, o in outcomes.items() if i not in payloads}
    if handled:
        with write_engine(ctx.engine).begin() as conn:
            _finish_on(conn, handled, {})
    with logs.bind(shop=events[0].shop_domain, job=f"webhook:{events[0].id}"):
        _log_outcomes(events, outcomes)
        follow_ups.run()
    return events, outcomes, failed


def _customers_of(
    events: list[WebhookEvent], payloads: dict[int, dict[str, Any] | None]
) -> list[int]:
    """The customers the deliveries concern, as far as their payloads say (for locking)."""
    ids: set[int] = set()
    for event in events:
        payload = payloads[event.id] or {}
        customer = payload.get("customer") if event.topic in ORDER_TOPICS else payload
        if isinstance(customer, dict) and isinstance(customer.get("id"), int | str):
            try:
                ids.add(int(customer["id"]))
            except ValueError:
                continue  # not a number: _store turns it away
    return sorted(ids)


def _log_outcomes(events: list[WebhookEvent], outcomes: dict[int, Outcome]) -> None:
    """One line for the group's handled deliveries (a line each cost more than storing one),
    with each one's id, topic and outcome; a reason gets a line of its own."""
    done = [e for e in events if outcomes.get(e.id) == (WebhookStatus.DONE, None)]
    if done:
        log.info(
            "webhooks done: %s",
            ", ".join(f"{e.id} {e.topic}" for e in done),
            extra={"deliveries": len(done)},
        )
    logged = {e.id for e in done}
    for event in events:
        if event.id in outcomes and event.id not in logged:
            outcome, reason = outcomes[event.id]
            log.info(
                "webhook %s %s %s",
                event.id,
                event.topic,
                outcome,
                extra={"reason": reason},
            )


def _orders_to_store_together(
    stored: list[WebhookEvent], payloads: dict[int, dict[str, Any] | None]
) -> list[WebhookEvent]:
    """The group's order deliveries that :func:`_store_together` can store at once: none when
    fewer than two, or when a ``customers/delete`` in the group could forget a buyer between
    them (then each is stored in turn)."""
    if any(e.topic == "customers/delete" for e in stored):
        return []
    orders = [e for e in stored if e.topic in ORDER_TOPICS and payloads[e.id] is not None]
    return orders if len(orders) > 1 else []


def _store_together(
    conn: Connection,
    follow_ups: jobs.Context,
    shop: Row[int, bool],
    events: list[WebhookEvent],
    payloads: dict[int, dict[str, Any] | None],
) -> bool:
    """Store ``events`` (order deliveries) at once under one savepoint; False when that
    failed, so that they are stored in turn and one that fails fails alone."""
    try:
        with conn.begin_nested(), logs.bind(job=f"webhook:{events[0].id}"):
            customers = store_orders(conn, shop.id, [payloads[e.id] or {} for e in events])
    except Exception:
        log.info("storing %d orders at once failed: one at a time", len(events), exc_info=True)
        return False
    for customer_id in sorted(customers):
        follow_ups.enqueue("segments.recompute_customer", shop_id=shop.id, customer_id=customer_id)
    return True


def _store(
    conn: Connection,
    follow_ups: jobs.Context,
    shop: Row[int, bool] | None,
    event: WebhookEvent,
    payload: dict[str, Any] | None,
) -> Outcome:
    """Store a :data:`STORED_TOPICS` delivery on the group's connection; the recompute of the
    customer it changed waits in ``follow_ups``."""
    if shop is None:
        return WebhookStatus.SKIPPED, "unknown shop"
    if payload is None:
        return WebhookStatus.SKIPPED, "payload is not an object"
    if not shop.is_installed:
        return WebhookStatus.SKIPPED, "shop is uninstalled"
    changed, customer_id = store_webhook(conn, shop.id, event.topic, payload)
    if changed and customer_id is not None:
        follow_ups.enqueue("segments.recompute_customer", shop_id=shop.id, customer_id=customer_id)
    return WebhookStatus.DONE, None


def _payload(event: WebhookEvent) -> dict[str, Any] | None:
    payload = json.loads(event.payload or "null")
    return payload if isinstance(payload, dict) else None


def _seen(ctx: jobs.Context, event_id: int) -> Row[WebhookStatus, dt.datetime, str, str] | str:
    """The event's shop and topic when there is something to claim, else why not (its status,
    or ``gone``).

    A task queued again (at start-up, every five minutes) often finds its event handled by a
    drain meanwhile: a read says so without taking SQLite's write lock.
    """
    with ctx.engine.connect() as conn:
        seen = conn.execute(_SEEN, {"event": event_id}).first()
    if seen is None:
        return "gone"
    if seen.status in HANDLED:
        return str(seen.status)
    if seen.status == WebhookStatus.PROCESSING and not _stale(seen.received_at):
        # In a group a worker is handling right now: nothing to claim.
        return str(seen.status)
    return seen


def _claim(event_id: int, conn: Connection) -> list[WebhookEvent] | str:
    """Mark ``event_id`` (and, for a store-data delivery, its shop's queued ones)
    ``processing`` in the caller's transaction.

    Returns the claimed events, ``event_id``'s first, as detached copies for the handlers to
    read; or the event's status when someone else has it (``gone`` when it does not exist).
    """
    claimed = conn.execute(
        _CLAIM, {"event": event_id, "stale_before": utcnow() - STALE_PROCESSING}
    ).first()
    if claimed is None:
        status = conn.scalar(_SEEN, {"event": event_id})
        return "gone" if status is None else str(status)
    rows = [claimed]
    if claimed.topic in GROUPED_TOPICS:
        rows += conn.execute(_TAKE_ALONG, {"domain": claimed.shop_domain, "event": event_id}).all()
    return [_detached(row) for row in rows]


def _claim_group(domain: str, conn: Connection, *, clear: bool) -> list[WebhookEvent] | str:
    """Claim the shop's queued store-data deliveries (up to :data:`GROUP_MAX`, oldest first) in
    the caller's transaction, first marking its drain no longer due when ``clear``; ``empty``
    when there are none."""
    if clear:
        conn.execute(_DRAINING, {"domain": domain})
    rows = sorted(conn.execute(_GROUP, {"domain": domain}).all(), key=lambda row: row.id)
    return [_detached(row) for row in rows] or "empty"


def _detached(row: Row[Any]) -> WebhookEvent:
    return WebhookEvent(**{c.key: row._mapping[c] for c in _EVENTS.columns})


def _stale(received_at: dt.datetime | None) -> bool:
    """Whether a row ``processing`` since ``received_at`` was left behind by a dead worker."""
    if received_at is None:
        return True
    cutoff = utcnow() - STALE_PROCESSING
    if received_at.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=None)
    return received_at < cutoff


def _finish_on(
    conn: Connection, outcomes: dict[int, Outcome], failed: dict[int, Exception]
) -> None:
    """Record the outcomes (one statement per distinct outcome) in the caller's transaction.

    A handled delivery (``done`` or ``skipped``) drops its payload: the row stays as the
    deduplication and audit record, without the customers' personal data in the body. A failed
    one keeps it for its retries (and loses it with the row, see
    :func:`shopify_app.shopify.webhooks.purge`).
    """
    now = utcnow()
    groups: dict[tuple[WebhookStatus, str | None], list[int]] = {}
    for event_pk, (status, reason) in outcomes.items():
        groups.setdefault((status, reason), []).append(event_pk)
    for event_pk, exc in failed.items():
        groups.setdefault((WebhookStatus.FAILED, stored_error(exc)), []).append(event_pk)
    for (status, reason), ids in groups.items():
        conn.execute(
            _HANDLED if status in HANDLED else _FAILED,
            {"ids": ids, "new_status": status, "reason": reason, "now": now},
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
            shop = session.scalar(_SHOP, {"domain": event.shop_domain})
        if shops is not None:
            shops[event.shop_domain] = shop
    if shop is None:
        return WebhookStatus.SKIPPED, "unknown shop"
    payload = _payload(event)
    if payload is None:
        return WebhookStatus.SKIPPED, "payload is not an object"
    handler = HANDLERS.get(event.topic)
    if handler is not None:
        return handler(ctx, shop, payload, event)
    if event.topic.startswith(("orders/", "refunds/", "customers/")):
        if not shop.is_installed:
            return WebhookStatus.SKIPPED, "shop is uninstalled"
        apply_webhook(ctx, shop.id, event.topic, payload)
        return WebhookStatus.DONE, None
    return WebhookStatus.SKIPPED, f"no handler for {event.topic}"


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
        return WebhookStatus.SKIPPED, "the shop installed the app again after this uninstall"
    already = shop.uninstalled_at is not None and shop.access_token is None
    auth.drop_tokens(ctx, shop.id)
    if not already:
        with transaction(ctx.sessions) as session:
            session.add(AuditEntry.of(shop.id, "app/uninstalled", target=AuditTarget.APP))
    return WebhookStatus.DONE, "already uninstalled" if already else None


def handle_scopes_update(
    ctx: jobs.Context, shop: Shop, payload: dict[str, Any], event: WebhookEvent
) -> Outcome:
    """``app/scopes_update``: remember the scopes the merchant granted now."""
    current = payload.get("current")
    if not isinstance(current, list):
        return WebhookStatus.SKIPPED, "payload has no current scopes"
    scopes = ",".join(str(s) for s in current)
    with transaction(ctx.sessions) as session:
        session.execute(
            update(Shop)
            .where(Shop.id == shop.id)
            .values(scopes=scopes)
            .execution_options(synchronize_session=False)
        )
        session.add(
            AuditEntry.of(
                shop.id, "app/scopes_update", target=AuditTarget.APP, detail={"scopes": current}
            )
        )
    # Granted or revoked read_all_orders: the page's notice follows.
    check_scopes(ctx, shop.id)
    return WebhookStatus.DONE, None


def handle_bulk_finish(
    ctx: jobs.Context, shop: Shop, payload: dict[str, Any], event: WebhookEvent
) -> Outcome:
    """``bulk_operations/finish``: queries go to sync, mutations (tag writes) to tagging."""
    if not shop.is_installed:
        return WebhookStatus.SKIPPED, "shop is uninstalled"
    kind = str(payload.get("type", "")).lower()
    if kind == "query":
        on_bulk_finish(ctx, shop.id, payload)
        return WebhookStatus.DONE, None
    if kind == "mutation":
        tag_bulk.on_bulk_finish(ctx, shop.id, payload)
        return WebhookStatus.DONE, None
    return WebhookStatus.SKIPPED, f"unknown bulk operation type {kind!r}"


HANDLERS: dict[str, Handler] = {
    "app/uninstalled": handle_uninstalled,
    "app/scopes_update": handle_scopes_update,
    "bulk_operations/finish": handle_bulk_finish,
    **compliance.HANDLERS,
}
"""Topics handled here; other ``orders/*`` and ``customers/*`` topics go to
:func:`~shopify_app.sync.webhooks.apply_webhook`."""
