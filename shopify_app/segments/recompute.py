"""Background tasks that turn a shop's data into Segment, Membership and SegmentHistory rows.

- ``segments.recompute_shop(shop_id)``: load the dataset, evaluate every segment, make sure
  every segment row exists (built-ins are created on the first run), replace memberships by
  difference (new members inserted, departed ones deleted, ``since`` of the others kept),
  write today's history row per segment, cache the shop-level yardsticks
  (:class:`~shopify_app.segments.library.ShopStats`) in ``Shop.settings["segment_stats"]``, then
  queue ``tags.sync`` and ``meta.sync_shop`` when those tasks exist.
- ``segments.recompute_customer(shop_id, customer_id)``: after a webhook, re-evaluate one
  customer against the cached yardsticks and fix only their memberships and the counts.
- ``segments.daily``: a full recompute of every installed shop (days pass: "lapsed" changes
  without any new order).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from shopify_app import jobs
from shopify_app.errors import InputError
from shopify_app.models import Membership, Segment, SegmentHistory, Shop, utcnow
from shopify_app.segments import crosssell, library, metrics
from shopify_app.segments import dataset as dataset_mod
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import Dataset

log = logging.getLogger(__name__)

STATS_KEY = "segment_stats"
METRICS_KEY = "segment_metrics"  # the latest metrics.compute() output, for the page
SUGGESTIONS_KEY = "cross_sell_suggestions"  # mined rules the merchant may accept
MEMBERSHIPS = cast(Table, Membership.__table__)
SEGMENTS = cast(Table, Segment.__table__)
HISTORY = cast(Table, SegmentHistory.__table__)
CHUNK = 500


def shop_config(shop: Shop) -> ShopConfig:
    """The shop's config; a stored config that no longer validates falls back to defaults."""
    try:
        return ShopConfig.from_settings(shop.settings)
    except InputError as exc:
        log.warning("shop %s has invalid segment settings (%s): using defaults", shop.id, exc)
        return ShopConfig()


def cached_stats(shop: Shop) -> library.ShopStats | None:
    """The yardsticks cached by the last full recompute, if any."""
    data = (shop.settings or {}).get(STATS_KEY)
    if not data:
        return None
    try:
        return library.ShopStats.from_dict(data)
    except (KeyError, TypeError, ValueError):
        return None


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _ensure_segments(
    session: Session, shop_id: int, cfg: ShopConfig, defs: list[library.SegmentDef]
) -> dict[str, Segment]:
    """Segment rows for every definition (created on first sight), keyed by handle."""
    existing = {
        seg.handle: seg
        for seg in session.scalars(select(Segment).where(Segment.shop_id == shop_id))
    }
    for d in defs:
        seg = existing.get(d.handle)
        if seg is None:
            seg = Segment(
                shop_id=shop_id,
                handle=d.handle,
                kind=d.kind,
                name=d.name,
                definition=d.definition,
                enabled=True,
                tag=f"{cfg.tag_prefix}{d.handle}",
            )
            session.add(seg)
            existing[d.handle] = seg
        else:
            if seg.definition != d.definition:
                seg.definition = d.definition
            if seg.kind != d.kind:
                seg.kind = d.kind
            wanted_tag = f"{cfg.tag_prefix}{d.handle}"
            if seg.tag != wanted_tag:
                seg.tag = wanted_tag
    session.flush()
    return existing


def _apply_diff(
    session: Session,
    shop_id: int,
    segment_id: int,
    wanted: dict[int, str],
    now: dt.datetime,
) -> tuple[list[int], list[int]]:
    """Make the segment's memberships equal ``wanted``; returns (added, removed) customer ids."""
    t = MEMBERSHIPS
    current = {
        int(cid): reason
        for cid, reason in session.execute(
            select(t.c.customer_id, t.c.reason).where(t.c.segment_id == segment_id)
        )
    }
    added = [cid for cid in wanted if cid not in current]
    removed = [cid for cid in current if cid not in wanted]
    changed = [cid for cid in wanted if cid in current and current[cid] != wanted[cid]]
    for part in _chunks(removed):
        session.execute(delete(t).where(t.c.segment_id == segment_id, t.c.customer_id.in_(part)))
    if added:
        session.execute(
            insert(t),
            [
                {
                    "segment_id": segment_id,
                    "customer_id": cid,
                    "shop_id": shop_id,
                    "since": now,
                    "reason": wanted[cid],
                }
                for cid in added
            ],
        )
    if changed:
        session.execute(
            update(t)
            .where(t.c.segment_id == bindparam("sid"), t.c.customer_id == bindparam("cid"))
            .values(reason=bindparam("new_reason")),
            [{"sid": segment_id, "cid": cid, "new_reason": wanted[cid]} for cid in changed],
        )
    return added, removed


