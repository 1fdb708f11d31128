"""Shopify Flow events: "Customer entered a Goldpan segment" and "Customer left a Goldpan segment".

The triggers are app extensions (``extensions/goldpan-segment-entered``, ``-left``); their field
keys are :data:`FIELDS` and the customer reference goes as ``customer_id``, as Flow's trigger
reference documents. Events go only to shops whose lifecycle callback said a workflow uses the
trigger (:func:`record_lifecycle`, fed by :mod:`shopify_app.server.flow`), never for a customer
held out of the segment (:func:`shopify_app.actions.holdout.held_out`).

:func:`sync_events` runs after every recompute (the ``actions.flow_events`` task). It diffs the
memberships against :class:`~shopify_app.db.models.FlowEvent`, the log of entries and departures
already seen: an entry is (segment, customer, the membership's ``since``), unique in the table,
so a second recompute or a retried task finds it there and announces nothing twice. Entries from
before a workflow was enabled are recorded as ``skipped`` (enabling a workflow does not replay
every member) yet still let their departure be announced. Each event's payload is built when
its row is made and marked ``sent`` as soon as Shopify took it, so a retry after a failure part
way through sends only the rest.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, exists, insert, literal, select
from sqlalchemy.orm import Session, aliased

from shopify_app import jobs
from shopify_app.actions import holdout
from shopify_app.actions.scores import score_values
from shopify_app.db import transaction
from shopify_app.db.models import (
    AuditEntry,
    Customer,
    FlowEvent,
    FlowWorkflow,
    Membership,
    Segment,
    Shop,
    WinBackDiscount,
    utcnow,
)
from shopify_app.errors import InputError
from shopify_app.segments import library, loader
from shopify_app.segments.config import ShopConfig, holdout_handle
from shopify_app.segments.recompute import cached_stats, shop_config
from shopify_app.states import AuditTarget, FlowEventStatus, FlowTrigger
from shopify_app.tagging.writes import AdminAPI, admin_client

log = logging.getLogger(__name__)

TRIGGER_NAMES: dict[FlowTrigger, str] = {
    FlowTrigger.ENTERED: "Customer entered a Goldpan segment",
    FlowTrigger.LEFT: "Customer left a Goldpan segment",
}
"""Each trigger's ``name`` in its extension: what a lifecycle callback may identify it by."""

FIELDS: dict[str, str] = {
    "Segment name": "single_line_text_field",
    "Segment handle": "single_line_text_field",
    "Tier": "number_decimal",
    "Discount code": "single_line_text_field",
    "Reason": "single_line_text_field",
    "Chance still active": "number_decimal",
    "Expected orders": "number_decimal",
    "Predicted value": "number_decimal",
    "RFM score": "single_line_text_field",
    "RFM group": "single_line_text_field",
    "Business buyer": "boolean",
}
"""The custom fields of both trigger extensions (key → Flow type), beside ``customer_id``."""

MAX_PAYLOAD_BYTES = 50_000
"""Flow refuses a payload larger than this ("Properties size exceeds the limit of 50000 bytes")."""
MAX_TEXT = 255
"""A ``single_line_text_field`` value is cut to this many characters (a long reason)."""
_TIER_PREFIX = "lapsed-tier-"
BATCH = 5_000
"""Entries looked up and scored at a time (bounds the IN lists and the dataset loaded)."""


def trigger_for(definition_id: str) -> FlowTrigger | None:
    """The trigger a lifecycle callback's ``flow_trigger_definition_id`` names (handle or name)."""
    for trigger, name in TRIGGER_NAMES.items():
        if definition_id in (trigger.value, name):
            return trigger
    return None


def record_lifecycle(
    session: Session, shop_id: int, trigger: FlowTrigger, enabled: bool, at: dt.datetime
) -> bool:
    """Store a lifecycle callback; returns whether it was news (an older one is ignored)."""
    row = session.get(FlowWorkflow, (shop_id, trigger), with_for_update=True)
    if row is not None and row.changed_at >= at:
        return False
    if row is None:
        row = FlowWorkflow(shop_id=shop_id, trigger=trigger, enabled=False, changed_at=at)
        session.add(row)
    if enabled and not row.enabled:
        row.enabled_at = utcnow()
    row.enabled, row.changed_at = enabled, at
    session.add(
        AuditEntry.of(
            shop_id,
            "flow.workflow_enabled" if enabled else "flow.workflow_disabled",
            target=AuditTarget.APP,
            subject=trigger.value,
        )
    )
    return True


