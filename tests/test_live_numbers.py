"""Numbers that stay correct: the members' Orders / Spent columns follow each order, through
the incremental recompute as well as the full one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from shopify_app import jobs
from shopify_app.db.models import Customer
from shopify_app.db.types import utcnow
from shopify_app.segments import recompute
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
