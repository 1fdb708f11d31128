"""Full and incremental recompute against the real database (SQLite, or PostgreSQL in CI)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import numpy as np
import pytest
from huey import MemoryHuey
from sqlalchemy import select

from shopify_app import jobs
from shopify_app.db.models import (
    Customer,
    FlowEvent,
    FlowWorkflow,
    LineItem,
    Membership,
    MetaConnection,
    Order,
    Segment,
    SegmentHistory,
    Shop,
    ShopMetrics,
)
from shopify_app.segments import dataset, library, loader, recompute
from shopify_app.segments.library import reasons
from shopify_app.states import FlowEventStatus, FlowTrigger

_ids = itertools.count(10_000)
TODAY = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def ago(days: int) -> dt.datetime:
    return TODAY - dt.timedelta(days=days)


def add_customer(session: Any, shop_id: int, email: str, **fields: Any) -> int:
    cid = next(_ids)
    session.add(
        Customer(shop_id=shop_id, id=cid, email=email, email_marketing_state="SUBSCRIBED", **fields)
    )
    return cid


def add_order(
    session: Any,
    shop_id: int,
    customer_id: int,
    days_ago: int,
    total: float,
    lines: list[tuple[str, int]],
    **fields: Any,
) -> int:
    oid = next(_ids)
    when = ago(days_ago)
    session.add(
        Order(
            shop_id=shop_id,
            id=oid,
            customer_id=customer_id,
            created_at=when,
            processed_at=when,
            total=total,
            **fields,
        )
    )
    for title, qty in lines:
        session.add(
            LineItem(
                shop_id=shop_id,
                id=next(_ids),
                order_id=oid,
                product_id=abs(hash(title)) % 10**9,
                title=title,
                quantity=qty,
                amount=total,
            )
        )
    return oid


@pytest.fixture
def queued_ctx(ctx: jobs.Context) -> jobs.Context:
    """A context whose follow-up tasks are queued (not run) so they can be inspected."""
    jobs.Runtime(ctx, MemoryHuey("segments-test", immediate=False))
    return ctx


def customers_with_orders(
    ctx: jobs.Context, shop_id: int, count: int, days: list[int]
) -> list[int]:
    """``count`` customers (a@, b@, ...) with one 10.00 order on each of ``days`` (days ago)."""
    with ctx.sessions.begin() as s:
        ids = [add_customer(s, shop_id, f"{chr(97 + k)}@gmail.com") for k in range(count)]
        for cid in ids:
            for day in days:
                add_order(s, shop_id, cid, day, 10.0, [])
    return ids


def memberships(ctx: jobs.Context, shop_id: int, handle: str) -> dict[int, Membership]:
    with ctx.sessions() as session:
        rows = session.scalars(
            select(Membership)
            .join(Segment, Segment.id == Membership.segment_id)
            .where(Segment.shop_id == shop_id, Segment.handle == handle)
        )
        return {m.customer_id: m for m in rows}


def segment(ctx: jobs.Context, shop_id: int, handle: str) -> Segment:
    with ctx.sessions() as session:
        return session.scalars(
            select(Segment).where(Segment.shop_id == shop_id, Segment.handle == handle)
        ).one()


def test_full_recompute_writes_segments_memberships_history_and_queues_syncs(
    queued_ctx, make_shop
) -> None:  # type: ignore[no-untyped-def]
    ctx = queued_ctx
    shop = make_shop()
    with ctx.sessions.begin() as s:
        alice = add_customer(s, shop.id, "alice@hotellux.com")
        bob = add_customer(s, shop.id, "bob@gmail.com")
        carol = add_customer(s, shop.id, "carol@gmail.com")
        gone = add_customer(s, shop.id, "gone@gmail.com")
        add_order(s, shop.id, alice, 30, 576.0, [("Dinner Napkins", 48)])
        add_order(s, shop.id, bob, 100, 20.0, [("Tea Napkins", 2)])
        for d in (10, 40, 70):
            add_order(s, shop.id, carol, d, 30.0, [("Dinner Napkins", 1)])
        add_order(s, shop.id, gone, 5, 50.0, [("Tea Napkins", 1)], cancelled_at=ago(4))
        add_order(s, shop.id, gone, 6, 50.0, [("Tea Napkins", 1)], test=True)
        add_order(s, shop.id, bob, 3, 999.0, [("Tea Napkins", 100)], test=True)

    counts = jobs.run_now(ctx, "segments.recompute_shop", shop_id=shop.id)
    assert counts["business-buyers"] == 1
    business = memberships(ctx, shop.id, "business-buyers")
    assert set(business) == {alice}
    # Stored structured (the page translates it); English for exports comes from render().
    stored = reasons.Reason.parse(business[alice].reason)
    assert stored is not None and stored.key == "business.order_units"
    assert stored.params["units"] == 48 and stored.params["product"] == "Dinner Napkins"
    assert reasons.render(business[alice].reason).startswith("48 units of Dinner Napkins on ")
    assert set(memberships(ctx, shop.id, "one-time-buyers")) == {alice, bob}
    assert set(memberships(ctx, shop.id, "true-fans")) == {carol}
    assert set(memberships(ctx, shop.id, "lapsed-tier-2")) == {bob}
    everyone = set().union(*(memberships(ctx, shop.id, h) for h in counts))
    assert gone not in everyone  # only cancelled and test orders

    seg = segment(ctx, shop.id, "business-buyers")
    assert seg.member_count == 1 and seg.computed_at is not None
    assert seg.tag == "goldpan-business-buyers" and seg.kind == "builtin"
    assert segment(ctx, shop.id, "rfm-champions").kind == "rfm"
    with ctx.sessions() as session:
        history = session.scalars(
            select(SegmentHistory).where(SegmentHistory.segment_id == seg.id)
        ).all()
        assert [(h.members, h.revenue) for h in history] == [(1, 576.0)]
        stored_shop = session.get(Shop, shop.id)
        assert stored_shop is not None and stored_shop.segment_stats is not None
        assert stored_shop.segment_stats["model_status"] == "fallback"
        assert "segment_stats" not in stored_shop.settings  # not parsed with every shop read

    assert ctx.runtime is not None
    queued = [t.name for t in ctx.runtime.huey.pending()]
    for name in ("actions.record_entries", "tags.sync", "meta.sync_shop"):
        assert (name in queued) == (name in jobs._REGISTRY)


def test_recompute_diffs_memberships_and_keeps_since(queued_ctx, make_shop) -> None:  # type: ignore[no-untyped-def]
    ctx = queued_ctx
    shop = make_shop()
    a, b = customers_with_orders(ctx, shop.id, 2, [20])
    recompute.recompute_shop_now(ctx, shop.id)
    before = memberships(ctx, shop.id, "one-time-buyers")
    assert set(before) == {a, b}

    with ctx.sessions.begin() as s:
        add_order(s, shop.id, b, 2, 10.0, [])
        s.get(Segment, segment(ctx, shop.id, "vip").id).enabled = False  # type: ignore[union-attr]
    recompute.recompute_shop_now(ctx, shop.id)
    after = memberships(ctx, shop.id, "one-time-buyers")
    assert set(after) == {a}
    assert after[a].since == before[a].since
    assert set(memberships(ctx, shop.id, "repeat-customers")) == {b}
    assert memberships(ctx, shop.id, "vip") == {}
    assert segment(ctx, shop.id, "vip").member_count == 0


def test_incremental_recompute_of_one_customer(queued_ctx, make_shop) -> None:  # type: ignore[no-untyped-def]
    ctx = queued_ctx
    shop = make_shop()
    a, b = customers_with_orders(ctx, shop.id, 2, [20])

    # No full recompute yet: the incremental task falls back to a full one.
    jobs.run_now(ctx, "segments.recompute_customer", shop_id=shop.id, customer_id=a)
    assert ctx.runtime is not None
    assert "segments.recompute_shop" in [t.name for t in ctx.runtime.huey.pending()]
    ctx.runtime.huey.flush()
    recompute.recompute_shop_now(ctx, shop.id)
    assert segment(ctx, shop.id, "one-time-buyers").member_count == 2

    with ctx.sessions.begin() as s:
        add_order(s, shop.id, a, 1, 10.0, [("Dinner Napkins", 40)])
    changed = jobs.run_now(ctx, "segments.recompute_customer", shop_id=shop.id, customer_id=a)
    assert changed is True
    assert set(memberships(ctx, shop.id, "one-time-buyers")) == {b}
    assert set(memberships(ctx, shop.id, "repeat-customers")) == {a}
    assert set(memberships(ctx, shop.id, "business-buyers")) == {a}
    assert segment(ctx, shop.id, "one-time-buyers").member_count == 1
    assert segment(ctx, shop.id, "repeat-customers").member_count == 1
    pending = [(t.name, t.kwargs) for t in ctx.runtime.huey.pending()]
    if "tags.sync" in jobs._REGISTRY:
        assert ("tags.sync", {"shop_id": shop.id, "customer_ids": [a]}) in pending

    # Unchanged customer: nothing to write.
    assert recompute.recompute_customer_now(ctx, shop.id, b) is False


def test_incremental_recompute_sees_settings_and_yardsticks_written_since(
    queued_ctx, make_shop
) -> None:  # type: ignore[no-untyped-def]
    """The parsed config and yardsticks are kept between runs: a change to either, written by
    anyone, is what the next run uses."""
    ctx = queued_ctx
    shop = make_shop()
    (a,) = customers_with_orders(ctx, shop.id, 1, [40, 20])
    recompute.recompute_shop_now(ctx, shop.id)
    assert set(memberships(ctx, shop.id, "repeat-customers")) == {a}
    assert recompute.recompute_customer_now(ctx, shop.id, a) is False  # parsed and kept

    with ctx.sessions.begin() as s:
        s.get(Shop, shop.id).settings = {"repeat_min_orders": 3}  # type: ignore[union-attr]
    assert recompute.recompute_customer_now(ctx, shop.id, a) is True
    assert set(memberships(ctx, shop.id, "repeat-customers")) == set()

    with ctx.sessions.begin() as s:
        row = s.get(Shop, shop.id)
        assert row is not None and row.segment_stats is not None
        row.segment_stats = {**row.segment_stats, "backtest": None}  # no longer readable
    assert recompute.recompute_customer_now(ctx, shop.id, a) is None  # a full one is due


def test_flow_and_meta_follow_ups_only_for_shops_that_listen(queued_ctx, make_shop) -> None:  # type: ignore[no-untyped-def]
    """A group's recompute queues ``actions.flow_events`` only with an enabled workflow or
    events still owed, and ``meta.sync_customer`` only with a Meta connection: without them
    both tasks do nothing."""
    ctx = queued_ctx
    jobs.load_task_modules()
    shop = make_shop()
    a, b, c = customers_with_orders(ctx, shop.id, 3, [20])
    recompute.recompute_shop_now(ctx, shop.id)

    def queued_after_new_order(cid: int) -> list[tuple[str, dict[str, Any]]]:
        ctx.runtime.huey.flush()
        with ctx.sessions.begin() as s:
            add_order(s, shop.id, cid, 1, 10.0, [])
        assert jobs.run_now(
            ctx, "segments.recompute_customers", shop_id=shop.id, customer_ids=[cid]
        )
        return [(t.name, t.kwargs) for t in ctx.runtime.huey.pending()]

    queued = queued_after_new_order(a)
    assert ("tags.sync", {"shop_id": shop.id, "customer_ids": [a]}) in queued
    assert [name for name, _ in queued if name != "tags.sync"] == []

    now = dt.datetime.now(dt.UTC)
    with ctx.sessions.begin() as s:
        s.add(
            FlowWorkflow(
                shop_id=shop.id,
                trigger=FlowTrigger.ENTERED,
                enabled=True,
                changed_at=now,
                enabled_at=now,
            )
        )
        s.add(MetaConnection(shop_id=shop.id))
    queued = queued_after_new_order(b)
    assert ("actions.flow_events", {"shop_id": shop.id}) in queued
    assert ("meta.sync_customer", {"shop_id": shop.id, "customer_id": b}) in queued

    # A workflow switched off with an event still owed: the task must still run to send it.
    with ctx.sessions.begin() as s:
        s.get(FlowWorkflow, (shop.id, FlowTrigger.ENTERED)).enabled = False
        s.add(
            FlowEvent(
                shop_id=shop.id,
                segment_id=segment(ctx, shop.id, "one-time-buyers").id,
                customer_id=c,
                entered_at=now,
                trigger=FlowTrigger.ENTERED,
                status=FlowEventStatus.PENDING,
            )
        )
    assert ("actions.flow_events", {"shop_id": shop.id}) in queued_after_new_order(c)


def test_daily_queues_every_installed_shop(queued_ctx, make_shop) -> None:  # type: ignore[no-untyped-def]
    ctx = queued_ctx
    shop = make_shop()
    make_shop(access_token=None)
    assert jobs.run_now(ctx, "segments.daily") == 1
    assert ctx.runtime is not None
    queued = [t.kwargs for t in ctx.runtime.huey.pending() if t.name == "segments.recompute_shop"]
    assert queued == [{"shop_id": shop.id}]


def test_empty_shop_and_cached_page_data(queued_ctx, make_shop) -> None:  # type: ignore[no-untyped-def]
    ctx = queued_ctx
    shop = make_shop()
    counts = recompute.recompute_shop_now(ctx, shop.id)
    assert counts["vip"] == 0
    with ctx.sessions.begin() as s:
        a = add_customer(s, shop.id, "a@gmail.com")
        add_order(s, shop.id, a, 3, 10.0, [("Dinner Napkins", 1)])
    recompute.recompute_shop_now(ctx, shop.id)
    with ctx.sessions() as session:
        stored_shop = session.get(Shop, shop.id)
        assert stored_shop is not None
        settings, suggestions = stored_shop.settings, stored_shop.cross_sell_suggestions
        stored = session.get(ShopMetrics, shop.id)
    assert stored is not None and stored.data["headline"]["customers"] == 1
    assert "segment_metrics" not in settings  # metrics live in their own table
    assert "cross_sell_suggestions" not in settings
    assert suggestions == []
    assert set(memberships(ctx, shop.id, "vip")) == {a}


def test_diff_memberships_adds_drops_and_changes_reasons() -> None:
    current = (
        np.array([2, 1, 1, 1, 9], dtype=np.int64),
        np.array([5, 30, 10, 20, 7], dtype=np.int64),
        ["r5", "r30", "r10", "old", "r7"],
    )
    wanted = {
        1: (np.array([40, 10, 20], dtype=np.int64), ["r40", "r10", "new"]),
        2: (np.array([5], dtype=np.int64), ["r5"]),
    }
    diff = recompute.diff_memberships(current, wanted)
    adds = zip(diff.add_segment.tolist(), diff.add_customer.tolist(), diff.add_reason, strict=True)
    assert set(adds) == {(1, 40, "r40")}
    drops = zip(diff.drop_segment.tolist(), diff.drop_customer.tolist(), strict=True)
    assert set(drops) == {(1, 30), (9, 7)}
    changes = zip(
        diff.change_segment.tolist(), diff.change_customer.tolist(), diff.change_reason, strict=True
    )
    assert set(changes) == {(1, 20, "new")}


def test_recompute_rewrites_stale_reasons_and_keys_custom_items(queued_ctx, make_shop) -> None:  # type: ignore[no-untyped-def]
    ctx = queued_ctx
    shop = make_shop()
    with ctx.sessions.begin() as s:
        a = add_customer(s, shop.id, "a@gmail.com")
        oid = add_order(s, shop.id, a, 20, 10.0, [], discount_codes=[{"code": "welcome10 "}])
        s.add(LineItem(shop_id=shop.id, id=next(_ids), order_id=oid, title="Gift Wrap", quantity=2))
    recompute.recompute_shop_now(ctx, shop.id)
    before = memberships(ctx, shop.id, "one-time-buyers")[a]
    with ctx.sessions.begin() as s:
        s.get(Membership, (before.segment_id, a)).reason = "stale"  # type: ignore[union-attr]
    recompute.recompute_shop_now(ctx, shop.id)
    after = memberships(ctx, shop.id, "one-time-buyers")[a]
    assert after.reason == before.reason != "stale"
    assert after.since == before.since
    with ctx.sessions() as session:
        ds = loader.load(session, shop.id)
    key = dataset.product_key_for_title("Gift Wrap")
    assert ds.line_product.tolist() == [key]
    assert ds.product_titles[key] == "Gift Wrap"
    assert ds.order_discount == ["WELCOME10"]


def _orphans(ctx: jobs.Context, shop_id: int) -> list[int]:
    """Customer ids of memberships whose customer row is gone."""
    with ctx.sessions() as session:
        return list(
            session.scalars(
                select(Membership.customer_id)
                .outerjoin(
                    Customer,
                    (Customer.shop_id == Membership.shop_id)
                    & (Customer.id == Membership.customer_id),
                )
                .where(Membership.shop_id == shop_id, Customer.id.is_(None))
            )
        )


def test_deleting_customers_deletes_their_memberships_and_counts_them_out(
    queued_ctx, make_shop
) -> None:  # type: ignore[no-untyped-def]
    """Memberships have no foreign key to customers: every path that deletes a customer
    (customers/delete, a tombstone purged during a sync) deletes their memberships at once and
    keeps the member counts true, without waiting for a recompute."""
    from shopify_app.sync.ingest import write_batch
    from shopify_app.sync.rows import Batch, customer_row
    from shopify_app.sync.tombstones import record_deletion
    from shopify_app.sync.webhooks import apply_webhook

    ctx = queued_ctx
    shop = make_shop()
    a, b, c = customers_with_orders(ctx, shop.id, 3, [100, 70])
    recompute.recompute_shop_now(ctx, shop.id)
    assert set(memberships(ctx, shop.id, "repeat-customers")) == {a, b, c}

    # customers/delete: the customer and their memberships go in one transaction.
    assert apply_webhook(ctx, shop.id, "customers/delete", {"id": a})
    assert set(memberships(ctx, shop.id, "repeat-customers")) == {b, c}
    assert segment(ctx, shop.id, "repeat-customers").member_count == 2
    assert _orphans(ctx, shop.id) == []

    # A tombstone purged while a sync writes customers (the deletion raced an export).
    with ctx.engine.begin() as conn:
        record_deletion(conn, shop.id, "customers", b)
        batch = Batch.empty()
        batch.rows["customers"].append(
            customer_row(shop.id, {"id": f"gid://shopify/Customer/{c}", "email": "c@x.com"})
        )
        write_batch(conn, batch)
    assert _orphans(ctx, shop.id) == []
    assert set(memberships(ctx, shop.id, "repeat-customers")) == {c}
    with ctx.sessions() as session:
        for seg in session.scalars(select(Segment).where(Segment.shop_id == shop.id)):
            stored = session.scalars(
                select(Membership.customer_id).where(Membership.segment_id == seg.id)
            ).all()
            assert seg.member_count == len(stored), seg.handle

    # The next full recompute agrees with what the deletions left.
    recompute.recompute_shop_now(ctx, shop.id)
    assert set(memberships(ctx, shop.id, "repeat-customers")) == {c}
    assert segment(ctx, shop.id, "repeat-customers").member_count == 1


def test_whole_shop_load_matches_the_per_customer_load(ctx, make_shop) -> None:  # type: ignore[no-untyped-def]
    """A whole shop loads by another route on PostgreSQL (binary COPY of the numbers); it must
    give the same dataset as loading the same customers by id, the route incremental recomputes
    take: codes, companies, custom items, cancelled, test and guest orders included."""
    shop = make_shop()
    with ctx.sessions.begin() as s:
        a = add_customer(s, shop.id, "a@hotellux.com")
        b = add_customer(s, shop.id, "b@gmail.com")
        c = add_customer(s, shop.id, "c@gmail.com")
        add_order(s, shop.id, a, 40, 120.5, [("Dinner Napkins", 40), ("Placemats", 2)])
        add_order(s, shop.id, a, 10, 30.25, [("Dinner Napkins", 1)], billing_company="Hotel Lux")
        add_order(s, shop.id, b, 5, 19.99, [], discount_codes=["WELCOME10"])
        oid = add_order(s, shop.id, b, 3, 5.0, [])
        s.add(LineItem(shop_id=shop.id, id=next(_ids), order_id=oid, title="Gift Wrap", quantity=3))
        add_order(s, shop.id, c, 2, 50.0, [("Placemats", 1)], test=True)
        add_order(s, shop.id, c, 1, 60.0, [("Placemats", 1)], cancelled_at=ago(0))
        s.add(Order(shop_id=shop.id, id=next(_ids), customer_id=None, created_at=ago(1),
                    processed_at=ago(1), total=9.0))  # fmt: skip
    with ctx.sessions() as session:
        whole = loader.load(session, shop.id)
        by_id = loader.load(session, shop.id, customer_ids=[a, b, c])
    assert whole.customer_ids.tolist() == by_id.customer_ids.tolist() == sorted([a, b, c])
    for name in ("order_customer", "order_day", "order_total", "order_ids"):
        assert getattr(whole, name).tolist() == getattr(by_id, name).tolist(), name
    assert whole.order_discount == by_id.order_discount == ["", "", "WELCOME10", ""]
    assert whole.order_company == by_id.order_company == [None, "Hotel Lux", None, None]
    assert whole.order_total.tolist() == [120.5, 30.25, 19.99, 5.0]

    def lines(ds: dataset.Dataset) -> list[tuple[int, int, int]]:
        return sorted(
            zip(
                ds.order_ids[ds.line_order].tolist(),
                ds.line_product.tolist(),
                ds.line_quantity.tolist(),
                strict=True,
            )
        )

    assert lines(whole) == lines(by_id)
    assert len(lines(whole)) == 4
    assert whole.product_titles == by_id.product_titles
    assert whole.product_titles[dataset.product_key_for_title("Gift Wrap")] == "Gift Wrap"


def test_reasons_with_quotes_backslashes_and_control_characters_round_trip(
    queued_ctx, make_shop
) -> None:  # type: ignore[no-untyped-def]
    """Memberships are written with COPY on PostgreSQL (text format, its own escaping):
    a company name full of characters that format treats specially comes back as written."""
    ctx = queued_ctx
    shop = make_shop()
    company = 'Ann "B" \\ Co\t\\N\nLtd \\\\ é'
    with ctx.sessions.begin() as s:
        a = add_customer(s, shop.id, "a@gmail.com")
        add_order(s, shop.id, a, 20, 10.0, [], billing_company=company)
    recompute.recompute_shop_now(ctx, shop.id)
    stored = memberships(ctx, shop.id, "business-buyers")[a].reason
    parsed = reasons.Reason.parse(stored)
    assert parsed is not None and parsed.params["company"] == company
    # Changed reasons go through COPY too: the same text is written again unchanged.
    with ctx.sessions.begin() as s:
        s.get(
            Membership, (memberships(ctx, shop.id, "business-buyers")[a].segment_id, a)
        ).reason = "x"  # type: ignore[union-attr]
    recompute.recompute_shop_now(ctx, shop.id)
    assert memberships(ctx, shop.id, "business-buyers")[a].reason == stored


def test_copy_escaping() -> None:
    assert recompute._copy_escaped(['{"a":"b"}', "c"]) == ['{"a":"b"}', "c"]
    assert recompute._copy_escaped(["a\\b", "c"]) == ["a\\\\b", "c"]
    assert recompute._copy_escaped(["a\tb\\", "c\nd\re"]) == ["a\\tb\\\\", "c\\nd\\re"]
    assert recompute._copy_escaped([]) == []


def test_a_customer_deleted_during_a_full_recompute_keeps_no_memberships(
    queued_ctx, make_shop
) -> None:  # type: ignore[no-untyped-def]
    """The full recompute reads, evaluates, then writes: a customers/delete committed in
    between must not leave the deleted customer with the memberships just evaluated."""
    from shopify_app.db.types import utcnow
    from shopify_app.sync.webhooks import apply_webhook

    ctx = queued_ctx
    shop = make_shop()
    a, b = customers_with_orders(ctx, shop.id, 2, [100, 70])
    loaded_at = utcnow()
    with ctx.sessions() as session:
        ev = library.evaluate(loader.load(session, shop.id), recompute.ShopConfig(), TODAY.date())
    assert apply_webhook(ctx, shop.id, "customers/delete", {"id": a})
    with ctx.sessions.begin() as session:
        stored = session.get(Shop, shop.id)
        assert stored is not None
        recompute.write_evaluation(
            session, stored, recompute.ShopConfig(), ev, TODAY.date(), loaded_at=loaded_at
        )
    assert _orphans(ctx, shop.id) == []
    assert set(memberships(ctx, shop.id, "repeat-customers")) == {b}
    assert segment(ctx, shop.id, "repeat-customers").member_count == 1


def _all_memberships(ctx: jobs.Context, shop_id: int) -> dict[tuple[int, int], str | None]:
    with ctx.sessions() as session:
        rows = session.execute(
            select(Membership.segment_id, Membership.customer_id, Membership.reason).where(
                Membership.shop_id == shop_id
            )
        )
        return {(sid, cid): reason for sid, cid, reason in rows}


def _counts_match(ctx: jobs.Context, shop_id: int) -> None:
    members = _all_memberships(ctx, shop_id)
    with ctx.sessions() as session:
        for seg in session.scalars(select(Segment).where(Segment.shop_id == shop_id)):
            assert seg.member_count == sum(1 for sid, _ in members if sid == seg.id), seg.handle


def _by_handle(ctx: jobs.Context, shop_id: int, people: list[int]) -> dict[tuple[str, int], Any]:
    """Memberships as (segment handle, position in ``people``) → reason: comparable across shops."""
    position = {cid: k for k, cid in enumerate(people)}
    with ctx.sessions() as session:
        rows = session.execute(
            select(Segment.handle, Membership.customer_id, Membership.reason)
            .join(Segment, Segment.id == Membership.segment_id)
            .where(Segment.shop_id == shop_id)
        )
        return {(handle, position[cid]): reason for handle, cid, reason in rows}


def test_recomputing_customers_together_matches_one_at_a_time(queued_ctx, make_shop) -> None:  # type: ignore[no-untyped-def]
    ctx = queued_ctx
    shops = []
    for _ in range(2):
        shop = make_shop()
        with ctx.sessions.begin() as s:
            people = [add_customer(s, shop.id, f"p{k}@gmail.com") for k in range(6)]
            for k, cid in enumerate(people):
                add_order(s, shop.id, cid, 30 + k, 10.0 + k, [])
        recompute.recompute_shop_now(ctx, shop.id)
        with ctx.sessions.begin() as s:
            # New orders for some (one becomes a business buyer), none for others.
            add_order(s, shop.id, people[0], 1, 900.0, [("Dinner Napkins", 40)])
            add_order(s, shop.id, people[1], 2, 15.0, [])
            add_order(s, shop.id, people[1], 1, 15.0, [])
            add_order(s, shop.id, people[3], 1, 20.0, [])
        shops.append((shop.id, people))
    (together, people), (alone, others) = shops
    unknown = 999_999_999
    changed = recompute.recompute_customers_now(ctx, together, [*people, people[0], unknown])
    assert changed == {people[0], people[1], people[3]}
    assert recompute.recompute_customers_now(ctx, together, people) == set()  # nothing left
    _counts_match(ctx, together)

    singly = {cid for cid in others if recompute.recompute_customer_now(ctx, alone, cid)}
    assert singly == {others[0], others[1], others[3]}
    assert _by_handle(ctx, together, people) == _by_handle(ctx, alone, others)
    _counts_match(ctx, alone)


def test_recompute_customers_task_queues_one_tag_write(queued_ctx, make_shop) -> None:  # type: ignore[no-untyped-def]
    ctx = queued_ctx
    shop = make_shop()
    a, b, c = customers_with_orders(ctx, shop.id, 3, [20])
    recompute.recompute_shop_now(ctx, shop.id)
    with ctx.sessions.begin() as s:
        add_order(s, shop.id, a, 1, 10.0, [])
        add_order(s, shop.id, b, 1, 10.0, [])
    assert ctx.runtime is not None
    ctx.runtime.huey.flush()
    changed = jobs.run_now(
        ctx, "segments.recompute_customers", shop_id=shop.id, customer_ids=[c, b, a]
    )
    assert changed == sorted([a, b])
    pending = [(t.name, t.kwargs) for t in ctx.runtime.huey.pending()]
    if "tags.sync" in jobs._REGISTRY:
        tag_writes = [kw for name, kw in pending if name == "tags.sync"]
        assert tag_writes == [{"shop_id": shop.id, "customer_ids": sorted([a, b])}]


def test_follow_ups_turn_single_recomputes_into_one(queued_ctx, make_shop) -> None:  # type: ignore[no-untyped-def]
    shop = make_shop()
    follow_ups = jobs.FollowUps(queued_ctx)
    for cid in (5, 3, 5):
        follow_ups.enqueue("segments.recompute_customer", shop_id=shop.id, customer_id=cid)
    assert follow_ups.pending == [
        ("segments.recompute_customers", {"shop_id": shop.id, "customer_ids": [3, 5]})
    ]


def test_concurrent_recomputes_of_the_same_customers_agree(queued_ctx, make_shop) -> None:  # type: ignore[no-untyped-def]
    """Overlapping groups recomputed at once by several threads: no unique-key conflict, and
    memberships and counts end exactly as a full recompute has them."""
    import threading

    ctx = queued_ctx
    shop = make_shop()
    with ctx.sessions.begin() as s:
        people = [add_customer(s, shop.id, f"q{k}@gmail.com") for k in range(8)]
        for cid in people:
            add_order(s, shop.id, cid, 40, 10.0, [])
    recompute.recompute_shop_now(ctx, shop.id)
    with ctx.sessions.begin() as s:
        for cid in people:
            add_order(s, shop.id, cid, 1, 500.0, [("Dinner Napkins", 30)])
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run(group: list[int]) -> None:
        try:
            start.wait()
            recompute.recompute_customers_now(ctx, shop.id, group)
        except BaseException as exc:  # reported below
            errors.append(exc)

    groups = [people, people[::-1], people[:5], people[3:]]
    threads = [threading.Thread(target=run, args=(g,)) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    together = _all_memberships(ctx, shop.id)
    _counts_match(ctx, shop.id)
    # The end state is the one the data calls for: recomputing anyone again changes nothing.
    assert not any(recompute.recompute_customer_now(ctx, shop.id, cid) for cid in people)
    assert _all_memberships(ctx, shop.id) == together
    assert set(memberships(ctx, shop.id, "repeat-customers")) == set(people)


def test_a_full_write_holds_off_customer_writes_of_its_shop_only(ctx, make_shop) -> None:  # type: ignore[no-untyped-def]
    """``db.lock_shop`` (a full recompute's write) excludes ``db.lock_customers`` of the same
    shop, not of another; on SQLite both are no-ops (write transactions are IMMEDIATE)."""
    from sqlalchemy.exc import OperationalError

    from shopify_app import db

    shop, other = make_shop(), make_shop()
    with ctx.engine.connect() as full, ctx.engine.connect() as customer:
        full_tx = full.begin()
        db.lock_shop(full, shop.id)
        postgres = ctx.engine.dialect.name == "postgresql"
        if postgres:
            customer.exec_driver_sql("SET lock_timeout = '200ms'")  # for the session
            customer.commit()
        with customer.begin():
            db.lock_customers(customer, other.id, [7, 2**40 + 3])  # another shop: no wait
        if postgres:
            with pytest.raises(OperationalError, match="lock timeout"), customer.begin():
                db.lock_customers(customer, shop.id, [7])
        full_tx.commit()
        with customer.begin():
            db.lock_customers(customer, shop.id, [7])  # free again once the write commits