def enabled_since(session: Session, shop_id: int) -> dict[FlowTrigger, dt.datetime]:
    """The shop's triggers with an enabled workflow, and since when."""
    return {
        row.trigger: row.enabled_at or row.changed_at
        for row in session.scalars(
            select(FlowWorkflow).where(FlowWorkflow.shop_id == shop_id, FlowWorkflow.enabled)
        )
    }


def tier_of(handle: str) -> int:
    """``lapsed-tier-2`` → 2; 0 for a segment that is not a lapsed tier."""
    rest = handle.removeprefix(_TIER_PREFIX)
    return int(rest) if rest != handle and rest.isdigit() else 0


def _number(value: str | None) -> float:
    try:
        return float(value) if value else 0.0
    except ValueError:
        return 0.0


def payload(
    customer_id: int,
    segment: Segment,
    reason: str | None,
    code: str | None,
    scores: Mapping[str, str],
) -> dict[str, Any]:
    """The trigger payload for one customer and segment (pure). Scores the shop cannot predict
    yet are 0, as Flow needs every field."""
    body: dict[str, Any] = {
        "customer_id": customer_id,
        "Segment name": segment.name[:MAX_TEXT],
        "Segment handle": segment.handle,
        "Tier": tier_of(segment.handle),
        "Discount code": code or "",
        "Reason": (reason or "")[:MAX_TEXT],
        "Chance still active": _number(scores.get("p_alive")),
        "Expected orders": _number(scores.get("expected_orders_90d")),
        "Predicted value": _number(scores.get("predicted_value_12m")),
        "RFM score": scores.get("rfm_score", ""),
        "RFM group": scores.get("rfm_group", ""),
        "Business buyer": scores.get("business_buyer") == "true",
    }
    size = len(json.dumps(body, ensure_ascii=False).encode())
    if size > MAX_PAYLOAD_BYTES:  # cannot happen with the cuts above; refuse rather than send
        raise InputError(f"Flow payload of {size} bytes is over Flow's {MAX_PAYLOAD_BYTES}")
    return body


@dataclass
class FlowReport:
    """What one run did (the task returns :meth:`summary`)."""

    recorded: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "sent": self.sent,
            "skipped": self.skipped,
            "failed": self.failed,
        }


@dataclass(frozen=True)
class _Owed:
    segment_id: int
    customer_id: int
    entered_at: dt.datetime
    trigger: FlowTrigger
    reason: str | None


def _unseen(shop_id: int) -> list[Any]:
    """The conditions selecting the shop's memberships that have no entry row yet."""
    seen = aliased(FlowEvent)
    return [
        Membership.shop_id == shop_id,
        ~exists().where(
            seen.segment_id == Membership.segment_id,
            seen.customer_id == Membership.customer_id,
            seen.entered_at == Membership.since,
            seen.trigger == FlowTrigger.ENTERED,
        ),
    ]


def _record_baseline(session: Session, shop_id: int, before: dt.datetime | None) -> int:
    """Record the unseen entries from before ``before`` (all when None) as ``skipped``, in one
    statement: the first run after a workflow is enabled records every member of a big shop
    without loading them."""
    table = FlowEvent.__table__
    conditions = _unseen(shop_id)
    if before is not None:
        conditions.append(Membership.since < before)
    rows = select(
        Membership.shop_id,
        Membership.segment_id,
        Membership.customer_id,
        Membership.since,
        literal(FlowTrigger.ENTERED, type_=table.c.trigger.type),
        literal(FlowEventStatus.SKIPPED, type_=table.c.status.type),
        literal({}, type_=table.c.payload.type),
        literal(utcnow(), type_=table.c.created_at.type),
    ).where(*conditions)
    columns = [
        "shop_id",
        "segment_id",
        "customer_id",
        "entered_at",
        "trigger",
        "status",
        "payload",
        "created_at",
    ]
    # Counted from RETURNING: psycopg reports no rowcount (-1) for an INSERT ... SELECT here.
    inserted = insert(FlowEvent).from_select(columns, rows).returning(FlowEvent.id)
    return len(session.connection().execute(inserted).all())


