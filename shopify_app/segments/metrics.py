"""Retention metrics: the one engine behind every number the page, the API and ``analyze`` show.

:func:`compute` returns one JSON-able dict (its shape is :data:`VERSION`): the headline figures
(each defined once, in words, in :data:`DEFINITIONS`) as of the day and as of a year earlier;
the parts of the simple CLV; cohort retention by first-order month, first product and first
discount code; the products and discount codes that bring customers back; a histogram of days
between orders; the RFM grid with average spend; the repeat-rate trend; the last 90 days
against the 90 before; and the backtest of the purchase rankings. The full recompute stores it
per shop (``ShopMetrics``) and the page shows it as stored; ``analyze`` prints it.

Tables are ordered by their numbers and then by their labels, so two loads of the same orders
(the database, an orders export) give the same output whatever order their customers come in.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shopify_app.segments import backtest, rfm
from shopify_app.segments.dataset import Dataset, IntArray, day_date, day_number, distinct

VERSION = 2
"""The shape of :func:`compute`'s output; readers treat stored output of another shape as
not computed yet."""

NAMES: dict[str, str] = {
    "customers": "Customers",
    "orders": "Orders",
    "revenue": "Revenue",
    "average_order_value": "Average order value",
    "orders_per_customer": "Orders per customer",
    "repeat_customers": "Repeat customers",
    "repeat_purchase_rate": "Repeat purchase rate",
    "average_days_between_orders": "Average time between orders",
    "median_days_between_orders": "Median time between orders",
    "clv_simple": "Customer lifetime value",
    "clv_predicted_12m": "Predicted spend, next 12 months",
}
"""The headline figures, in order, by name (English: ``analyze``; the page's ``metric.<key>``)."""

DEFINITIONS: dict[str, str] = {
    "customers": "Customers with at least one counted order.",
    "orders": "Orders counted: every order except cancelled and test orders.",
    "revenue": "The counted orders' totals, net of refunds.",
    "average_order_value": "Revenue divided by the number of orders.",
    "orders_per_customer": "Orders divided by the customers who placed at least one.",
    "repeat_customers": "Customers with two or more orders.",
    "repeat_purchase_rate": "Share of customers with an order who ordered at least twice.",
    "average_days_between_orders": (
        "The mean gap between a customer's consecutive order days (orders on one day count once)."
    ),
    "median_days_between_orders": "The middle of those gaps: half are shorter, half longer.",
    "clv_simple": (
        "Average order value × orders per customer per year × expected years as a customer "
        "(1 ÷ the share of customers lost in a year, at most 10), over the last 12 months."
    ),
    "clv_predicted_12m": (
        "What the average customer is expected to spend in the next 12 months, by the purchase "
        "model (or each customer's own order rhythm when the model cannot be fitted)."
    ),
}
"""One line per headline figure, in English: ``analyze`` prints them, and the page shows the
same words from ``definition.<key>`` in web/i18n/<lang>.json (a test keeps en.json equal to
these and to :data:`NAMES`)."""

MAX_LIFESPAN_YEARS = 10.0
COHORT_MONTHS = 12  # first-order months shown, and months after the first order followed
TOP_GROUPS = 20  # first products and discount codes listed
COHORT_GROUPS = 8  # of them, the largest followed month by month
MIN_GROUP = 5  # customers a first product needs to be reported (fewer is noise)

GAP_BINS = ((1, 7), (8, 14), (15, 30), (31, 60), (61, 90), (91, 180), (181, 365), (366, None))
"""Days between consecutive order days, as (from, to) with ``to`` None for "and more"."""


def _rate(num: float, den: float) -> float:
    return round(float(num) / float(den), 4) if den else 0.0


def _month_index(days: IntArray) -> IntArray:
    return np.asarray(days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64))


def _month_label(index: int) -> str:
    return f"{1970 + index // 12:04d}-{index % 12 + 1:02d}"


