"""Entries recorded from real recomputes (SQLite) and the results loaded from them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from shopify_app import jobs
from shopify_app.actions import entries
from shopify_app.actions.holdout import held_out
from shopify_app.db.models import SegmentEntry, Shop, WinBackDiscount
from shopify_app.segments import recompute
from shopify_app.segments.config import ShopConfig
from tests.test_segments_recompute import TODAY, add_order, customers_with_orders


def _entries(ctx: jobs.Context, shop_id: int) -> list[SegmentEntry]:
    with ctx.sessions() as session:
        return list(session.scalars(select(SegmentEntry).where(SegmentEntry.shop_id == shop_id)))


def test_entries_are_recorded_once_with_the_split_and_feed_the_results(
    ctx: jobs.Context, make_shop: Any
) -> None:
    shop = make_shop()
    with ctx.sessions.begin() as session:
        session.get(Shop, shop.id).settings = {"holdouts": {"lapsed-tier-1": 0.5}}  # type: ignore[union-attr]
    lapsed = customers_with_orders(ctx, shop.id, 12, [200, 70])
    recompute.recompute_shop_now(ctx, shop.id)
    assert jobs.run_now(ctx, "actions.record_entries", shop_id=shop.id) == 12
    assert jobs.run_now(ctx, "actions.record_entries", shop_id=shop.id) == 0  # once per entry
    cfg = ShopConfig.from_settings({"holdouts": {"lapsed-tier-1": 0.5}})
    found = _entries(ctx, shop.id)
    assert sorted(e.customer_id for e in found) == sorted(lapsed)
    assert [e.held_out for e in found] == [
        held_out(cfg, "lapsed-tier-1", e.customer_id) for e in found
    ]
    assert 0 < sum(e.held_out for e in found) < 12

    back = next(e.customer_id for e in found if not e.held_out)
    with ctx.sessions.begin() as session:
        session.add(WinBackDiscount(shop_id=shop.id, tier=1, enabled=True, code="COMEBACK10-ABCD"))
        add_order(session, shop.id, back, 0, 25.0, [], discount_codes=["COMEBACK10-ABCD"])
    recompute.recompute_shop_now(ctx, shop.id)  # the buyer leaves the tier; the entry stays
    with ctx.sessions() as session:
        report = entries.load_report(session, shop.id, TODAY.date())
    (tier_1, tier_2) = report["tiers"]
    assert tier_1["segment"] == "lapsed-tier-1" and tier_1["codes"] == ["COMEBACK10-ABCD"]
    assert (tier_1["redemptions"], tier_1["redemption_revenue"]) == (1, 25.0)
    assert (tier_1["entered"], tier_1["recovered"], tier_1["recovered_revenue"]) == (12, 1, 25.0)
    assert tier_2["segment"] == "lapsed-tier-2" and tier_2["entered"] == 0
    (cohort,) = report["cohorts"]
    assert cohort["open"] is True
    treated, control = cohort["treated"], cohort["held_out"]
    assert treated["customers"] + control["customers"] == 12
    assert (treated["repurchased"], control["repurchased"]) == (1, 0)

    with ctx.sessions.begin() as session:
        recompute.forget_customers(session.connection(), shop.id, [back])
    assert back not in {e.customer_id for e in _entries(ctx, shop.id)}
