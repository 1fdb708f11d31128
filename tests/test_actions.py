"""The action step end to end against the Shopify sandbox on loopback: win-back discounts per
lapsed tier and scores as customer metafields, on a shop synced and recomputed for real."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete, select

from shopify_app.actions import discounts, scores
from shopify_app.db.models import AuditEntry, ScoreDigest, Segment, Shop
from shopify_app.errors import InputError
from shopify_app.segments import library, loader
from shopify_app.segments.recompute import cached_stats, recompute_shop_now, shop_config
from shopify_app.sync import bulk
from tests.fixtures_sync import *  # noqa: F403
from tests.fixtures_sync import SyncEnv


@pytest.fixture
def env(make_sync_env: Callable[..., SyncEnv]) -> SyncEnv:
    """A shop synced from the sandbox and recomputed: its lapsed tiers exist as segments."""
    synced = make_sync_env()
    bulk.initial(synced.ctx, synced.shop.id, http=synced.http, poll_interval=0.01)
    recompute_shop_now(synced.ctx, synced.shop.id)
    return synced


def _tag_sync(env: SyncEnv, handle: str) -> Segment:
    with env.ctx.sessions.begin() as session:
        segment = session.scalars(
            select(Segment).where(Segment.shop_id == env.shop.id, Segment.handle == handle)
        ).one()
        segment.tag_sync = True
        session.flush()
        session.expunge(segment)
    return segment


def _set_tiers(env: SyncEnv, tiers: list[dict[str, int]]) -> None:
    with env.ctx.sessions.begin() as session:
        shop = session.get(Shop, env.shop.id)
        assert shop is not None
        shop.settings = {**(shop.settings or {}), "lapsed_tiers": tiers}


def _shopify_discounts(env: SyncEnv) -> list[Any]:
    with env.store.lock:
        return list(env.store.discounts.values())


def test_tier_discount_created_updated_and_deactivated(env: SyncEnv) -> None:
    with pytest.raises(InputError):  # its native segment would hold nobody without tag sync
        discounts.set_enabled(env.ctx, env.shop.id, 1, True)
    _tag_sync(env, "lapsed-tier-1")
    discounts.set_enabled(env.ctx, env.shop.id, 1, True)
    assert ("actions.sync_discounts", {"shop_id": env.shop.id}) in env.ctx.enqueued
    client = env.client()

    assert discounts.sync(env.ctx, env.shop.id, client=client) == {1: "active"}
    [discount] = _shopify_discounts(env)
    with env.ctx.sessions() as session:
        segment = session.scalars(
            select(Segment).where(Segment.shop_id == env.shop.id, Segment.handle == "lapsed-tier-1")
        ).one()
        shop = session.get(Shop, env.shop.id)
        assert shop is not None
        percent = shop_config(shop).lapsed_tiers[0].discount_percent
    # Its own segment: the tier's tag without the tier's hold-out or the reminder segment.
    assert len(discount.segment_ids) == 1
    assert segment.native_segment_id != f"gid://shopify/Segment/{discount.segment_ids[0]}"
    with env.store.lock:
        own = env.store.segments[discount.segment_ids[0]]
    assert own.name == f"Goldpan win-back: {segment.name}"
    assert own.query == (
        "customer_tags CONTAINS 'goldpan-lapsed-tier-1'"
        " AND customer_tags NOT CONTAINS 'goldpan-holdout-lapsed-tier-1'"
        " AND customer_tags NOT CONTAINS 'goldpan-lapsed-reminder'"
    )
    with env.ctx.sessions() as session:
        reminder = session.scalars(
            select(Segment).where(
                Segment.shop_id == env.shop.id, Segment.handle == "lapsed-reminder"
            )
        ).one()
    assert reminder.tag_sync is True  # switched on with the discount: its tag is left out
    assert discount.percentage == pytest.approx(percent / 100)
    assert discount.code.startswith(f"COMEBACK{percent}-")
    assert discount.applies_once_per_customer is True
    assert discount.ends_at is not None and discount.status(discount.created_at) == "ACTIVE"
    first_code = discount.code

    # Nothing changed: nothing is written.
    calls = len(env.http.calls)
    assert discounts.sync(env.ctx, env.shop.id, client=client) == {1: "active"}
    assert not [c for c in env.http.calls[calls:] if c.operation.startswith("Discount")]

    # The merchant changes tier 1's percentage: the same discount is updated, code kept.
    _set_tiers(
        env, [{"days": 60, "discount_percent": percent + 5}, {"days": 90, "discount_percent": 25}]
    )
    discounts.sync(env.ctx, env.shop.id, client=client)
    [updated] = _shopify_discounts(env)
    assert (updated.id, updated.code) == (discount.id, first_code)
    assert updated.percentage == pytest.approx((percent + 5) / 100)

    # Off: deactivated (it ends now and reads EXPIRED), not deleted.
    discounts.set_enabled(env.ctx, env.shop.id, 1, False)
    assert discounts.sync(env.ctx, env.shop.id, client=client) == {1: "ended"}
    [ended] = _shopify_discounts(env)
    assert ended.status(ended.updated_at) == "EXPIRED"
    with env.ctx.sessions() as session:
        actions = session.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.shop_id == env.shop.id, AuditEntry.action.like("discounts.%"))
            .order_by(AuditEntry.id)
        ).all()
    assert [a for a in actions if a != "discounts.enabled" and a != "discounts.disabled"] == [
        "discounts.segment_create",
        "discounts.create",
        "discounts.segment_update",  # the quiet sync: the segment is rewritten, not the discount
        "discounts.segment_update",
        "discounts.update",
        "discounts.deactivate",
    ]
    with env.ctx.sessions() as session:
        [status] = [t for t in discounts.status(session, env.shop.id) if t["tier"] == 1]
    assert (status["code"], status["status"], status["enabled"]) == (first_code, "ended", False)


def _expected_scores(env: SyncEnv) -> dict[int, dict[str, str]]:
    """What the engine says, computed here independently of what was written."""
    with env.ctx.sessions() as session:
        shop = session.get(Shop, env.shop.id)
        assert shop is not None
        ds = loader.load(session, env.shop.id)
        ev = library.evaluate(ds, shop_config(shop), library.today(), stats=cached_stats(shop))
    return dict(scores.score_values(ev))


def _shopify_scores(env: SyncEnv) -> dict[int, dict[str, str]]:
    prefix = f"{scores.NAMESPACE}."
    with env.store.lock:
        return {
            c.id: {k.removeprefix(prefix): m.value for k, m in c.metafields.items()}
            for c in env.store.customers.values()
            if c.metafields
        }


def _written(values: dict[int, dict[str, str]]) -> dict[int, dict[str, str]]:
    return {c: {k: v for k, v in row.items() if v != ""} for c, row in values.items()}


def _metafield_calls(env: SyncEnv, since: int = 0) -> list[Any]:
    return [c for c in env.http.calls[since:] if c.operation == "MetafieldsSet"]


def test_scores_become_metafields_and_a_quiet_day_writes_nothing(env: SyncEnv) -> None:
    client = env.client()
    assert scores.write_scores_now(env.ctx, env.shop.id, client=client).customers == 0  # off
    scores.set_enabled(env.ctx, env.shop.id, True)
    report = scores.write_scores_now(env.ctx, env.shop.id, client=client)
    expected = _expected_scores(env)
    assert expected and report.customers == len(expected) and not report.errors
    assert _shopify_scores(env) == _written(expected)
    with env.store.lock:
        definitions = list(env.store.metafield_definitions.values())
    assert {d.key for d in definitions} == {s.key for s in scores.SCORES}
    assert all(d.owner_type == "CUSTOMER" and d.admin_filterable for d in definitions)
    calls = _metafield_calls(env)
    assert all(len(c.variables["metafields"]) <= scores.MAX_PER_CALL for c in calls)

    # A second run on unchanged data sends nothing (not even the definitions again).
    before = len(env.http.calls)
    again = scores.write_scores_now(env.ctx, env.shop.id, client=client)
    assert (again.customers, again.unchanged) == (0, len(expected))
    assert env.http.calls[before:] == []

    # A customer whose stored digest is gone (say their scores moved) is written again, alone.
    chosen = min(expected)
    with env.ctx.sessions.begin() as session:
        session.execute(
            delete(ScoreDigest).where(
                ScoreDigest.shop_id == env.shop.id, ScoreDigest.customer_id == chosen
            )
        )
    third = scores.write_scores_now(env.ctx, env.shop.id, client=client)
    assert third.customers == 1
    [call] = _metafield_calls(env, before)
    assert {m["ownerId"] for m in call.variables["metafields"]} == {
        f"gid://shopify/Customer/{chosen}"
    }


def test_many_changed_scores_go_out_as_one_bulk_mutation(
    env: SyncEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scores, "BULK_THRESHOLD", 3)
    monkeypatch.setattr(scores, "BULK_POLL_SECONDS", 0.01)
    scores.set_enabled(env.ctx, env.shop.id, True)
    report = scores.write_scores_now(env.ctx, env.shop.id, client=env.client())
    expected = _expected_scores(env)
    assert len(report.bulk_operations) == 1 and report.customers == len(expected) > 3
    assert _metafield_calls(env) == []
    assert _shopify_scores(env) == _written(expected)
    assert scores.write_scores_now(env.ctx, env.shop.id, client=env.client()).customers == 0