def compute(ds: Dataset, as_of: dt.date, *, evaluation: Any = None) -> dict[str, Any]:
    """All retention metrics as of ``as_of`` (orders after it are ignored).

    ``evaluation`` (a :class:`shopify_app.segments.library.Evaluation` for the same data) adds
    the predicted CLV and the RFM grid; without it those are left out (None).
    """
    ds = ds.upto(as_of)
    today = day_number(as_of)
    year_before = as_of - dt.timedelta(days=365)
    headline, clv_parts = _headline(ds, today)
    previous, _ = _headline(ds.upto(year_before), today - 365)
    has = np.diff(ds.order_start) > 0
    headline["clv_predicted_12m"] = (
        round(float(evaluation.predictions.clv_12m[has].mean()), 2)
        if evaluation is not None and has.any() and evaluation.predictions.available
        else None
    )
    previous["clv_predicted_12m"] = None  # the model of a year ago is not kept
    products = _first_products(ds)
    codes = _first_codes(ds)
    return {
        "version": VERSION,
        "as_of": as_of.isoformat(),
        "headline": headline,
        "year_before": {"as_of": year_before.isoformat(), **previous},
        "clv": clv_parts,
        "days_between_orders_histogram": _histogram(_gaps(ds)),
        "repeat_rate_by_period": _periods(ds, today),
        "repeat_rate_trend": _trend(ds, today),
        "cohorts": _cohorts(ds, today, products, codes),
        "first_product": _returning(ds, products),
        "discount_codes": _returning(ds, codes),
        "previous_period": _previous(ds, today, 90),
        "rfm": _rfm_grid(evaluation) if evaluation is not None else None,
        # The full evaluation already ran the shop's backtest: the same result, not a second run.
        "backtest": _backtest(
            evaluation.stats.backtest
            if evaluation is not None
            else backtest.run(backtest.OrderHistory.of(ds), today)
        ),
    }


def compute_range(
    ds: Dataset, first: int, last: int, as_of: dt.date, *, evaluation: Any = None
) -> dict[str, Any]:
    """The metrics of months ``first``..``last`` (month numbers since 1970-01), as of the
    range's end: the last day of ``last``, or ``as_of`` when sooner. What the range means:

    - headline figures, time between orders, repeat-rate trend: only orders inside the range
      count (a customer is one who ordered in it, a repeat customer one who ordered twice in
      it, a gap one between two orders in it); ``year_before``: the same months a year earlier;
    - cohorts, first products, first discount codes: the customers whose first order ever falls
      in the range, followed up to its end;
    - previous period: the 90 days up to the range's end against the 90 before;
    - RFM grid, predicted CLV: the customers who ordered in the range, scored as of its end
      (``evaluation``, of ``ds`` as of that day; without it both are left out);

    There is no backtest: it ranks the whole shop's customers, so the caller shows that one.
    """
    end = min(month_start(last + 1) - 1, day_number(as_of))
    start = month_start(first)
    ds = ds.upto(day_date(end))
    inside = ds.only_orders(ds.order_day >= start)
    year_ago = ds.only_orders(
        (ds.order_day >= month_start(first - 12)) & (ds.order_day <= end - 365)
    )
    headline, clv_parts = _headline(inside, end)
    previous, _ = _headline(year_ago, end - 365)
    ordered = np.diff(inside.order_start) > 0
    headline["clv_predicted_12m"] = (
        round(float(evaluation.predictions.clv_12m[ordered].mean()), 2)
        if evaluation is not None and ordered.any() and evaluation.predictions.available
        else None
    )
    previous["clv_predicted_12m"] = None
    has = np.diff(ds.order_start) > 0
    first_month = np.full(ds.n_customers, -1, dtype=np.int64)
    first_month[has] = _month_index(ds.order_day[ds.order_start[:-1][has]])
    new = (first_month >= first) & (first_month <= last)
    newcomers = ds.only_orders(new[ds.order_customer])
    products = _first_products(newcomers)
    codes = _first_codes(newcomers)
    return {
        "version": VERSION,
        "as_of": day_date(end).isoformat(),
        "start": day_date(start).isoformat(),
        "headline": headline,
        "year_before": {"as_of": day_date(end - 365).isoformat(), **previous},
        "clv": clv_parts,
        "days_between_orders_histogram": _histogram(_gaps(inside)),
        "repeat_rate_by_period": _periods(inside, end),
        "repeat_rate_trend": _trend(inside, end),
        "cohorts": cohorts(newcomers, end, first, last, products, codes),
        "first_product": _returning(newcomers, products),
        "discount_codes": _returning(newcomers, codes),
        "previous_period": _previous(ds, end, 90),
        "rfm": _rfm_grid(evaluation, ordered) if evaluation is not None else None,
    }


