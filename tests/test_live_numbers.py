"""Numbers that stay correct: the members' Orders / Spent columns follow each order, through
the incremental recompute as well as the full one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shopify_app import jobs
from shopify_app.db.models import Customer, Membership, Segment
from shopify_app.db.types import utcnow
from shopify_app.segments import recompute
from shopify_app.tagging import ledger
from tests.fixtures_api import ApiClient, seed_shop, serving
from tests.fixtures_auth import session_token
from tests.test_segments_recompute import add_customer, add_order


def figures(ctx: jobs.Context, shop_id: int) -> dict[int, tuple[int, float]]:
    with ctx.sessions() as session:
        rows = session.execute(
            select(Customer.id, Customer.number_of_orders, Customer.amount_spent).where(
                Customer.shop_id == shop_id
            )
        )
        return {cid: (n, float(v)) for cid, n, v in rows}


def test_full_recompute_stores_the_engines_orders_and_spend(
    ctx: jobs.Context, make_shop: Any
) -> None:
    shop = make_shop()
    with ctx.sessions.begin() as s:
        # Shopify's counters from the last sync count the cancelled order too.
        kept = add_customer(s, shop.id, "kept@gmail.com", number_of_orders=3, amount_spent=80.0)
        add_order(s, shop.id, kept, 10, 30.0, [])
        add_order(s, shop.id, kept, 20, 25.5, [])
        add_order(s, shop.id, kept, 5, 24.5, [], cancelled_at=utcnow())
        idle = add_customer(s, shop.id, "idle@gmail.com")
    recompute.recompute_shop_now(ctx, shop.id)
    assert figures(ctx, shop.id) == {kept: (2, 55.5), idle: (0, 0.0)}


def test_an_order_moves_the_new_customers_figures_without_a_full_recompute(
    ctx: jobs.Context, make_shop: Any
) -> None:
    shop = make_shop()
    with ctx.sessions.begin() as s:
        old = add_customer(s, shop.id, "old@gmail.com")
        add_order(s, shop.id, old, 30, 10.0, [])
    recompute.recompute_shop_now(ctx, shop.id)
    with ctx.sessions.begin() as s:
        # As an order webhook leaves it: the customer row carries no counters of its own.
        new = add_customer(s, shop.id, "new@gmail.com")
        add_order(s, shop.id, new, 0, 456.0, [("Linen Dinner Napkins", 12)])
        add_order(s, shop.id, old, 1, 15.25, [])
    assert recompute.recompute_customers_now(ctx, shop.id, [new, old]) is not None
    assert figures(ctx, shop.id) == {old: (2, 25.25), new: (1, 456.0)}
    assert recompute.recompute_customers_now(ctx, shop.id, [new]) == set()
    assert figures(ctx, shop.id)[new] == (1, 456.0)


@pytest.fixture
def server(ctx: jobs.Context) -> Iterator[str]:
    with serving(ctx) as url:
        yield url


def test_an_open_page_polls_a_version_that_moves_with_each_change(
    server: str, ctx: jobs.Context, make_shop: Any
) -> None:
    shop = make_shop()
    with ctx.sessions.begin() as s:
        old = add_customer(s, shop.id, "old@gmail.com")
        add_order(s, shop.id, old, 30, 10.0, [])

    def poll(etag: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {session_token(shop.domain)}"}
        if etag:
            headers["If-None-Match"] = etag
        return requests.get(f"{server}/api/version", headers=headers, timeout=30)

    first = poll()
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    etag = first.headers["ETag"]
    assert poll(etag).status_code == 304
    recompute.recompute_shop_now(ctx, shop.id)
    after_full = poll(etag)
    assert after_full.status_code == 200 and after_full.headers["ETag"] != etag
    etag = after_full.headers["ETag"]
    # Re-evaluating an unchanged customer writes nothing: open pages are not woken.
    assert recompute.recompute_customers_now(ctx, shop.id, [old]) == set()
    assert poll(etag).status_code == 304
    with ctx.sessions.begin() as s:
        add_order(s, shop.id, old, 1, 5.0, [])
    recompute.recompute_customers_now(ctx, shop.id, [old])
    moved = poll(etag)
    assert moved.status_code == 200 and moved.json()["version"] > after_full.json()["version"]
    etag = moved.headers["ETag"]
    # Tags Goldpan writes move tag sync's progress on the page.
    with ctx.sessions.begin() as s:
        ledger.record(s, shop.id, added=[(old, "goldpan-repeat-customers")])
    assert poll(etag).status_code == 200


def test_tag_sync_reports_how_many_members_carry_the_tag(
    server: str, make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    shop = make_shop()
    ids = seed_shop(sessions, shop.id, customers=60, seed=3, history=False)
    client = ApiClient(server, shop.domain)
    vip = ids["vip"]
    with sessions.begin() as s:
        for seg in s.scalars(select(Segment).where(Segment.shop_id == shop.id)):
            seg.tag_sync = False
    assert client.get(f"/segments/{vip}").json()["tag_sync"]["written"] is None
    with sessions.begin() as s:
        seg = s.get(Segment, vip)
        assert seg is not None
        seg.tag_sync = True
        members = s.scalars(
            select(Membership.customer_id).where(Membership.segment_id == vip)
        ).all()
    assert len(members) >= 3
    detail = client.get(f"/segments/{vip}").json()
    assert detail["tag_sync"]["written"] == 0 and detail["members"] == len(members)
    with sessions.begin() as s:
        # Two members tagged (Shopify compares tags case-insensitively), one non-member too.
        ledger.record(
            s,
            shop.id,
            added=[
                (members[0], "goldpan-vip"),
                (members[1], "Goldpan-VIP"),
                (members[2], "goldpan-repeat-customers"),
                (999_999_999, "goldpan-vip"),
            ],
        )
    assert client.get(f"/segments/{vip}").json()["tag_sync"]["written"] == 2
    listed = {row["id"]: row for row in client.get("/segments").json()["segments"]}
    assert listed[vip]["tag_sync"]["written"] == 2
    assert all(row["tag_sync"]["written"] is None for sid, row in listed.items() if sid != vip)
