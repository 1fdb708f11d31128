"""The segment view of likely-to-buy and at-risk says how the shop's backtest did: a full
recompute on the real database, then the page's API over real HTTP."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shopify_app.db.models import Customer, Order, Segment, Shop
from shopify_app.jobs import Context
from shopify_app.segments import backtest, recompute
from tests.fixtures_api import ApiClient, serving

_ids = itertools.count(500_000)
TODAY = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def seed(sessions: sessionmaker[Session], shop_id: int, customers: int) -> None:
    """Customers who each order every 10 to 60 days for a while, some still, some gone quiet."""
    rng = np.random.default_rng(21)
    with sessions.begin() as s:
        for i in range(customers):
            cid = next(_ids)
            s.add(Customer(shop_id=shop_id, id=cid, email=f"c{i}@gmail.com"))
            start, gap = int(rng.integers(30, 700)), int(rng.integers(10, 60))
            for k in range(int(rng.integers(1, 12))):
                if start - k * gap < 0:
                    break
                when = TODAY - dt.timedelta(days=start - k * gap)
                total = float(rng.integers(20, 200))
                s.add(
                    Order(
                        shop_id=shop_id,
                        id=next(_ids),
                        customer_id=cid,
                        created_at=when,
                        processed_at=when,
                        total=total,
                    )
                )


def detail(server: str, shop: Shop, sessions: sessionmaker[Session], handle: str) -> Any:
    with sessions() as s:
        seg = s.scalars(
            select(Segment.id).where(Segment.shop_id == shop.id, Segment.handle == handle)
        ).one()
    r = ApiClient(server, shop.domain).get(f"/segments/{seg}")
    assert r.status_code == 200
    return r.json()


def test_likely_to_buy_and_at_risk_show_the_backtest(
    ctx: Context, make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    shop = make_shop()
    seed(sessions, shop.id, 400)
    recompute.recompute_shop_now(ctx, shop.id)
    with sessions() as s:
        stats = recompute.cached_stats(s.get(Shop, shop.id))  # type: ignore[arg-type]
    assert stats is not None and stats.backtest.enough
    bt = stats.backtest
    with serving(ctx) as server:
        likely = detail(server, shop, sessions, "likely-to-buy")
        risk = detail(server, shop, sessions, "at-risk")
        vip = detail(server, shop, sessions, "vip")
    said = likely["prediction"]
    assert said["enough"] and said["ranking"] == stats.ranking == bt.chosen
    assert said["text"] == bt.text
    assert [m["key"] for m in said["messages"]] == ["likely", "ranking"]
    params = said["messages"][0]["params"]
    assert params["size"] == bt.likely_size and params["horizon"] == bt.horizon
    assert params["ordered_share"] == bt.likely_ordered
    calibrated = TODAY.date() - dt.timedelta(days=bt.horizon)
    assert params["calibration_date"] == calibrated.isoformat()
    # The rule's numbers, for the sentence under it.
    assert likely["definition"]["share"] == bt.likely_share
    assert likely["definition"]["silence_limit"] == 3.0
    assert [m["key"] for m in risk["prediction"]["messages"]] == ["at_risk"]
    assert risk["prediction"]["text"].startswith(
        f"Customers we would have called at risk on {calibrated.day} {calibrated:%B} "
        f"{calibrated.year}: {bt.at_risk_size}."
    )
    assert vip["prediction"] is None


def test_a_small_shop_says_not_enough_history_on_the_page(
    ctx: Context, make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    shop = make_shop()
    seed(sessions, shop.id, 12)
    recompute.recompute_shop_now(ctx, shop.id)
    with serving(ctx) as server:
        for handle in ("likely-to-buy", "at-risk"):
            view = detail(server, shop, sessions, handle)
            assert view["members"] == 0
            said = view["prediction"]
            assert not said["enough"] and said["ranking"] is None
            assert [m["key"] for m in said["messages"]] == ["few_customers"]
            assert said["messages"][0]["params"]["needed_customers"] == backtest.MIN_CUSTOMERS
            assert said["text"].startswith("not enough history yet: ")
