"""Who entered a measured segment when, and the results loaded from the database.

A measured segment is a lapsed tier (its discount is what is measured) or one the merchant
keeps a hold-out for. After each full recompute :func:`record` copies the new memberships of
those segments into ``segment_entries`` with the hold-out split as it is then, so a customer
who orders and leaves the tier is still counted, and a later change of the share does not move
past entries between groups. :func:`load_report` feeds them to :mod:`shopify_app.actions.results`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from shopify_app import jobs
from shopify_app.actions import discounts, results
from shopify_app.actions.holdout import held_out
from shopify_app.db import transaction
from shopify_app.db.models import Membership, Segment, SegmentEntry, Shop, WinBackDiscount
from shopify_app.segments import loader
from shopify_app.segments.config import ShopConfig, lapsed_handle
from shopify_app.segments.dataset import day_number
from shopify_app.segments.recompute import shop_config


def measured(cfg: ShopConfig) -> set[str]:
    """Handles whose entries are recorded: every lapsed tier and every segment with a hold-out."""
    return {lapsed_handle(t) for t in range(1, len(cfg.lapsed_tiers) + 1)} | set(cfg.holdouts)


def record(session: Session, shop_id: int) -> int:
    """Copy new memberships of the shop's measured segments into entries; returns how many."""
    shop = session.get(Shop, shop_id)
    if shop is None:
        return 0
    cfg = shop_config(shop)
    handles = dict(
        session.execute(
            select(Segment.id, Segment.handle).where(
                Segment.shop_id == shop_id, Segment.handle.in_(measured(cfg))
            )
        ).all()
    )
    new = session.execute(
        select(Membership.segment_id, Membership.customer_id, Membership.since)
        .outerjoin(
            SegmentEntry,
            and_(
                SegmentEntry.shop_id == Membership.shop_id,
                SegmentEntry.segment_id == Membership.segment_id,
                SegmentEntry.customer_id == Membership.customer_id,
                SegmentEntry.entered_at == Membership.since,
            ),
        )
        .where(
            Membership.shop_id == shop_id,
            Membership.segment_id.in_(handles),
            SegmentEntry.customer_id.is_(None),
        )
    ).all()
    session.add_all(
        SegmentEntry(
            shop_id=shop_id,
            segment_id=segment_id,
            customer_id=customer_id,
            entered_at=since,
            held_out=held_out(cfg, handles[segment_id], customer_id),
        )
        for segment_id, customer_id, since in new
    )
    return len(new)


@jobs.task("actions.record_entries", lock="entries:{shop_id}")
def record_entries(ctx: jobs.Context, shop_id: int) -> int:
    """Task (after a full recompute): record who entered a measured segment, and tag the
    segments a discount leaves out (a new hold-out's segment is created by the recompute)."""
    with transaction(ctx.sessions) as session:
        recorded = record(session, shop_id)
        retag = discounts.tag_exclusions(session, shop_id)
    if retag:
        ctx.enqueue("tags.sync", shop_id=shop_id, customer_ids=None)
    return recorded


def tier_codes(session: Session, shop_id: int, cfg: ShopConfig) -> dict[str, list[str]]:
    """Per lapsed tier handle, the code Goldpan wrote for it (none if never switched on)."""
    rows = session.scalars(select(WinBackDiscount).where(WinBackDiscount.shop_id == shop_id))
    codes: dict[str, list[str]] = {
        lapsed_handle(t): [] for t in range(1, len(cfg.lapsed_tiers) + 1)
    }
    for row in rows:
        if row.code and lapsed_handle(row.tier) in codes:
            codes[lapsed_handle(row.tier)].append(row.code)
    return codes


def load_report(session: Session, shop_id: int, as_of: dt.date) -> dict[str, Any]:
    """The results of the shop's measured segments as of ``as_of``."""
    rows = session.execute(
        select(
            Segment.handle, SegmentEntry.customer_id, SegmentEntry.entered_at, SegmentEntry.held_out
        )
        .join(Segment, Segment.id == SegmentEntry.segment_id)
        .where(SegmentEntry.shop_id == shop_id)
    ).all()
    ds = loader.load(session, shop_id, sorted({int(r[1]) for r in rows}))
    index = {int(c): i for i, c in enumerate(ds.customer_ids)}
    found = [
        results.Entry(handle, index[int(cid)], day_number(entered.date()), bool(held))
        for handle, cid, entered, held in rows
        if int(cid) in index
    ]
    shop = session.get(Shop, shop_id)
    cfg = shop_config(shop) if shop is not None else ShopConfig()
    report = results.report(ds, found, tier_codes(session, shop_id, cfg), day_number(as_of))
    report["names"] = dict(
        session.execute(
            select(Segment.handle, Segment.name).where(
                Segment.shop_id == shop_id, Segment.handle.in_(measured(cfg))
            )
        ).all()
    )
    report["currency"] = shop.currency if shop is not None else None
    return report
