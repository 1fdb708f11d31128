"""Proof that an action worked: treated vs hold-out customers, redemptions, recoveries.

Pure computation over entries (a customer entering a measured segment, held out or not) and a
:class:`~shopify_app.segments.dataset.Dataset`'s orders, so the page (entries recorded by
:mod:`shopify_app.actions.entries`) and ``analyze`` (entries reconstructed from a CSV's order
history by :func:`lapse_entries`) print the same numbers from the same code.

Definitions, each a line the merchant can read:

- a *cohort* is the customers who entered a segment in one calendar month;
- *repurchase rate*: the share of a group who ordered within :data:`WINDOW_DAYS` days after
  entering, with a Wilson 95% interval;
- *revenue per customer*: their net order value in that window, averaged over the whole group
  (non-buyers count as 0), with a Welch (Student t) 95% interval for the mean;
- a cohort whose window has not closed yet is marked ``open``; below :data:`MIN_GROUP`
  customers in a group the numbers are shown with ``enough`` false ("not enough customers yet");
- a *redemption* is an order carrying the tier's code; a tier's *recovered* customers entered it
  and then ordered within the window.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from shopify_app.errors import InputError
from shopify_app.segments.config import ShopConfig, lapsed_handle
from shopify_app.segments.dataset import Dataset, day_date, day_number

WINDOW_DAYS = 60
MIN_GROUP = 30
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Entry:
    """Customer (dataset index) ``customer`` entered ``segment`` on ``day`` (dataset day)."""

    segment: str
    customer: int
    day: int
    held_out: bool


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes out of ``n`` (``(0, 1)`` when ``n`` is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At k = 0 (or n) the bound is exactly 0 (or 1); rounding would leave 1.7e-18 on the page.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    return low, 1.0 if k == n else min(1.0, centre + half)


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and its Welch (Student t) 95% interval; a single value's interval is itself."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return 0.0, 0.0, 0.0
    mean = float(x.mean())
    if len(x) < 2:
        return mean, mean, mean
    half = float(sps.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    # One buyer among many non-buyers puts the t interval below zero, and revenue (net of
    # refunds, non-buyers 0) is never negative: the lower end stops at 0.
    return mean, max(mean - half, 0.0), mean + half


def _window(ds: Dataset, entry: Entry, end: int) -> tuple[float, int, list[int]]:
    """Revenue, orders and the order indices of ``entry``'s customer from the day it entered
    to day ``end``: days are whole, and an entry recorded by a recompute at noon is followed
    by that afternoon's order (a reconstructed lapse is never followed by an order that day)."""
    lo, hi = int(ds.order_start[entry.customer]), int(ds.order_start[entry.customer + 1])
    days = ds.order_day[lo:hi]
    inside = [lo + int(i) for i in np.nonzero((days >= entry.day) & (days <= end))[0]]
    return float(ds.order_total[inside].sum()) if inside else 0.0, len(inside), inside


def _group(outcomes: list[tuple[bool, float]]) -> dict[str, Any]:
    n = len(outcomes)
    buyers = sum(1 for bought, _ in outcomes if bought)
    lo, hi = wilson(buyers, n)
    mean, mlo, mhi = mean_interval([revenue for _, revenue in outcomes])
    return {
        "customers": n,
        "repurchased": buyers,
        "rate": buyers / n if n else None,
        "rate_ci": [lo, hi] if n else None,
        "revenue_per_customer": mean if n else None,
        "revenue_ci": [mlo, mhi] if n else None,
        "enough": n >= MIN_GROUP,
    }


