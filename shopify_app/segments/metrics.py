"""Retention metrics: the numbers that show whether repeat-customer marketing is working.

:func:`compute` returns one JSON-able dict: headline figures (customers, orders, revenue, AOV,
orders per customer, repeat purchase rate, average days between orders), simple CLV
(AOV × yearly purchase frequency × lifespan) next to the model's predicted 12-month CLV, cohort
retention by first-order month, the products and discount codes that bring customers back,
a histogram of days between orders, the RFM grid, the repeat-rate trend, and the last 90 days
against the 90 before.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from shopify_app.segments import rfm
from shopify_app.segments.dataset import Dataset, compute_features, day_date, day_number, distinct

GAP_BINS = (
    (0, 7, "0-7"),
    (8, 14, "8-14"),
    (15, 30, "15-30"),
    (31, 60, "31-60"),
    (61, 90, "61-90"),
    (91, 180, "91-180"),
    (181, 365, "181-365"),
    (366, 10**7, "366+"),
)


def _rate(num: float, den: float) -> float:
    return round(float(num) / float(den), 4) if den else 0.0


def _month_index(days: np.ndarray) -> np.ndarray:
    return np.asarray(days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64))


def _month_label(index: int) -> str:
    return f"{1970 + index // 12:04d}-{index % 12 + 1:02d}"


def compute(
    ds: Dataset, as_of: dt.date, *, evaluation: Any = None, cohort_months: int = 12
) -> dict[str, Any]:
    """All retention metrics as of ``as_of`` (orders after it are ignored).

    ``evaluation`` (a :class:`shopify_app.segments.library.Evaluation` for the same data) adds
    the predicted CLV and the RFM grid; without it those parts are left out.
    """
    ds = ds.upto(as_of)
    today = day_number(as_of)
    f = evaluation.features if evaluation is not None else compute_features(ds, as_of)
    has = f.has_orders
    customers = int(has.sum())
    orders = ds.n_orders
    revenue = float(ds.order_total.sum())
    repeaters = int((f.n_orders >= 2).sum())
    aov = revenue / orders if orders else 0.0

    # Gaps between consecutive orders of the same customer (distinct days only).
    same = ds.order_customer[1:] == ds.order_customer[:-1]
    gaps = (ds.order_day[1:] - ds.order_day[:-1])[same]
    gaps = gaps[gaps > 0]
    histogram = [
        {"days": label, "count": int(((gaps >= lo) & (gaps <= hi)).sum())}
        for lo, hi, label in GAP_BINS
    ]

    # Simple CLV = AOV x purchases per customer per year x expected lifespan in years.
    last_year = ds.order_day > today - 365
    prev_year = (ds.order_day > today - 730) & ~last_year
    active_now = distinct(ds.order_customer[last_year])
    active_before = distinct(ds.order_customer[prev_year])
    frequency = float(last_year.sum()) / len(active_now) if len(active_now) else 0.0
    retained = len(np.intersect1d(active_now, active_before, assume_unique=True))
    churn = 1 - retained / len(active_before) if len(active_before) else None
    lifespan = min(1 / churn, 10.0) if churn else (1.0 if churn is None else 10.0)
    aov_year = float(ds.order_total[last_year].sum() / last_year.sum()) if last_year.any() else aov

    result: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "customers": customers,
        "orders": orders,
        "revenue": round(revenue, 2),
        "average_order_value": round(aov, 2),
        "orders_per_customer": round(orders / customers, 3) if customers else 0.0,
        "repeat_customers": repeaters,
        "repeat_purchase_rate": _rate(repeaters, customers),
        "average_days_between_orders": round(float(gaps.mean()), 1) if len(gaps) else None,
        "median_days_between_orders": float(np.median(gaps)) if len(gaps) else None,
        "clv": {
            "average_order_value": round(aov_year, 2),
            "purchases_per_year": round(frequency, 3),
            "lifespan_years": round(lifespan, 2),
            "simple": round(aov_year * frequency * lifespan, 2),
            "predicted_12m": (
                round(float(evaluation.predictions.clv_12m[has].mean()), 2)
                if evaluation is not None and customers and evaluation.predictions.available
                else None
            ),
        },
        "days_between_orders_histogram": histogram,
        "repeat_rate_by_period": _periods(ds, f, today),
        "repeat_rate_trend": _trend(ds, today),
        "cohorts": _cohorts(ds, f, today, cohort_months),
        "first_product": _first_product(ds, f),
        "discount_codes": _first_code(ds, f),
        "previous_period": _previous(ds, today, 90),
    }
    if evaluation is not None:
        result["rfm"] = _rfm_grid(evaluation)
    return result


def _periods(ds: Dataset, f: Any, today: int) -> list[dict[str, Any]]:
    """Per 90-day period: customers who ordered in it, and the share who were repeat buyers."""
    out = []
    for k in range(4):
        hi = today - 90 * k
        lo = hi - 90
        window = (ds.order_day > lo) & (ds.order_day <= hi)
        buyers = distinct(ds.order_customer[window])
        before_end = ds.order_day <= hi
        counts = np.bincount(ds.order_customer[before_end], minlength=ds.n_customers)
        repeat = int((counts[buyers] >= 2).sum())
        out.append(
            {
                "start": day_date(lo + 1).isoformat(),
                "end": day_date(hi).isoformat(),
                "customers": len(buyers),
                "repeat_customers": repeat,
                "repeat_purchase_rate": _rate(repeat, len(buyers)),
            }
        )
    return out


def _trend(ds: Dataset, today: int) -> list[dict[str, Any]]:
    """Cumulative repeat purchase rate at each of the last 12 month ends."""
    out = []
    this_month = int(_month_index(np.array([today]))[0])
    for m in range(this_month - 11, this_month + 1):
        end = min(int(np.datetime64(_month_label(m + 1) + "-01").astype(np.int64)) - 1, today)
        counts = np.bincount(ds.order_customer[ds.order_day <= end], minlength=ds.n_customers)
        buyers = int((counts > 0).sum())
        out.append(
            {
                "month": _month_label(m),
                "customers": buyers,
                "repeat_purchase_rate": _rate((counts >= 2).sum(), buyers),
            }
        )
    return out


def _cohorts(ds: Dataset, f: Any, today: int, months: int) -> list[dict[str, Any]]:
    """First-order-month cohorts: share of each cohort ordering again k months later."""
    has = f.has_orders
    if not has.any():
        return []
    cohort = np.full(ds.n_customers, -1, dtype=np.int64)
    cohort[has] = _month_index(f.first_day[has])
    order_month = _month_index(ds.order_day)
    offset = order_month - cohort[ds.order_customer]
    this_month = int(_month_index(np.array([today]))[0])
    first_cohort = this_month - months + 1
    keep = (cohort[ds.order_customer] >= first_cohort) & (offset >= 1)
    pairs = (
        np.unique(np.stack([ds.order_customer[keep], offset[keep]]), axis=1)
        if keep.any()
        else np.zeros((2, 0), np.int64)
    )
    out = []
    for m in range(first_cohort, this_month + 1):
        members = cohort == m
        size = int(members.sum())
        if not size:
            continue
        ages = this_month - m
        sel = cohort[pairs[0]] == m
        counts = np.bincount(pairs[1][sel], minlength=ages + 1)
        out.append(
            {
                "month": _month_label(m),
                "customers": size,
                "retention": [_rate(counts[k], size) for k in range(1, ages + 1)],
            }
        )
    return out


def _returning(
    ds: Dataset, f: Any, groups: dict[Any, np.ndarray], labels: dict[Any, str]
) -> list[dict[str, Any]]:
    # The day of each customer's second distinct order day: the first order after day one.
    second = np.full(ds.n_customers, -1, dtype=np.int64)
    later = ds.order_day > f.first_day[ds.order_customer]
    customers, first_index = np.unique(ds.order_customer[later], return_index=True)
    second[customers] = ds.order_day[later][first_index]
    delay = np.where(second >= 0, second - f.first_day, -1)
    out: list[dict[str, Any]] = []
    for key, members in groups.items():
        n = len(members)
        d = delay[members]
        out.append(
            {
                "key": labels.get(key, str(key)),
                "customers": n,
                "repeat_purchase_rate": _rate((d >= 0).sum(), n),
                "returned_within_90_days": _rate(((d >= 0) & (d <= 90)).sum(), n),
                "returned_within_365_days": _rate(((d >= 0) & (d <= 365)).sum(), n),
            }
        )
    out.sort(key=lambda row: (-row["repeat_purchase_rate"], -row["customers"]))
    return out


def _first_product(
    ds: Dataset, f: Any, top: int = 20, min_customers: int = 5
) -> list[dict[str, Any]]:
    """Repeat rate by a product in the customer's first order: the products that bring them back."""
    has = f.has_orders
    if not has.any() or not len(ds.line_order):
        return []
    first_order = np.zeros(ds.n_orders, dtype=bool)
    first_order[ds.order_start[:-1][has]] = True
    lines = first_order[ds.line_order]
    cust = ds.line_customer()[lines]
    prod = ds.line_product[lines]
    # Distinct (product, customer) pairs as one integer key each: a 1-D unique sorts in place,
    # where ``np.unique(..., axis=1)`` goes through a much slower structured view.
    uprod, pidx = np.unique(prod, return_inverse=True)
    key = distinct(pidx.astype(np.int64) * ds.n_customers + cust)
    pairs = (uprod[key // ds.n_customers], key % ds.n_customers)
    products, counts = np.unique(pairs[0], return_counts=True)
    chosen = products[np.argsort(-counts)][:top]
    groups = {
        int(p): pairs[1][pairs[0] == p] for p in chosen if (pairs[0] == p).sum() >= min_customers
    }
    labels = {p: ds.product_titles.get(p, str(p)) for p in groups}
    return _returning(ds, f, groups, labels)


def _first_code(ds: Dataset, f: Any, top: int = 20) -> list[dict[str, Any]]:
    """Repeat rate of customers acquired with each discount code (and with none)."""
    has = np.nonzero(f.has_orders)[0]
    if not len(has):
        return []
    codes = [ds.order_discount[int(ds.order_start[c])] for c in has]
    by_code: dict[str, list[int]] = {}
    for c, code in zip(has, codes, strict=True):
        by_code.setdefault(code, []).append(int(c))
    ranked = sorted(by_code, key=lambda k: -len(by_code[k]))[: top + 1]
    groups = {k: np.asarray(by_code[k], dtype=np.int64) for k in ranked}
    labels = {k: (k or "(no code)") for k in ranked}
    return _returning(ds, f, groups, labels)


def _previous(ds: Dataset, today: int, days: int) -> dict[str, Any]:
    """The last ``days`` days against the ``days`` before them."""

    def window(lo: int, hi: int) -> dict[str, Any]:
        sel = (ds.order_day > lo) & (ds.order_day <= hi)
        n = int(sel.sum())
        buyers = distinct(ds.order_customer[sel])
        prior = np.zeros(ds.n_customers, dtype=bool)
        prior[ds.order_customer[ds.order_day <= lo]] = True
        returning = int(prior[buyers].sum())
        revenue = float(ds.order_total[sel].sum())
        return {
            "start": day_date(lo + 1).isoformat(),
            "end": day_date(hi).isoformat(),
            "orders": n,
            "revenue": round(revenue, 2),
            "customers": len(buyers),
            "returning_customers": returning,
            "returning_share": _rate(returning, len(buyers)),
            "average_order_value": round(revenue / n, 2) if n else 0.0,
        }

    current = window(today - days, today)
    previous = window(today - 2 * days, today - days)
    change = {
        key: (_rate(current[key] - previous[key], previous[key]) if previous[key] else None)
        for key in ("orders", "revenue", "customers", "returning_customers")
    }
    return {"days": days, "current": current, "previous": previous, "change": change}


def _rfm_grid(evaluation: Any) -> dict[str, Any]:
    r, f_s, m = evaluation.rfm_scores
    has = evaluation.features.has_orders
    fm = np.floor((f_s + m) / 2 + 0.5).astype(np.int64)
    grid = np.zeros((5, 5), dtype=np.int64)
    np.add.at(grid, (r[has] - 1, np.clip(fm[has], 1, 5) - 1), 1)
    codes = evaluation.rfm_group[has]
    counts = np.bincount(codes, minlength=len(rfm.GROUP_KEYS))
    return {
        "grid": {
            "rows": "recency 1..5",
            "columns": "frequency+monetary 1..5",
            "counts": grid.tolist(),
        },
        "groups": {key: int(counts[i]) for i, key in enumerate(rfm.GROUP_KEYS)},
        "edges": evaluation.stats.rfm_edges.to_dict(),
    }
