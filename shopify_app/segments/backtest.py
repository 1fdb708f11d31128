"""Predictions that are checked: a per-shop backtest of every way we can rank customers.

Which customers will order next is only worth saying if it has been right before, in this
shop. So before ranking anyone, :func:`run` goes back one horizon ``H``: it ranks the
customers as they stood ``H`` days ago by every candidate (the BG/NBD and MBG/NBD models, and
the transparent order-rhythm ranking of :mod:`shopify_app.segments.cadence`), leaves out
anyone silent for more than three of their usual intervals (as ``likely-to-buy`` does), looks
at who actually ordered in the ``H`` days since, and keeps the candidate whose top tenth
ordered most often (the share averaged over its top 1%, 2%, ... 10%: steadier than one cut).
A model that cannot be fitted honestly (too few repeat customers, a degenerate fit) is
reported with its reason and left out; the rhythm ranking always competes.

The horizon is 90 days, or half the shop's history when that is shorter, so that the ranking
is calibrated on at least as much history as it is judged on. Below a 28-day horizon, 50
customers or 10 customers who ordered in the window, the result says "not enough history yet"
instead of numbers.

The same measurement sizes ``likely-to-buy``: from the top of the chosen ranking down, the
segment takes customers while groups ranked like them ordered at least twice as often as the
average customer (:func:`shopify_app.segments.cadence.likely_size`).

Pure: no I/O. The input is :class:`OrderHistory`, which a dataset provides as it is
(:meth:`OrderHistory.of`: ``order_start``, ``order_day``, ``order_total``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

from shopify_app.segments import cadence, clv
from shopify_app.segments.dataset import Dataset, day_date

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

DEFAULT_HORIZON = 90
MIN_HORIZON = 28
MIN_CUSTOMERS = 50
MIN_BUYERS = 10
COMPARE_SHARE = 0.10  # candidates are compared on their top 10% (the segment's largest size)

RHYTHM = "rhythm"
MODELS: dict[str, Callable[[FloatArray, FloatArray, FloatArray], clv.CountParams]] = {
    "bgnbd": clv.fit_bgnbd,
    "mbgnbd": clv.fit_mbgnbd,
}
CANDIDATES = (*MODELS, RHYTHM)
LABELS = {"bgnbd": "the BG/NBD model", "mbgnbd": "the MBG/NBD model", RHYTHM: "order rhythm"}

NOT_ENOUGH = "not enough history yet"


@dataclass(frozen=True)
class OrderHistory:
    """Every customer's orders as day numbers and values, grouped by customer:
    ``day[start[c]:start[c + 1]]`` are customer ``c``'s order days, ascending."""

    start: IntArray
    day: IntArray
    value: FloatArray

    @classmethod
    def of(cls, ds: Dataset) -> OrderHistory:
        """A dataset's orders (already grouped by customer and sorted by day)."""
        return cls(ds.order_start, ds.order_day, ds.order_total)

    @classmethod
    def from_orders(
        cls, customer: IntArray, day: IntArray, value: FloatArray, customers: int
    ) -> OrderHistory:
        """From one row per order (customer index, day number, value), in any order."""
        order = np.lexsort((day, customer))
        customer = np.asarray(customer, np.int64)[order]
        start = np.searchsorted(customer, np.arange(customers + 1)).astype(np.int64)
        return cls(start, np.asarray(day, np.int64)[order], np.asarray(value, np.float64)[order])

    @property
    def customers(self) -> int:
        """Number of customers (with or without orders)."""
        return len(self.start) - 1

    def _rows(self, until: int) -> tuple[IntArray, IntArray, FloatArray]:
        """Customer, day and value of every order on or before ``until``."""
        customer = np.repeat(np.arange(self.customers, dtype=np.int64), np.diff(self.start))
        keep = self.day <= until
        return customer[keep], self.day[keep], self.value[keep]

    def rhythm(self, as_of: int) -> cadence.Rhythm:
        """Each customer as they stood at the end of day ``as_of``."""
        n = self.customers
        customer, day, value = self._rows(as_of)
        new_day = np.ones(len(day), dtype=np.bool_)
        new_day[1:] = (customer[1:] != customer[:-1]) | (day[1:] != day[:-1])
        first_at = np.searchsorted(customer, np.arange(n))
        last_at = np.searchsorted(customer, np.arange(n), side="right") - 1
        has = last_at >= first_at
        first_day = np.full(n, -1, dtype=np.int64)
        last_day = np.full(n, -1, dtype=np.int64)
        first_day[has] = day[first_at[has]]
        last_day[has] = day[last_at[has]]
        recent = new_day & (day > as_of - 365)
        return cadence.Rhythm(
            as_of=as_of,
            orders=np.bincount(customer[new_day], minlength=n).astype(np.int64),
            first_day=first_day,
            last_day=last_day,
            recent_orders=np.bincount(customer[recent], minlength=n).astype(np.int64),
            spend=np.bincount(customer, weights=value, minlength=n).astype(np.float64),
        )

    def ordered_between(self, after: int, until: int) -> BoolArray:
        """Customers with an order after day ``after``, up to and including day ``until``."""
        customer = np.repeat(np.arange(self.customers, dtype=np.int64), np.diff(self.start))
        inside = (self.day > after) & (self.day <= until)
        return np.bincount(customer[inside], minlength=self.customers) > 0


