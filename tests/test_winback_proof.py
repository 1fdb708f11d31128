"""Proof that a win-back worked, end to end against the Shopify sandbox on loopback.

A synced shop keeps a hold-out on its 60-day tier and switches that tier's discount on: the
discount's segment (as the sandbox evaluates it) holds the tier's treated customers and none
of its hold-out or reminder customers; a lapsed customer who orders with the code shows as a
redemption and a recovered customer in the results the page reads.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from decimal import Decimal

import pytest
import requests
from sqlalchemy import select

from goldpan_sandbox import control
from goldpan_sandbox.store import Customer, LineItem, Order, Store
from shopify_app import jobs
from shopify_app.actions import discounts, entries
from shopify_app.actions.holdout import held_out
from shopify_app.db.models import Membership, SegmentEntry, Shop
from shopify_app.db.models import Segment as AppSegment
from shopify_app.segments import library, settings_change
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.recompute import recompute_shop_now
from shopify_app.sync import bulk, reconcile
from tests.fixtures_sync import *  # noqa: F403
from tests.fixtures_sync import SyncEnv


def _members(env: SyncEnv, handle: str) -> set[int]:
    with env.ctx.sessions() as session:
        return set(
            session.scalars(
                select(Membership.customer_id)
                .join(AppSegment, AppSegment.id == Membership.segment_id)
                .where(AppSegment.shop_id == env.shop.id, AppSegment.handle == handle)
            )
        )


def _switch_on(env: SyncEnv, handle: str) -> None:
    with env.ctx.sessions.begin() as session:
        segment = session.scalars(
            select(AppSegment).where(AppSegment.shop_id == env.shop.id, AppSegment.handle == handle)
        ).one()
        segment.tag_sync = True


def lapsed_store(domain: str) -> Store:
    """40 customers whose one order was 70 days ago (the 60-day tier), and 4 regulars who
    order every 60 days, the last 70 days ago (the same tier, but a reminder, no discount)."""
    store = Store(domain, name="Lapsed Linen", currency="USD")
    now = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    ids = itertools.count(900_000)  # clear of the ids the sandbox gives new objects
    for number in range(1, 45):
        store.add_customer(
            Customer(
                id=number,
                first_name=None,
                last_name=None,
                email=f"c{number}@example.com",
                phone=None,
                created_at=now,
                updated_at=now,
            ),
            notify=False,
        )
        ago = [70] if number <= 40 else [70, 130, 190, 250]
        for days in ago:
            placed = now - dt.timedelta(days=days)
            store.add_order(
                Order(
                    id=next(ids),
                    name=f"#{next(ids)}",
                    customer_id=number,
                    email=None,
                    created_at=placed,
                    processed_at=placed,
                    updated_at=placed,
                    currency="USD",
                    line_items=[LineItem(next(ids), None, None, None, "Towel", 1, Decimal("20"))],
                ),
                notify=False,
            )
    return store


@pytest.fixture
def env(make_sync_env: Callable[..., SyncEnv]) -> SyncEnv:
    """A synced shop keeping a half hold-out on its 60-day tier, recomputed with it."""
    synced = make_sync_env(lapsed_store)
    bulk.initial(synced.ctx, synced.shop.id, http=synced.http, poll_interval=0.01)
    with synced.ctx.sessions.begin() as session:
        shop = session.get(Shop, synced.shop.id)
        assert shop is not None
        shop.settings = {**(shop.settings or {}), "holdouts": {"lapsed-tier-1": 0.5}}
    recompute_shop_now(synced.ctx, synced.shop.id)
    return synced


def test_discount_segment_leaves_out_the_holdout_and_a_redemption_is_a_recovery(
    env: SyncEnv,
) -> None:
    tier = _members(env, "lapsed-tier-1")
    held = _members(env, "holdout-lapsed-tier-1")
    reminder = _members(env, "lapsed-reminder")
    assert held and held < tier and tier - held - reminder  # both groups are there

    _switch_on(env, "lapsed-tier-1")
    discounts.set_enabled(env.ctx, env.shop.id, 1, True)
    jobs.run_now(env.ctx, "tags.sync", shop_id=env.shop.id)
    assert discounts.sync(env.ctx, env.shop.id, client=env.client()) == {1: "active"}
    with env.store.lock:
        [discount] = env.store.discounts.values()
    members = requests.get(
        f"{env.sandbox.base_url}/_sandbox/shops/{env.store.domain}"
        f"/segments/{discount.segment_ids[0]}/members",
        timeout=10,
    ).json()["customers"]
    assert set(members) == tier - held - reminder
    assert jobs.run_now(env.ctx, "actions.record_entries", shop_id=env.shop.id) >= len(tier)

    # A treated lapsed customer comes back with the code; the order reaches the app.
    back = min(set(members))
    control.place_order(
        env.sandbox,
        env.store.domain,
        {"customer_id": back, "discount_codes": [discount.code], "line_items": [{"price": "30"}]},
    )
    reconcile.reconcile(env.ctx, env.shop.id, http=env.http)
    with env.ctx.sessions() as session:
        report = entries.load_report(session, env.shop.id, library.today())
        was_held = session.scalar(
            select(SegmentEntry.held_out).where(
                SegmentEntry.shop_id == env.shop.id, SegmentEntry.customer_id == back
            )
        )
    assert was_held is False
    tier_1 = next(t for t in report["tiers"] if t["segment"] == "lapsed-tier-1")
    assert tier_1["codes"] == [discount.code]
    # $30 of items less the tier's 10%, which checkout took off.
    assert (tier_1["redemptions"], tier_1["redemption_revenue"]) == (1, 27.0)
    assert (tier_1["recovered"], tier_1["recovered_revenue"]) == (1, 27.0)
    [cohort] = [c for c in report["cohorts"] if c["segment"] == "lapsed-tier-1"]
    assert cohort["treated"]["repurchased"] == 1 and cohort["held_out"]["repurchased"] == 0
    assert cohort["held_out"]["customers"] == len(held)


def test_sandbox_evaluates_tag_segments_and_refuses_other_queries() -> None:
    store = Store("eval.myshopify.com")
    for number, tags in ((1, ["A", "hold"]), (2, ["a"]), (3, ["b"])):
        store.add_customer(
            Customer(number, None, None, None, None, None, None, tags=tags), notify=False
        )
    both = store.add_segment(
        "s", "customer_tags CONTAINS 'a' AND customer_tags NOT CONTAINS 'HOLD'"
    )
    assert store.segment_members(both.id) == [2]
    other = store.add_segment("o", "amount_spent > 10")
    with pytest.raises(NotImplementedError):
        store.segment_members(other.id)


def test_keeping_a_new_holdout_on_a_discounted_tier_previews_its_tags(
    make_sync_env: Callable[..., SyncEnv],
) -> None:
    env = make_sync_env(lapsed_store)
    bulk.initial(env.ctx, env.shop.id, http=env.http, poll_interval=0.01)
    recompute_shop_now(env.ctx, env.shop.id)
    _switch_on(env, "lapsed-tier-1")
    discounts.set_enabled(env.ctx, env.shop.id, 1, True)

    change = settings_change.prepare(env.ctx, env.shop.id, {"holdouts": {"lapsed-tier-1": 0.5}})
    cfg = ShopConfig.from_settings({"holdouts": {"lapsed-tier-1": 0.5}})
    held = {c for c in _members(env, "lapsed-tier-1") if held_out(cfg, "lapsed-tier-1", c)}
    assert held and change.effect.moves
    [row] = [r for r in change.preview()["tags"] if r["tag"] == "goldpan-holdout-lapsed-tier-1"]
    assert (row["added"], row["removed"]) == (len(held), 0)
