"""The analytics API's segment and month-range filter against a real SQLite database over
loopback HTTP: unfiltered is the stored row, a filter is computed by the same engine on the
segment's members and the range's orders, bad input is refused with its field named, and
another shop's segment is not found."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from shopify_app.db.models import Customer, LineItem, Order, Segment, Shop
from shopify_app.jobs import Context
from shopify_app.segments import metrics, recompute
from tests.fixtures_api import ApiClient, seed_shop, serving


@pytest.fixture
def server(ctx: Context) -> Iterator[str]:
    with serving(ctx) as url:
        yield url


@pytest.fixture
def seeded(
    make_shop: Any, sessions: sessionmaker[Session], ctx: Context
) -> tuple[Shop, dict[str, int]]:
    shop = make_shop()
    ids = seed_shop(sessions, shop.id, customers=120, seed=9)
    recompute.recompute_shop_now(ctx, shop.id)
    return shop, ids


def _months_back(n: int) -> str:
    this = metrics.month_number(dt.datetime.now(dt.UTC).date().isoformat()[:7])
    return metrics.month_label(this - n)


def _figures(client: ApiClient, **params: Any) -> dict[str, Any]:
    r = client.get("/analytics", **params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_segment_changes_the_figures_the_way_its_definition_says(
    server: str, seeded, sessions: sessionmaker[Session]
) -> None:
    shop, ids = seeded
    client = ApiClient(server, shop.domain)
    whole = _figures(client)
    assert whole["filter"] == {"segment": None, "from": None, "to": None}
    everyone = whole["metrics"]["headline"]
    repeat = _figures(client, segment=ids["repeat-customers"])
    once = _figures(client, segment=ids["one-time-buyers"])
    assert repeat["filter"]["segment"] == ids["repeat-customers"]
    with sessions() as session:
        count = session.scalar(
            select(Segment.member_count).where(Segment.id == ids["repeat-customers"])
        )
    # Repeat customers all ordered twice or more; one-time buyers once.
    assert repeat["metrics"]["headline"]["customers"] == count
    assert repeat["metrics"]["headline"]["repeat_purchase_rate"] == 1.0
    assert once["metrics"]["headline"]["repeat_purchase_rate"] == 0.0
    assert 0 < everyone["repeat_purchase_rate"] < 1
    assert (
        once["metrics"]["headline"]["orders_per_customer"]
        < everyone["orders_per_customer"]
        < repeat["metrics"]["headline"]["orders_per_customer"]
    )
    assert (
        repeat["metrics"]["headline"]["customers"] + once["metrics"]["headline"]["customers"]
        == everyone["customers"]
    )
    # The backtest ranks the whole shop: a filter leaves it as stored.
    assert repeat["metrics"]["backtest"] == whole["metrics"]["backtest"]
    assert repeat["metrics"]["rfm"]["cells"] != whole["metrics"]["rfm"]["cells"]


def test_a_range_counts_only_its_orders(server: str, seeded) -> None:
    shop, _ = seeded
    client = ApiClient(server, shop.domain)
    stored = _figures(client)["metrics"]
    whole = stored["headline"]
    early = _figures(client, **{"from": _months_back(11), "to": _months_back(6)})
    late = _figures(client, **{"from": _months_back(5), "to": _months_back(0)})
    year = _figures(client, **{"from": _months_back(11), "to": _months_back(0)})
    assert year["filter"] == {"segment": None, "from": _months_back(11), "to": _months_back(0)}
    halves = [early["metrics"]["headline"], late["metrics"]["headline"]]
    both = year["metrics"]["headline"]
    # Orders and revenue inside two adjoining ranges add up to the range that joins them.
    assert sum(h["orders"] for h in halves) == both["orders"] < whole["orders"]
    assert round(sum(h["revenue"] for h in halves), 2) == pytest.approx(both["revenue"])
    assert max(h["customers"] for h in halves) <= both["customers"] <= whole["customers"]
    # Cohorts are the range's first-order months only: fewer customers than ever ordered.
    keys = [r["key"] for r in early["metrics"]["cohorts"]["month"]]
    assert keys and all(_months_back(11) <= k <= _months_back(6) for k in keys)
    newcomers = sum(r["customers"] for r in year["metrics"]["cohorts"]["month"])
    assert 0 < newcomers < whole["customers"]
    # A range ends at its last month's end, or at the stored day in the current month.
    assert early["metrics"]["as_of"] == early["metrics"]["previous_period"]["current"]["end"]
    assert early["metrics"]["as_of"][:7] == _months_back(6)
    assert year["metrics"]["as_of"] == stored["as_of"]


def test_bad_filters_are_named_and_other_shops_segments_not_found(
    server: str, seeded, make_shop: Any, sessions: sessionmaker[Session]
) -> None:
    shop, ids = seeded
    other = make_shop()
    other_ids = seed_shop(sessions, other.id, customers=20, seed=3)
    client = ApiClient(server, shop.domain)
    for params, field in (
        ({"from": "2025-13"}, "from"),
        ({"to": "25-01"}, "to"),
        ({"from": "2025-06", "to": "2025-01"}, "from"),
        ({"from": "2020-01", "to": "2025-01"}, "from"),
        ({"to": _months_back(-1)}, "to"),
        ({"segment": "x"}, "segment"),
        ({"segment": "-3"}, "segment"),
    ):
        r = client.get("/analytics", **params)
        assert r.status_code == 400, params
        assert r.json()["field"] == field, (params, r.text)
    assert client.get("/analytics", segment=999_999).status_code == 404
    assert client.get("/analytics", segment=other_ids["vip"]).status_code == 404
    assert client.get("/analytics", segment=ids["vip"]).status_code == 200


def test_a_filter_that_leaves_nobody_answers_with_empty_figures(
    server: str, seeded, sessions: sessionmaker[Session]
) -> None:
    shop, _ = seeded
    with sessions() as session:
        empty = session.scalar(
            select(Segment.id).where(Segment.shop_id == shop.id, Segment.member_count == 0)
        )
    assert empty is not None, "the seeded shop has an empty segment"
    client = ApiClient(server, shop.domain)
    body = _figures(client, segment=empty)  # rates of nobody are null, not NaN (invalid JSON)
    assert body["metrics"]["headline"]["customers"] == 0
    long_ago = _figures(client, segment=empty, **{"from": "2019-01", "to": "2019-12"})
    assert long_ago["metrics"]["headline"]["orders"] == 0


def _add(session: Session, shop_id: int, customer: int, days: list[dt.datetime]) -> None:
    session.execute(
        insert(Customer.__table__),
        [
            {
                "shop_id": shop_id,
                "id": customer,
                "first_name": "Ada",
                "last_name": "Byron",
                "email": f"c{customer}@example.com",
                "email_marketing_state": "SUBSCRIBED",
                "phone": None,
                "country_code": "GR",
                "city": "Athens",
                "company": None,
                "tags": [],
                "number_of_orders": len(days),
                "amount_spent": 10.0 * len(days),
                "created_at": days[0],
                "updated_at": days[-1],
            }
        ],
    )
    for at in days:
        oid = customer * 100 + days.index(at)
        session.execute(
            insert(Order.__table__),
            [
                {
                    "shop_id": shop_id,
                    "id": oid,
                    "customer_id": customer,
                    "name": f"#{oid}",
                    "created_at": at,
                    "processed_at": at,
                    "updated_at": at,
                    "cancelled_at": None,
                    "test": False,
                    "total": 10.0,
                    "currency": "USD",
                    "discount_codes": [],
                    "billing_company": None,
                }
            ],
        )
        session.execute(
            insert(LineItem.__table__),
            [
                {
                    "shop_id": shop_id,
                    "id": oid,
                    "order_id": oid,
                    "product_id": None,
                    "variant_id": None,
                    "sku": None,
                    "title": "Tea",
                    "quantity": 1,
                    "amount": 10.0,
                }
            ],
        )


def test_what_a_range_means_on_a_shop_built_by_hand(
    server: str, make_shop: Any, sessions: sessionmaker[Session], ctx: Context
) -> None:
    shop = make_shop()

    def day(months_back: int) -> dt.datetime:
        return dt.datetime.fromisoformat(f"{_months_back(months_back)}-05T12:00:00+00:00")

    with sessions.begin() as session:
        _add(session, shop.id, 1, [day(2), day(1)])  # new in the range, ordered twice in it
        _add(session, shop.id, 2, [day(10), day(2)])  # an older customer back in the range
        _add(session, shop.id, 3, [day(8)])  # no order in the range
    recompute.recompute_shop_now(ctx, shop.id)
    client = ApiClient(server, shop.domain)
    assert _figures(client)["metrics"]["headline"]["orders"] == 5
    found = _figures(client, **{"from": _months_back(2), "to": _months_back(1)})["metrics"]
    headline = found["headline"]
    assert (headline["customers"], headline["orders"], headline["repeat_customers"]) == (2, 3, 1)
    assert headline["repeat_purchase_rate"] == 0.5
    assert headline["revenue"] == 30.0
    # Cohorts follow only the customers whose first order is in the range.
    assert [(r["key"], r["customers"]) for r in found["cohorts"]["month"]] == [(_months_back(2), 1)]
    assert found["year_before"]["orders"] == 0
    assert found["as_of"].startswith(_months_back(1))
    assert found["start"] == f"{_months_back(2)}-01"