def horizon_for(history_days: int) -> int | None:
    """The backtest horizon: 90 days, or half the shop's history when that is shorter (the
    ranking is calibrated on at least as many days as it is judged on); ``None`` below 28."""
    horizon = min(DEFAULT_HORIZON, history_days // 2)
    return horizon if horizon >= MIN_HORIZON else None


def fit_model(candidate: str, rhythm: cadence.Rhythm) -> clv.CountParams:
    """One of :data:`MODELS` fitted on the customers with orders in ``rhythm``.

    Raises :class:`~shopify_app.segments.clv.DegenerateFit` with a reason when there are too
    few customers to fit or the fit cannot be trusted. Big shops are fitted on a fixed-seed
    random sample (four parameters are pinned down long before 50,000 customers).
    """
    x, t_x, T = rhythm.model_inputs()
    repeat = int((x > 0).sum())
    if len(x) < clv.MIN_CUSTOMERS or repeat < clv.MIN_REPEAT_CUSTOMERS:
        raise clv.DegenerateFit(
            candidate,
            f"too few customers to fit ({len(x)} with orders, {repeat} of them repeat; needs "
            f"{clv.MIN_CUSTOMERS} and {clv.MIN_REPEAT_CUSTOMERS})",
        )
    if len(x) > clv.MAX_FIT_CUSTOMERS:
        pick = np.random.default_rng(0).choice(len(x), clv.MAX_FIT_CUSTOMERS, replace=False)
        x, t_x, T = x[pick], t_x[pick], T[pick]
    return MODELS[candidate](x, t_x, T)


def score(candidate: str, rhythm: cadence.Rhythm, horizon: int) -> FloatArray:
    """Expected orders in the next ``horizon`` days for each customer with orders (in index
    order), by one of :data:`CANDIDATES`; models may raise ``DegenerateFit``."""
    has = rhythm.has_orders
    if candidate == RHYTHM:
        since = rhythm.days_since_last[has].astype(np.float64)
        return cadence.expected_orders(since, rhythm.usual_interval[has], horizon)
    x, t_x, T = rhythm.model_inputs()
    return clv.expected_purchases(fit_model(candidate, rhythm), horizon / 7, x, t_x, T)


@dataclass(frozen=True)
class CandidateResult:
    """How one candidate ranked in the backtest (``refused`` says why it could not compete)."""

    name: str
    top_share: float  # share of its top 10% that ordered in the window
    top_average: float  # the same share for its top 1%, 2%, ... 10%, averaged
    auc: float  # chance a customer who ordered was ranked above one who did not
    refused: str | None = None

    @property
    def label(self) -> str:
        """The candidate in words."""
        return LABELS[self.name]


@dataclass(frozen=True)
class Backtest:
    """What the backtest found. Without enough history, ``enough`` is false, ``note`` says why
    and the numbers are empty (``chosen`` falls back to the rhythm ranking)."""

    as_of: int
    horizon: int
    enough: bool
    note: str
    calibration_day: int = 0
    customers: int = 0  # customers with orders at the calibration day
    ordered: int = 0  # of them, how many ordered in the window
    compared_at: int = 0  # the size at which candidates were compared
    candidates: tuple[CandidateResult, ...] = ()
    chosen: str = RHYTHM
    likely_share: float = 0.0  # likely-to-buy's size, as a share of customers with orders
    likely_size: int = 0  # ... in the backtest
    likely_ordered: float = math.nan  # ... and the share of them that ordered

    @property
    def store_average(self) -> float:
        """Share of customers (with orders at the calibration day) who ordered in the window."""
        return self.ordered / self.customers if self.customers else math.nan

    def candidate(self, name: str) -> CandidateResult | None:
        """One candidate's result, if it ran."""
        return next((c for c in self.candidates if c.name == name), None)

    @property
    def text(self) -> str:
        """The result in plain words, for the page and ``analyze``."""
        if not self.enough:
            return f"{NOT_ENOUGH}: {self.note}"
        day = _words(day_date(self.calibration_day))
        average = f"store average {self.store_average:.0%}"
        ranking = f"Ranked by {LABELS[self.chosen]}, the best of {len(self.candidates)} ways tried."
        if not self.likely_size:
            return (
                f"On {day} no group of customers stood out: none ordered within {self.horizon} "
                f"days at twice the store average ({average}). {ranking}"
            )
        return (
            f"Of the {self.likely_size:,} customers we would have called likely to buy on {day}, "
            f"{self.likely_ordered:.0%} ordered within {self.horizon} days; {average}. {ranking}"
        )


def _words(day: dt.date) -> str:
    return f"{day.day} {day:%B} {day.year}"


def auc(scores: FloatArray, positive: BoolArray) -> float:
    """Area under the ROC curve (ties count half): the chance that a customer who ordered is
    ranked above one who did not. 0.5 is a coin toss."""
    pos = int(positive.sum())
    neg = len(positive) - pos
    if not pos or not neg:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - pos * (pos + 1) / 2) / (pos * neg))