def cohorts(
    ds: Dataset, entries: Iterable[Entry], as_of_day: int, window: int = WINDOW_DAYS
) -> list[dict[str, Any]]:
    """Per segment and month of entry: the treated and the hold-out group's outcomes."""
    groups: dict[tuple[str, str], dict[bool, list[tuple[bool, float]]]] = defaultdict(
        lambda: {False: [], True: []}
    )
    for entry in entries:
        if entry.day > as_of_day:
            continue
        revenue, orders, _ = _window(ds, entry, min(entry.day + window, as_of_day))
        month = day_date(entry.day).strftime("%Y-%m")
        groups[(entry.segment, month)][entry.held_out].append((orders > 0, revenue))
    rows = []
    for (segment, month), split in sorted(groups.items()):
        year, mon = int(month[:4]), int(month[5:])
        next_month = dt.date(year + mon // 12, mon % 12 + 1, 1)
        month_end = day_number(next_month) - 1
        rows.append(
            {
                "segment": segment,
                "month": month,
                "open": month_end + window > as_of_day,
                "treated": _group(split[False]),
                "held_out": _group(split[True]),
            }
        )
    return rows


def tiers(
    ds: Dataset,
    entries: Iterable[Entry],
    codes: Mapping[str, Iterable[str]],
    as_of_day: int,
    window: int = WINDOW_DAYS,
) -> list[dict[str, Any]]:
    """Per lapsed tier (``codes`` maps its handle to the codes it used): redemptions and
    recovered customers with their revenue."""
    by_segment: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.day <= as_of_day:
            by_segment[entry.segment].append(entry)
    rows = []
    for handle, tier_codes in codes.items():
        wanted = {c.strip().upper() for c in tier_codes if c.strip()}
        redeemed = [
            i
            for i, code in enumerate(ds.order_discount)
            if code and code.upper() in wanted and ds.order_day[i] <= as_of_day
        ]
        recovered: set[int] = set()
        revenue = 0.0
        counted: set[int] = set()
        for entry in by_segment.get(handle, []):
            _, orders, inside = _window(ds, entry, min(entry.day + window, as_of_day))
            if orders:
                recovered.add(entry.customer)
                fresh = [i for i in inside if i not in counted]
                counted.update(fresh)
                revenue += float(ds.order_total[fresh].sum()) if fresh else 0.0
        rows.append(
            {
                "segment": handle,
                "codes": sorted(wanted),
                "redemptions": len(redeemed),
                "redemption_revenue": float(ds.order_total[redeemed].sum()) if redeemed else 0.0,
                "entered": len({e.customer for e in by_segment.get(handle, [])}),
                "recovered": len(recovered),
                "recovered_revenue": revenue,
            }
        )
    return rows


def lapse_entries(ds: Dataset, cfg: ShopConfig, as_of_day: int) -> list[Entry]:
    """Entries into each lapsed tier rebuilt from order history (an export has no recorded
    entries): a customer enters tier ``t`` ``days_t`` after an order not followed by another
    within ``days_t``. An export does not say who was held out (the app's split hashes
    Shopify's customer id, which the export lacks), so every entry counts as treated."""
    found = []
    for t, spec in enumerate(cfg.lapsed_tiers, start=1):
        handle = lapsed_handle(t)
        for c in range(ds.n_customers):
            days = ds.order_day[int(ds.order_start[c]) : int(ds.order_start[c + 1])]
            following = np.append(days[1:], as_of_day + 1)
            for last, nxt in zip(days, following, strict=True):
                enters = int(last) + spec.days
                if enters < nxt and enters <= as_of_day:
                    found.append(Entry(handle, c, enters, held_out=False))
    return found


def codes_by_tier(cfg: ShopConfig, codes: Iterable[str]) -> dict[str, list[str]]:
    """Win-back codes assigned to the tier whose percentage they carry (``COMEBACK15-7KQ2`` to
    the 15% tier, as :func:`shopify_app.actions.discounts.new_code` writes them)."""
    by_percent = {
        spec.discount_percent: lapsed_handle(t) for t, spec in enumerate(cfg.lapsed_tiers, 1)
    }
    found: dict[str, list[str]] = {handle: [] for handle in by_percent.values()}
    for raw in codes:
        code = raw.strip().upper()
        if not code:
            continue
        digits = re.fullmatch(r"COMEBACK(\d+)-[A-Z0-9]+", code)
        if digits is None or int(digits.group(1)) not in by_percent:
            known = ", ".join(f"COMEBACK{p}-…" for p in by_percent)
            raise InputError(
                f"{raw!r} is not a win-back code of a lapsed tier (expected {known})",
                field="codes",
            )
        found[by_percent[int(digits.group(1))]].append(code)
    return found


def report(
    ds: Dataset,
    entries: Sequence[Entry],
    codes: Mapping[str, Iterable[str]],
    as_of_day: int,
    window: int = WINDOW_DAYS,
) -> dict[str, Any]:
    """Everything the results panel and ``analyze`` show, with the definitions' parameters."""
    return {
        "window_days": window,
        "min_group": MIN_GROUP,
        "cohorts": cohorts(ds, entries, as_of_day, window),
        "tiers": tiers(ds, entries, codes, as_of_day, window),
    }