def month_start(month: int) -> int:
    """The day number of month ``month``'s first day."""
    return int(np.datetime64(_month_label(month) + "-01").astype(np.int64))


def _gaps(ds: Dataset) -> IntArray:
    """Days between each customer's consecutive order days (same-day orders count once)."""
    same = ds.order_customer[1:] == ds.order_customer[:-1]
    gaps = (ds.order_day[1:] - ds.order_day[:-1])[same]
    return np.asarray(gaps[gaps > 0], dtype=np.int64)


def _headline(ds: Dataset, today: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The headline figures (see :data:`DEFINITIONS`) and the simple CLV's parts."""
    per_customer = np.diff(ds.order_start)
    customers = int((per_customer > 0).sum())
    orders = ds.n_orders
    revenue = float(ds.order_total.sum())
    repeaters = int((per_customer >= 2).sum())
    aov = revenue / orders if orders else 0.0
    gaps = _gaps(ds)

    # Simple CLV = AOV x purchases per customer per year x expected lifespan in years.
    last_year = ds.order_day > today - 365
    prev_year = (ds.order_day > today - 730) & ~last_year
    active_now = distinct(ds.order_customer[last_year])
    active_before = distinct(ds.order_customer[prev_year])
    frequency = float(last_year.sum()) / len(active_now) if len(active_now) else 0.0
    retained = len(np.intersect1d(active_now, active_before, assume_unique=True))
    churn = 1 - retained / len(active_before) if len(active_before) else None
    if churn is None:
        lifespan = 1.0  # no year before to measure churn on: count one year
    else:
        lifespan = min(1 / churn, MAX_LIFESPAN_YEARS) if churn else MAX_LIFESPAN_YEARS
    aov_year = float(ds.order_total[last_year].sum() / last_year.sum()) if last_year.any() else aov

    def ratio(value: float, digits: int) -> float | None:
        return round(value, digits) if customers else None  # nothing to divide by

    headline = {
        "customers": customers,
        "orders": orders,
        "revenue": round(revenue, 2),
        "average_order_value": ratio(aov, 2),
        "orders_per_customer": ratio(orders / max(customers, 1), 3),
        "repeat_customers": repeaters,
        "repeat_purchase_rate": ratio(repeaters / max(customers, 1), 4),
        "average_days_between_orders": round(float(gaps.mean()), 1) if len(gaps) else None,
        "median_days_between_orders": float(np.median(gaps)) if len(gaps) else None,
        "clv_simple": ratio(aov_year * frequency * lifespan, 2),
    }
    parts = {
        "average_order_value": round(aov_year, 2),
        "purchases_per_year": round(frequency, 3),
        "lifespan_years": round(lifespan, 2),
    }
    return headline, parts


def _histogram(gaps: IntArray) -> list[dict[str, Any]]:
    """How many gaps fall in each of :data:`GAP_BINS`."""
    return [
        {
            "from": lo,
            "to": hi,
            "count": int(((gaps >= lo) & (gaps <= (hi or gaps.max(initial=0)))).sum()),
        }
        for lo, hi in GAP_BINS
    ]


def _periods(ds: Dataset, today: int) -> list[dict[str, Any]]:
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
    """The repeat purchase rate as it stood at each of the last 12 month ends (today for the
    current month)."""
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


Groups = dict[str | None, IntArray]
"""Customer indices by a label (a product title, a discount code; None: no code)."""


def _first_products(ds: Dataset) -> Groups:
    """Customers by each product in their first order: the :data:`TOP_GROUPS` products most
    customers started with, those with at least :data:`MIN_GROUP` of them."""
    has = np.diff(ds.order_start) > 0
    if not has.any() or not len(ds.line_order):
        return {}
    first_order = np.zeros(ds.n_orders, dtype=bool)
    first_order[ds.order_start[:-1][has]] = True
    lines = first_order[ds.line_order]
    cust = ds.line_customer()[lines]
    prod = ds.line_product[lines]
    # Distinct (product, customer) pairs as one integer key each: a 1-D unique sorts in place,
    # where ``np.unique(..., axis=1)`` goes through a much slower structured view.
    uprod, pidx = np.unique(prod, return_inverse=True)
    key = distinct(pidx.astype(np.int64) * ds.n_customers + cust)
    pair_product, pair_customer = uprod[key // ds.n_customers], key % ds.n_customers
    products, counts = np.unique(pair_product, return_counts=True)
    label = {int(p): ds.product_titles.get(int(p), str(int(p))) for p in products}
    sized = [(int(n), label[int(p)], int(p)) for p, n in zip(products, counts, strict=True)]
    chosen = sorted((s for s in sized if s[0] >= MIN_GROUP), key=lambda s: (-s[0], s[1]))
    return {title: pair_customer[pair_product == p] for _, title, p in chosen[:TOP_GROUPS]}


def _first_codes(ds: Dataset) -> Groups:
    """Customers by the discount code of their first order (None: no code); the
    :data:`TOP_GROUPS` codes most customers started with, and the customers without one."""
    has = np.nonzero(np.diff(ds.order_start) > 0)[0]
    by_code: dict[str | None, list[int]] = {}
    for c in has.tolist():
        code = ds.order_discount[int(ds.order_start[c])] or None
        by_code.setdefault(code, []).append(c)
    codes = sorted((k for k in by_code if k is not None), key=lambda k: (-len(by_code[k]), k))
    kept = codes[:TOP_GROUPS] + ([None] if None in by_code else [])
    return {k: np.asarray(by_code[k], dtype=np.int64) for k in kept}


def _second_day(ds: Dataset) -> IntArray:
    """Each customer's second distinct order day (-1 for none)."""
    first = np.full(ds.n_customers, -1, dtype=np.int64)
    has = np.diff(ds.order_start) > 0
    first[has] = ds.order_day[ds.order_start[:-1][has]]
    second = np.full(ds.n_customers, -1, dtype=np.int64)
    later = ds.order_day > first[ds.order_customer]
    customers, first_index = np.unique(ds.order_customer[later], return_index=True)
    second[customers] = ds.order_day[later][first_index]
    return np.where(second >= 0, second - first, -1)


def _returning(ds: Dataset, groups: Groups) -> list[dict[str, Any]]:
    """Per group: its customers, the share who ordered again, within 90 and 365 days."""
    delay = _second_day(ds)
    out: list[dict[str, Any]] = []
    for key, members in groups.items():
        n = len(members)
        d = delay[members]
        out.append(
            {
                "key": key,
                "customers": n,
                "repeat_purchase_rate": _rate((d >= 0).sum(), n),
                "returned_within_90_days": _rate(((d >= 0) & (d <= 90)).sum(), n),
                "returned_within_365_days": _rate(((d >= 0) & (d <= 365)).sum(), n),
            }
        )
    out.sort(key=lambda row: (-row["repeat_purchase_rate"], -row["customers"], row["key"] or ""))
    return out


def _cohorts(ds: Dataset, today: int, products: Groups, codes: Groups) -> dict[str, Any]:
    """Retention month by month after the first order, for customers grouped three ways: the
    :data:`COHORT_MONTHS` first-order months up to ``today``, and the largest groups of all
    customers by first product and first discount code (see :func:`cohorts`)."""
    has = np.diff(ds.order_start) > 0
    if not has.any():
        return cohorts(ds, today, 0, -1)
    this_month = int(_month_index(np.array([today]))[0])
    start = int(_month_index(ds.order_day[ds.order_start[:-1][has]]).min())
    found = cohorts(ds, today, start, this_month, products, codes)
    recent = this_month - COHORT_MONTHS
    return {**found, "month": [r for r in found["month"] if month_number(r["key"]) > recent]}


def cohorts(
    ds: Dataset,
    today: int,
    first: int,
    last: int,
    products: Groups | None = None,
    codes: Groups | None = None,
) -> dict[str, Any]:
    """Retention of the customers whose first order fell in months ``first``..``last`` (month
    numbers since 1970-01), grouped by that month and by first product and discount code.

    ``retention[k - 1]`` is the share of a group's customers who ordered in the k-th calendar
    month after their first order's month, among those whose k-th month has ended by ``today``;
    the list stops where no one in the group has completed the month yet, so a month still in
    progress (or not begun) is no figure at all rather than a low or zero one.
    """
    has = np.diff(ds.order_start) > 0
    empty: dict[str, Any] = {"months": COHORT_MONTHS, "month": [], "product": [], "discount": []}
    if not has.any():
        return empty
    first_month = np.full(ds.n_customers, 10**9, dtype=np.int64)
    first_month[has] = _month_index(ds.order_day[ds.order_start[:-1][has]])
    offset = _month_index(ds.order_day) - first_month[ds.order_customer]
    keep = (offset >= 1) & (offset <= COHORT_MONTHS)
    # Each (customer, month after the first) once, as one integer key.
    pairs = distinct(ds.order_customer[keep] * (COHORT_MONTHS + 1) + offset[keep])
    ordered = np.zeros((ds.n_customers, COHORT_MONTHS + 1), dtype=bool)
    ordered[pairs // (COHORT_MONTHS + 1), pairs % (COHORT_MONTHS + 1)] = True
    # The month of the day after ``today``: ``today``'s month is over once it is its last day.
    open_month = int(_month_index(np.array([today + 1]))[0])
    chosen = (first_month >= first) & (first_month <= last)

    def row(key: str | None, members: IntArray) -> dict[str, Any]:
        retention = []
        for k in range(1, COHORT_MONTHS + 1):
            reached = members[first_month[members] + k < open_month]
            if not len(reached):
                break
            retention.append(_rate(ordered[reached, k].sum(), len(reached)))
        return {"key": key, "customers": len(members), "retention": retention}

    by_month = [
        row(_month_label(m), np.nonzero(first_month == m)[0].astype(np.int64))
        for m in range(first, last + 1)
    ]

    def largest(groups: Groups) -> list[dict[str, Any]]:
        within = {k: v[chosen[v]] for k, v in groups.items()}
        ranked = sorted(
            (k for k in within if len(within[k])), key=lambda k: (-len(within[k]), k or "")
        )[:COHORT_GROUPS]
        return [row(k, within[k]) for k in ranked]

    return {
        **empty,
        "month": [r for r in by_month if r["customers"]],
        "product": largest(_first_products(ds) if products is None else products),
        "discount": largest(_first_codes(ds) if codes is None else codes),
    }


def month_label(month: int) -> str:
    """Month number ``month`` as ``YYYY-MM`` (the inverse of :func:`month_number`)."""
    return _month_label(month)


def month_number(label: str) -> int:
    """``YYYY-MM`` as months since 1970-01 (the inverse of the labels cohorts carry)."""
    year, month = label.split("-")
    return (int(year) - 1970) * 12 + int(month) - 1


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


def _rfm_grid(evaluation: Any, who: NDArray[np.bool_] | None = None) -> dict[str, Any]:
    """Customers with orders (of them, those ``who`` marks) by recency score (1-5) and the
    rounded mean of their frequency and monetary scores (1-5), as the RFM groups are cut:
    count and average net spend per cell (cells without customers left out)."""
    r, f_s, m = evaluation.rfm_scores
    has = evaluation.features.has_orders if who is None else evaluation.features.has_orders & who
    fm = np.clip(np.floor((f_s + m) / 2 + 0.5).astype(np.int64), 1, 5)
    cell = (r[has] - 1) * 5 + (fm[has] - 1)
    counts = np.bincount(cell, minlength=25)
    spend = np.bincount(cell, weights=evaluation.features.spend[has], minlength=25)
    groups = np.bincount(evaluation.rfm_group[has], minlength=len(rfm.GROUP_KEYS))
    return {
        "cells": [
            {
                "r": i // 5 + 1,
                "fm": i % 5 + 1,
                "customers": int(counts[i]),
                "average_spend": round(float(spend[i] / counts[i]), 2),
            }
            for i in range(25)
            if counts[i]
        ],
        "groups": {key: int(groups[i]) for i, key in enumerate(rfm.GROUP_KEYS)},
        "edges": evaluation.stats.rfm_edges.to_dict(),
    }


def _share(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def _backtest(result: backtest.Backtest) -> dict[str, Any]:
    """The backtest of the purchase rankings, as numbers the page words in its language (and
    ``text``, the same in English)."""
    return {
        "enough": result.enough,
        "text": result.text,
        "horizon_days": result.horizon,
        "calibration_date": day_date(result.calibration_day).isoformat() if result.enough else None,
        "customers": result.customers,
        "ordered": result.ordered,
        "store_average": _share(result.store_average),
        "likely_size": result.likely_size,
        "likely_ordered": _share(result.likely_ordered),
        "chosen": result.chosen,
        "candidates": len(result.candidates),
    }
