"""The analytics view: cohorts, time between orders, RFM, repeat trend, products that bring
customers back; and the retention figures the home headline shares."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shopify_app.db.models import LineItem, Order, Shop
from shopify_app.server.api.cache import data_version, shop_cache
from shopify_app.server.api.request import db_session, get_shop, request_shop_id, today


def counted_orders(
    session: Session, shop_id: int
) -> list[tuple[int, dt.datetime, float, list[Any], int]]:
    """Counted orders (not cancelled, not test) with a customer, oldest first."""
    rows = session.execute(
        select(Order.customer_id, Order.processed_at, Order.total, Order.discount_codes, Order.id)
        .where(
            Order.shop_id == shop_id,
            Order.customer_id.is_not(None),
            Order.cancelled_at.is_(None),
            Order.test.is_(False),
        )
        .order_by(Order.processed_at, Order.id)
    ).all()
    return [(int(c), p, float(t or 0), list(d or []), int(i)) for c, p, t, d, i in rows]


def period_metrics(
    orders: list[tuple[int, dt.datetime, float, list[Any], int]], as_of: dt.date
) -> dict[str, Any]:
    """Retention figures over the 365 days ending ``as_of`` (customers' full history counts)."""
    start = as_of - dt.timedelta(days=365)
    history: dict[int, list[tuple[dt.date, float]]] = defaultdict(list)
    for cid, at, total, _codes, _oid in orders:
        day = at.date()
        if day <= as_of:
            history[cid].append((day, total))
    active = {cid: h for cid, h in history.items() if h[-1][0] > start}
    n = len(active)
    in_period = [(d, t) for h in active.values() for d, t in h if d > start]
    repeaters = sum(1 for h in active.values() if len(h) >= 2)
    gaps = [
        (h[i][0] - h[i - 1][0]).days
        for h in active.values()
        for i in range(1, len(h))
        if h[i][0] > start
    ]
    revenue = sum(t for _d, t in in_period)
    aov = revenue / len(in_period) if in_period else None
    orders_per = len(in_period) / n if n else None
    # Historic CLV: AOV × purchase frequency per year × average lifespan in years (≥ 1 year).
    lifespans = [max((h[-1][0] - h[0][0]).days / 365.0, 1.0) for h in active.values()]
    clv = (
        aov * orders_per * (sum(lifespans) / len(lifespans))
        if aov is not None and orders_per is not None and lifespans
        else None
    )
    return {
        "customers": n,
        "repeat_rate": repeaters / n if n else None,
        "days_between_orders": sum(gaps) / len(gaps) if gaps else None,
        "orders_per_customer": orders_per,
        "aov": aov,
        "clv": clv,
    }


def _month(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _months_between(a: dt.date, b: dt.date) -> int:
    return (b.year - a.year) * 12 + (b.month - a.month)


def _quintile_scores(values: Mapping[int, float], reverse: bool = False) -> dict[int, int]:
    ranked = sorted(values, key=lambda k: (values[k], k), reverse=reverse)
    n = len(ranked)
    return {cid: 1 + (i * 5) // n for i, cid in enumerate(ranked)} if n else {}


def _analytics(session: Session, shop_id: int) -> dict[str, Any]:
    orders = counted_orders(session, shop_id)
    as_of = today()
    by_customer: dict[int, list[tuple[dt.date, float, list[Any], int]]] = defaultdict(list)
    for cid, at, total, codes, oid in orders:
        by_customer[cid].append((at.date(), total, codes, oid))
    first_order_ids = [h[0][3] for h in by_customer.values()]
    first_product: dict[int, str] = {}
    for chunk_start in range(0, len(first_order_ids), 5000):
        chunk = first_order_ids[chunk_start : chunk_start + 5000]
        for oid, title in session.execute(
            select(LineItem.order_id, LineItem.title)
            .where(LineItem.shop_id == shop_id, LineItem.order_id.in_(chunk))
            .order_by(LineItem.order_id, LineItem.id)
        ):
            first_product.setdefault(int(oid), title or "—")

    # Cohorts: share of a cohort ordering again in month k after its first month.
    def cohort_table(key_of: Callable[[list[Any]], str | None], limit: int) -> dict[str, Any]:
        groups: dict[str, list[list[Any]]] = defaultdict(list)
        for h in by_customer.values():
            key = key_of(h)
            if key is not None:
                groups[key].append(h)
        chosen = sorted(groups, key=lambda k: (-len(groups[k]), k))[:limit]
        if key_of is _first_month:
            chosen = sorted(groups)[-limit:]
        rows = []
        for key in chosen:
            members = groups[key]
            counts = [0] * 12
            for h in members:
                first = h[0][0]
                seen = {_months_between(first, d) for d, *_ in h[1:]}
                for k in seen:
                    if 1 <= k <= 12:
                        counts[k - 1] += 1
            rows.append(
                {"key": key, "size": len(members), "retention": [c / len(members) for c in counts]}
            )
        return {"offsets": list(range(1, 13)), "rows": rows}

    def _first_product(h: list[Any]) -> str | None:
        return first_product.get(h[0][3])

    def _first_code(h: list[Any]) -> str | None:
        codes = h[0][2]
        return str(codes[0]).upper() if codes else None

    # Time between orders histogram (days, fixed bins).
    bins = [0, 7, 14, 30, 60, 90, 120, 180, 270, 365]
    hist = [0] * len(bins)
    for h in by_customer.values():
        for i in range(1, len(h)):
            gap = (h[i][0] - h[i - 1][0]).days
            idx = max(j for j, lo in enumerate(bins) if gap >= lo)
            hist[idx] += 1

    # RFM grid: recency score × frequency score, counts and average spend.
    recency = {cid: -(as_of - h[-1][0]).days for cid, h in by_customer.items()}
    frequency = {cid: float(len(h)) for cid, h in by_customer.items()}
    r_score = _quintile_scores(recency)
    f_score = _quintile_scores(frequency)
    grid: dict[tuple[int, int], list[float]] = defaultdict(list)
    for cid, h in by_customer.items():
        grid[(r_score[cid], f_score[cid])].append(sum(t for _d, t, *_ in h))
    rfm = [
        {"r": r, "f": f, "customers": len(v), "avg_spend": sum(v) / len(v) if v else 0}
        for (r, f), v in sorted(grid.items())
    ]

    # Repeat-rate trend: per month, share of ordering customers who had ordered before.
    month_customers: dict[str, set[int]] = defaultdict(set)
    month_returning: dict[str, set[int]] = defaultdict(set)
    for cid, h in by_customer.items():
        for i, (d, *_rest) in enumerate(h):
            m = _month(d)
            month_customers[m].add(cid)
            if i > 0:
                month_returning[m].add(cid)
    months = sorted(month_customers)[-24:]
    trend = [
        {
            "month": m,
            "customers": len(month_customers[m]),
            "repeat_rate": len(month_returning[m]) / len(month_customers[m]),
        }
        for m in months
    ]

    # Products that bring customers back: repeat rate by first product.
    prod: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for h in by_customer.values():
        first_title = first_product.get(h[0][3])
        if first_title:
            prod[first_title][0] += 1
            prod[first_title][1] += 1 if len(h) >= 2 else 0
    ranked = sorted(
        ((t, n, r / n) for t, (n, r) in prod.items() if n >= 3),
        key=lambda p: (-p[2], -p[1], p[0]),
    )[:10]
    products = [{"title": t, "customers": n, "repeat_rate": rate} for t, n, rate in ranked]

    return {
        "as_of": as_of.isoformat(),
        "customers": len(by_customer),
        "orders": len(orders),
        "cohorts": {
            "month": cohort_table(_first_month, 12),
            "product": cohort_table(_first_product, 8),
            "discount": cohort_table(_first_code, 8),
        },
        "histogram": {"bins": bins, "counts": hist},
        "rfm": rfm,
        "repeat_trend": trend,
        "products": products,
    }


def _first_month(h: list[Any]) -> str | None:
    return _month(h[0][0])


def analytics(request: Request) -> Response:
    """Cohorts, time between orders, RFM grid, repeat trend, products bringing customers back."""
    shop_id = request_shop_id(request)
    with db_session(request) as session:
        shop = get_shop(session, shop_id)
        version = data_version(session, shop_id)
        data = shop_cache.get("analytics", shop_id, version, lambda: _analytics(session, shop_id))
        return JSONResponse({**data, **engine_extras(shop)})


METRICS_KEY = "segment_metrics"
"""Where the segments engine leaves its latest ``metrics.compute`` output in ``Shop.settings``."""


def engine_extras(shop: Shop) -> dict[str, Any]:
    """What only the segments engine knows: the official RFM grid and the model's CLV.

    The engine scores RFM with its own edges (recency × the mean of frequency and monetary), so
    when it has run, its grid replaces the page's quick recency × frequency quintiles.
    """
    engine = (shop.settings or {}).get(METRICS_KEY)
    if not isinstance(engine, dict):
        return {"rfm_source": "page"}
    extras: dict[str, Any] = {"rfm_source": "page"}
    grid = ((engine.get("rfm") or {}).get("grid") or {}).get("counts")
    if isinstance(grid, list) and len(grid) == 5:
        extras["rfm"] = [
            {"r": r + 1, "f": f + 1, "customers": int(count), "avg_spend": None}
            for r, row in enumerate(grid)
            for f, count in enumerate(row)
            if count
        ]
        extras["rfm_source"] = "engine"
        extras["rfm_groups"] = (engine.get("rfm") or {}).get("groups") or {}
    clv = engine.get("clv") or {}
    extras["clv"] = {"simple": clv.get("simple"), "predicted_12m": clv.get("predicted_12m")}
    extras["engine_as_of"] = engine.get("as_of")
    return extras