def _write_history(
    session: Session, shop_id: int, segment_id: int, day: dt.date, members: int, revenue: float
) -> None:
    t = HISTORY
    session.execute(delete(t).where(t.c.segment_id == segment_id, t.c.day == day))
    session.execute(
        insert(t).values(
            segment_id=segment_id,
            day=day,
            shop_id=shop_id,
            members=members,
            revenue=round(revenue, 2),
        )
    )


def write_evaluation(
    session: Session, shop: Shop, cfg: ShopConfig, ev: library.Evaluation, as_of: dt.date
) -> dict[str, int]:
    """Persist a full evaluation; returns member counts by handle (enabled segments)."""
    defs = library.segment_definitions(cfg, ev.stats)
    segments = _ensure_segments(session, shop.id, cfg, defs)
    now = utcnow()
    ids = ev.dataset.customer_ids
    spend = ev.features.spend
    counts: dict[str, int] = {}
    for handle, seg in segments.items():
        result = ev.segments.get(handle)
        if result is None or not seg.enabled:
            # A segment no longer defined (rule deleted, region no longer in the top) or
            # switched off keeps its row but loses its members, so their tags come off.
            wanted: dict[int, str] = {}
            revenue = 0.0
        else:
            member_ids = ids[result.members].tolist()
            wanted = dict(zip(member_ids, result.reasons, strict=True))
            revenue = float(spend[result.members].sum())
        _apply_diff(session, shop.id, seg.id, wanted, now)
        seg.member_count = len(wanted)
        seg.computed_at = now
        _write_history(session, shop.id, seg.id, as_of, len(wanted), revenue)
        if result is not None and seg.enabled:
            counts[handle] = len(wanted)
    return counts


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: PostgreSQL's JSON refuses them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _follow_up(ctx: jobs.Context, name: str, **kwargs: Any) -> None:
    """Queue ``name`` if some module declares it (tagging and Meta may not be installed)."""
    try:
        declared = jobs.has_task(name)
    except ImportError as exc:  # a listed module that is not there yet must not break segments
        log.warning("task modules incomplete (%s); %s not queued", exc, name)
        return
    if declared:
        ctx.enqueue(name, **kwargs)


def recompute_shop_now(
    ctx: jobs.Context, shop_id: int, as_of: dt.date | None = None
) -> dict[str, int]:
    """Full recompute of one shop; returns member counts by handle.

    Segments and memberships are written in one transaction. The cached yardsticks, metrics
    and suggestions go into ``Shop.settings`` afterwards in a short read-modify-write of their
    own (row-locked on PostgreSQL), so a merchant saving settings meanwhile is not overwritten
    by the copy read at the start of a long recompute.
    """
    as_of = as_of or library.today()
    with ctx.sessions() as session, session.begin():
        shop = session.get(Shop, shop_id)
        if shop is None:
            log.info("recompute: shop %s is gone", shop_id)
            return {}
        cfg = shop_config(shop)
        ds = dataset_mod.load(session, shop_id)
        ev = library.evaluate(ds, cfg, as_of)
        counts = write_evaluation(session, shop, cfg, ev, as_of)
    extra: dict[str, Any] = {STATS_KEY: ev.stats.to_dict()}
    try:
        extra[METRICS_KEY] = _json_safe(metrics.compute(ev.dataset, as_of, evaluation=ev))
        extra[SUGGESTIONS_KEY] = [s.to_dict() for s in crosssell.mine(ev.dataset)]
    except Exception:  # the page's extras must never cost the segments themselves
        log.exception("metrics for shop %s failed", shop_id)
    with ctx.sessions() as session, session.begin():
        fresh = session.get(Shop, shop_id, with_for_update=True)
        if fresh is not None:
            fresh.settings = {**(fresh.settings or {}), **_json_safe(extra)}
    log.info(
        "recomputed %d segments for shop %s (%d customers)", len(counts), shop_id, ds.n_customers
    )
    return counts


@jobs.task("segments.recompute_shop")
def recompute_shop(ctx: jobs.Context, shop_id: int) -> dict[str, int]:
    """Task: full recompute, then tag and Meta sync of the whole shop.

    Two full recomputes of one shop never overlap: ``jobs.SHOP_LOCKS`` holds a per-shop lease
    around this task on every worker.
    """
    counts = recompute_shop_now(ctx, shop_id)
    if counts:
        _follow_up(ctx, "tags.sync", shop_id=shop_id, customer_ids=None)
        _follow_up(ctx, "meta.sync_shop", shop_id=shop_id)
    return counts