def run(history: OrderHistory, as_of: int, horizon: int | None = None) -> Backtest:
    """Backtest every candidate on ``history`` as of day ``as_of`` (see the module docstring).

    ``horizon`` overrides :func:`horizon_for` (the benchmark uses 90 days throughout).
    """
    days = history.day[history.day <= as_of]
    history_days = int(as_of - days.min()) if len(days) else 0
    chosen_horizon = horizon if horizon is not None else horizon_for(history_days)
    if chosen_horizon is None:
        return Backtest(
            as_of,
            0,
            False,
            f"{history_days} days of orders; the backtest needs {2 * MIN_HORIZON}",
        )
    cut = as_of - chosen_horizon
    rhythm = history.rhythm(cut)
    has = rhythm.has_orders
    ordered = history.ordered_between(cut, as_of)[has]
    customers, buyers = int(has.sum()), int(ordered.sum())
    if customers < MIN_CUSTOMERS or buyers < MIN_BUYERS:
        return Backtest(
            as_of,
            chosen_horizon,
            False,
            f"{customers} customers on {_words(day_date(cut))}, {buyers} of whom ordered in the "
            f"next {chosen_horizon} days; the backtest needs {MIN_CUSTOMERS} and {MIN_BUYERS}",
        )
    since = rhythm.days_since_last[has].astype(np.float64)
    eligible = ~cadence.silent_too_long(since, rhythm.usual_interval[has])
    compared_at = min(math.ceil(COMPARE_SHARE * customers), int(eligible.sum()))
    results: list[CandidateResult] = []
    orders: dict[str, IntArray] = {}
    for name in CANDIDATES:
        try:
            scores = score(name, rhythm, chosen_horizon)
        except clv.DegenerateFit as refused:
            results.append(CandidateResult(name, math.nan, math.nan, math.nan, refused.reason))
            continue
        order = cadence.ranked(np.where(eligible, scores, -np.inf), since)[: int(eligible.sum())]
        orders[name] = order
        hits = np.cumsum(ordered[order[:compared_at]])
        # The top 10% in ten steps: one cut alone is the noisiest way to compare rankings.
        steps = np.unique(np.ceil(np.arange(1, 11) / 10 * compared_at).astype(np.int64))
        steps = steps[steps > 0]
        results.append(
            CandidateResult(
                name,
                float(hits[-1] / compared_at) if compared_at else 0.0,
                float(np.mean(hits[steps - 1] / steps)) if len(steps) else 0.0,
                auc(scores, ordered),
            )
        )
    # The best share across the top wins; the better overall ranking breaks a tie, and then
    # the rhythm ranking, which a merchant can check by hand.
    best = max(
        (r for r in results if r.refused is None),
        key=lambda r: (r.top_average, r.auc, r.name == RHYTHM),
    )
    in_order = ordered[orders[best.name]]
    size = cadence.likely_size(in_order, customers, buyers / customers)
    return Backtest(
        as_of=as_of,
        horizon=chosen_horizon,
        enough=True,
        note="",
        calibration_day=cut,
        customers=customers,
        ordered=buyers,
        compared_at=compared_at,
        candidates=tuple(results),
        chosen=best.name,
        likely_share=size / customers,
        likely_size=size,
        likely_ordered=float(in_order[:size].mean()) if size else math.nan,
    )