def _new_entries(session: Session, shop_id: int) -> list[_Owed]:
    """Memberships with no entry row yet."""
    rows = session.execute(
        select(Membership.segment_id, Membership.customer_id, Membership.since, Membership.reason)
        .where(*_unseen(shop_id))
        .order_by(Membership.segment_id, Membership.customer_id)
    )
    return [_Owed(s, c, since, FlowTrigger.ENTERED, reason) for s, c, since, reason in rows]


def _departures(session: Session, shop_id: int) -> list[_Owed]:
    """Entries whose membership is gone and whose departure has no row yet."""
    left = aliased(FlowEvent)
    rows = session.execute(
        select(FlowEvent.segment_id, FlowEvent.customer_id, FlowEvent.entered_at)
        .where(
            FlowEvent.shop_id == shop_id,
            FlowEvent.trigger == FlowTrigger.ENTERED,
            ~exists().where(
                Membership.segment_id == FlowEvent.segment_id,
                Membership.customer_id == FlowEvent.customer_id,
                Membership.since == FlowEvent.entered_at,
            ),
            ~exists().where(
                and_(
                    left.segment_id == FlowEvent.segment_id,
                    left.customer_id == FlowEvent.customer_id,
                    left.entered_at == FlowEvent.entered_at,
                    left.trigger == FlowTrigger.LEFT,
                )
            ),
        )
        .order_by(FlowEvent.id)
    )
    return [_Owed(s, c, at, FlowTrigger.LEFT, None) for s, c, at in rows]


def _scores(
    session: Session, shop: Shop, cfg: ShopConfig, customer_ids: Iterable[int]
) -> dict[int, dict[str, str]]:
    """The rounded scores (as written to metafields) of some customers."""
    ids = sorted(set(customer_ids))
    stats = cached_stats(shop)
    if not ids or stats is None:
        return {}
    ds = loader.load(session, shop.id, customer_ids=ids)
    if not ds.n_customers:
        return {}
    ev = library.evaluate(ds, cfg, library.today(), stats=stats)
    return dict(score_values(ev))


def _announced(o: _Owed, segment: Segment, start: dt.datetime | None, cfg: ShopConfig) -> bool:
    """Whether an entry or departure of a customer still in the shop gets an event.

    An entry only if it happened after the trigger's workflow was enabled (members from before
    are not replayed); a departure whenever the workflow is on, unless the merchant switched
    the segment off (everyone "leaving" is not news). Never for a held-out customer, nor for
    entering or leaving a hold-out group's own segment.
    """
    if start is None:
        return False
    if o.trigger is FlowTrigger.ENTERED and o.entered_at < start:
        return False
    if o.trigger is FlowTrigger.LEFT and not segment.enabled:
        return False
    if segment.handle in {holdout_handle(h) for h in cfg.holdouts}:
        return False  # a control group is the absence of an action, never a cause for one
    return not holdout.held_out(cfg, segment.handle, o.customer_id)