def recompute_customer_now(
    ctx: jobs.Context, shop_id: int, customer_id: int, as_of: dt.date | None = None
) -> bool | None:
    """Re-evaluate one customer; ``True`` if a membership changed, ``None`` if no stats yet."""
    as_of = as_of or library.today()
    t = MEMBERSHIPS
    s = SEGMENTS
    with ctx.sessions() as session, session.begin():
        shop = session.get(Shop, shop_id)
        if shop is None:
            return False
        stats = cached_stats(shop)
        if stats is None:
            return None
        cfg = shop_config(shop)
        ds = dataset_mod.load(session, shop_id, customer_ids=[customer_id])
        segs = {
            handle: (int(sid), bool(enabled))
            for sid, handle, enabled in session.execute(
                select(s.c.id, s.c.handle, s.c.enabled).where(s.c.shop_id == shop_id)
            )
        }
        wanted: dict[int, str] = {}
        if ds.n_customers:
            ev = library.evaluate(ds, cfg, as_of, stats=stats)
            for handle, result in ev.segments.items():
                seg = segs.get(handle)
                if seg is not None and seg[1] and len(result.members):
                    wanted[seg[0]] = result.reasons[0]
        current = {
            int(sid): reason
            for sid, reason in session.execute(
                select(t.c.segment_id, t.c.reason).where(
                    t.c.shop_id == shop_id, t.c.customer_id == customer_id
                )
            )
        }
        added = [sid for sid in wanted if sid not in current]
        removed = [sid for sid in current if sid not in wanted]
        changed = [sid for sid in wanted if sid in current and current[sid] != wanted[sid]]
        if removed:
            session.execute(
                delete(t).where(t.c.customer_id == customer_id, t.c.segment_id.in_(removed))
            )
            session.execute(
                update(s).where(s.c.id.in_(removed)).values(member_count=s.c.member_count - 1)
            )
        if added:
            now = utcnow()
            session.execute(
                insert(t),
                [
                    {
                        "segment_id": sid,
                        "customer_id": customer_id,
                        "shop_id": shop_id,
                        "since": now,
                        "reason": wanted[sid],
                    }
                    for sid in added
                ],
            )
            session.execute(
                update(s).where(s.c.id.in_(added)).values(member_count=s.c.member_count + 1)
            )
        for sid in changed:
            session.execute(
                update(t)
                .where(t.c.segment_id == sid, t.c.customer_id == customer_id)
                .values(reason=wanted[sid])
            )
    return bool(added or removed)


@jobs.task("segments.recompute_customer")
def recompute_customer(ctx: jobs.Context, shop_id: int, customer_id: int) -> bool:
    """Task: incremental recompute of one customer (a full one if the shop has none yet)."""
    changed = recompute_customer_now(ctx, shop_id, int(customer_id))
    if changed is None:
        ctx.enqueue("segments.recompute_shop", shop_id=shop_id)
        return False
    if changed:
        _follow_up(ctx, "tags.sync", shop_id=shop_id, customer_ids=[int(customer_id)])
    return changed


@jobs.periodic("segments.daily", hour="3", minute="20")
def daily(ctx: jobs.Context) -> int:
    """Periodic: queue a full recompute of every installed shop; returns how many."""
    with ctx.sessions() as session:
        shop_ids = list(
            session.scalars(
                select(Shop.id).where(Shop.uninstalled_at.is_(None), Shop.access_token.is_not(None))
            )
        )
    for shop_id in shop_ids:
        ctx.enqueue("segments.recompute_shop", shop_id=int(shop_id))
    return len(shop_ids)


def single_customer_dataset(ds: Dataset, index: int) -> Dataset:
    """The slice of ``ds`` holding one customer (what an incremental load returns)."""
    start, end = int(ds.order_start[index]), int(ds.order_start[index + 1])
    lines = (ds.line_order >= start) & (ds.line_order < end)
    return Dataset(
        customer_ids=ds.customer_ids[index : index + 1],
        info={k: v[index : index + 1] for k, v in ds.info.items()},
        order_customer=np.zeros(end - start, dtype=np.int64),
        order_day=ds.order_day[start:end],
        order_total=ds.order_total[start:end],
        order_ids=ds.order_ids[start:end],
        order_discount=ds.order_discount[start:end],
        order_company=ds.order_company[start:end],
        line_order=ds.line_order[lines] - start,
        line_product=ds.line_product[lines],
        line_quantity=ds.line_quantity[lines],
        product_titles=ds.product_titles,
    )