def record_events(ctx: jobs.Context, shop_id: int) -> FlowReport:
    """Record the entries and departures not seen yet, each ``pending`` or ``skipped``."""
    report = FlowReport()
    with transaction(ctx.sessions) as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            return report
        since = enabled_since(session, shop_id)
        if not since:
            return report
        report.recorded = report.skipped = _record_baseline(
            session, shop_id, since.get(FlowTrigger.ENTERED)
        )
        owed = _new_entries(session, shop_id) + _departures(session, shop_id)
        if not owed:
            return report
        cfg = shop_config(shop)
        segments = {
            s.id: s for s in session.scalars(select(Segment).where(Segment.shop_id == shop_id))
        }
        codes = {
            row.tier: row.code
            for row in session.scalars(
                select(WinBackDiscount).where(
                    WinBackDiscount.shop_id == shop_id, WinBackDiscount.status == "active"
                )
            )
        }
        for lo in range(0, len(owed), BATCH):
            batch = owed[lo : lo + BATCH]
            existing = set(
                session.scalars(
                    select(Customer.id).where(
                        Customer.shop_id == shop_id,
                        Customer.id.in_(sorted({o.customer_id for o in batch})),
                    )
                )
            )

            due = {
                o
                for o in batch
                if o.customer_id in existing
                and _announced(o, segments[o.segment_id], since.get(o.trigger), cfg)
            }
            scores = _scores(session, shop, cfg, (o.customer_id for o in due))
            for o in batch:
                segment = segments[o.segment_id]
                session.add(
                    FlowEvent(
                        shop_id=shop_id,
                        segment_id=o.segment_id,
                        customer_id=o.customer_id,
                        entered_at=o.entered_at,
                        trigger=o.trigger,
                        status=FlowEventStatus.PENDING if o in due else FlowEventStatus.SKIPPED,
                        payload=payload(
                            o.customer_id,
                            segment,
                            o.reason,
                            codes.get(tier_of(segment.handle)),
                            scores.get(o.customer_id, {}),
                        )
                        if o in due
                        else {},
                    )
                )
            report.recorded += len(batch)
            report.skipped += len(batch) - len(due)
    return report


def send_pending(ctx: jobs.Context, shop_id: int, client: AdminAPI, report: FlowReport) -> None:
    """Send the shop's pending events in order, each marked as soon as Shopify answered.

    A userError (Shopify refused the payload) marks the event ``failed``: sending it again would
    be refused again. A transport error or throttle propagates for the task's retry; the events
    already sent stay marked and are not sent again.
    """
    with ctx.sessions() as session:
        pending = session.execute(
            select(FlowEvent.id, FlowEvent.trigger, FlowEvent.payload)
            .where(FlowEvent.shop_id == shop_id, FlowEvent.status == FlowEventStatus.PENDING)
            .order_by(FlowEvent.id)
        ).all()
    for event_id, trigger, body in pending:
        data = client.execute("flow_trigger_receive", {"handle": str(trigger), "payload": body})
        errors = (data.get("flowTriggerReceive") or {}).get("userErrors") or []
        with transaction(ctx.sessions) as session:
            row = session.get(FlowEvent, event_id)
            if row is None:
                continue
            if errors:
                row.status = FlowEventStatus.FAILED
                row.error = "; ".join(str(e.get("message")) for e in errors)[:1000]
                report.failed += 1
                report.errors.append(row.error)
            else:
                row.status, row.sent_at = FlowEventStatus.SENT, utcnow()
                report.sent += 1


def sync_events(ctx: jobs.Context, shop_id: int, *, client: AdminAPI | None = None) -> FlowReport:
    """Record what changed since the last run and send what is owed (see the module doc)."""
    report = record_events(ctx, shop_id)
    with ctx.sessions() as session:
        owed = session.scalar(
            select(FlowEvent.id)
            .where(FlowEvent.shop_id == shop_id, FlowEvent.status == FlowEventStatus.PENDING)
            .limit(1)
        )
    if owed is None:
        return report
    try:
        send_pending(ctx, shop_id, client or admin_client(ctx, shop_id), report)
    finally:
        if report.sent or report.failed:
            with transaction(ctx.sessions) as session:
                session.add(
                    AuditEntry.of(
                        shop_id,
                        "flow.events",
                        target=AuditTarget.SHOPIFY,
                        count=report.sent,
                        result="partial" if report.failed else "ok",
                        detail=report.summary(),
                        error="; ".join(report.errors[:5]) or None,
                    )
                )
    return report


@jobs.task("actions.flow_events", lock="flow:{shop_id}")
def flow_events(ctx: jobs.Context, shop_id: int) -> dict[str, Any]:
    """Task: announce the shop's segment entries and departures to Shopify Flow."""
    return sync_events(ctx, shop_id).summary()
