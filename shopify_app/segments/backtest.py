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
instead of numbers (:data:`MESSAGES` says so, in words the page translates).

The same measurement sizes ``likely-to-buy``: from the top of the chosen ranking down, the
segment takes customers while groups ranked like them ordered at least twice as often as the
average customer (:func:`shopify_app.segments.cadence.likely_size`); and it measures the
shop's ``at-risk`` rule the same way: who it would have named, and how many of them ordered,
against their peers who were on their rhythm.

Pure: no I/O. The input is :class:`OrderHistory`, which a dataset provides as it is
(:meth:`OrderHistory.of`: ``order_start``, ``order_day``, ``order_total``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
PARAMS: dict[str, type[clv.BgNbdParams] | type[clv.MbgNbdParams]] = {
    "bgnbd": clv.BgNbdParams,
    "mbgnbd": clv.MbgNbdParams,
}  # each model's fitted parameters (their ``from_dict`` reads them back)
CANDIDATES = (*MODELS, RHYTHM)
LABELS = {"bgnbd": "the BG/NBD model", "mbgnbd": "the MBG/NBD model", RHYTHM: "order rhythm"}


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

    @property
    def merit(self) -> tuple[float, float, bool]:
        """What :func:`run` chooses by: the best share across the top, then the better
        overall ranking, then the rhythm ranking, which a merchant can check by hand."""
        return (self.top_average, self.auc, self.name == RHYTHM)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (NaN, where the candidate was refused, as null)."""
        return {
            "name": self.name,
            "top_share": _finite(self.top_share),
            "top_average": _finite(self.top_average),
            "auc": _finite(self.auc),
            "refused": self.refused,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            top_share=_nan_if_none(data.get("top_share")),
            top_average=_nan_if_none(data.get("top_average")),
            auc=_nan_if_none(data.get("auc")),
            refused=None if data.get("refused") is None else str(data["refused"]),
        )


# What the backtest says, in English: ``analyze`` and the benchmark print these, and the page
# shows web/i18n/<lang>.json's ``prediction.<key>`` with the same placeholders (a test checks
# en.json holds exactly these). ``*_date`` is an ISO day, ``*_share`` a fraction shown as a
# percentage, ``ranking`` a candidate's name (:data:`LABELS`).
MESSAGES: dict[str, str] = {
    "short_history": (
        "not enough history yet: the backtest needs {needed_days} days of orders, this store "
        "has {history_days}"
    ),
    "few_customers": (
        "not enough history yet: the backtest needs {needed_customers} customers on "
        "{calibration_date} and {needed_ordered} of them ordering in the next {horizon} days; "
        "this store had {customers} and {ordered}"
    ),
    "likely": (
        "Of the {size} customers we would have called likely to buy on {calibration_date}, "
        "{ordered_share} ordered within {horizon} days; store average {average_share}."
    ),
    "likely_none": (
        "On {calibration_date} no group of customers stood out: none ordered within {horizon} "
        "days at twice the store average ({average_share})."
    ),
    "at_risk": (
        "Customers we would have called at risk on {calibration_date}: {size}. {ordered_share} "
        "of them ordered within {horizon} days, against {peers_share} of the repeat customers "
        "who had spent as much and were on their rhythm; store average {average_share}."
    ),
    "at_risk_no_peers": (
        "Customers we would have called at risk on {calibration_date}: {size}. {ordered_share} "
        "of them ordered within {horizon} days; store average {average_share}."
    ),
    "at_risk_none": "On {calibration_date} nobody would have been at risk.",
    "ranking": "Ranked by {ranking}, the best of {tried} ways tried.",
}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _nan_if_none(value: Any) -> float:
    return math.nan if value is None else float(value)


def _words(day: dt.date) -> str:
    return f"{day.day} {day:%B} {day.year}"


def english(key: str, params: dict[str, Any]) -> str:
    """One of :data:`MESSAGES` in English."""
    shown: dict[str, str] = {}
    for name, value in params.items():
        if name.endswith("_date"):
            shown[name] = _words(dt.date.fromisoformat(value))
        elif name.endswith("_share"):
            shown[name] = f"{value:.0%}"
        elif name == "ranking":
            shown[name] = LABELS[value]
        elif isinstance(value, int):
            shown[name] = f"{value:,}"
        else:
            shown[name] = str(value)
    return MESSAGES[key].format(**shown)


@dataclass(frozen=True)
class Backtest:
    """What the backtest found. Without enough history, ``enough`` is false, ``why`` and
    ``why_params`` say why (a key of :data:`MESSAGES`) and the numbers are empty (``chosen``
    falls back to the rhythm ranking)."""

    as_of: int
    horizon: int
    enough: bool
    why: str = ""
    why_params: dict[str, Any] = field(default_factory=dict)
    calibration_day: int = 0
    customers: int = 0  # customers with orders at the calibration day
    ordered: int = 0  # of them, how many ordered in the window
    compared_at: int = 0  # the size at which candidates were compared
    candidates: tuple[CandidateResult, ...] = ()
    chosen: str = RHYTHM
    likely_share: float = 0.0  # likely-to-buy's size, as a share of customers with orders
    likely_size: int = 0  # ... in the backtest
    likely_ordered: float = math.nan  # ... and the share of them that ordered
    at_risk_size: int = 0  # customers at-risk would have held at the calibration day
    at_risk_ordered: float = math.nan  # ... and the share of them that ordered
    # The same share for their peers: repeat customers who had spent as much, on their rhythm.
    at_risk_peers_ordered: float = math.nan

    @property
    def store_average(self) -> float:
        """Share of customers (with orders at the calibration day) who ordered in the window."""
        return self.ordered / self.customers if self.customers else math.nan

    @property
    def note(self) -> str:
        """Why there is not enough history, in English ('' when there is)."""
        return english(self.why, self.why_params) if self.why else ""

    def candidate(self, name: str) -> CandidateResult | None:
        """One candidate's result, if it ran."""
        return next((c for c in self.candidates if c.name == name), None)

    def ranked(self) -> list[str]:
        """The candidates that competed, best first (the first is ``chosen``)."""
        competed = [c for c in self.candidates if c.refused is None]
        return [c.name for c in sorted(competed, key=lambda c: c.merit, reverse=True)]

    def messages(self, segment: str = "likely-to-buy") -> list[tuple[str, dict[str, Any]]]:
        """What the backtest says about ``likely-to-buy`` or ``at-risk``, as (key of
        :data:`MESSAGES`, parameters): the page translates them, :attr:`text` says them."""
        if not self.enough:
            return [(self.why, self.why_params)]
        common = {
            "calibration_date": day_date(self.calibration_day).isoformat(),
            "horizon": self.horizon,
            "average_share": self.store_average,
        }
        if segment == "at-risk":
            if not self.at_risk_size:
                return [("at_risk_none", {"calibration_date": common["calibration_date"]})]
            found = {**common, "size": self.at_risk_size, "ordered_share": self.at_risk_ordered}
            if math.isnan(self.at_risk_peers_ordered):
                return [("at_risk_no_peers", found)]
            return [("at_risk", {**found, "peers_share": self.at_risk_peers_ordered})]
        ranking = ("ranking", {"ranking": self.chosen, "tried": len(self.candidates)})
        if not self.likely_size:
            return [("likely_none", common), ranking]
        size = {"size": self.likely_size, "ordered_share": self.likely_ordered}
        return [("likely", {**common, **size}), ranking]

    @property
    def text(self) -> str:
        """The result for ``likely-to-buy`` in plain words, for ``analyze``."""
        return " ".join(english(key, params) for key, params in self.messages())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (kept in the shop's cached statistics; NaN as null)."""
        return {
            "as_of": self.as_of,
            "horizon": self.horizon,
            "enough": self.enough,
            "why": self.why,
            "why_params": dict(self.why_params),
            "calibration_day": self.calibration_day,
            "customers": self.customers,
            "ordered": self.ordered,
            "compared_at": self.compared_at,
            "candidates": [c.to_dict() for c in self.candidates],
            "chosen": self.chosen,
            "likely_share": self.likely_share,
            "likely_size": self.likely_size,
            "likely_ordered": _finite(self.likely_ordered),
            "at_risk_size": self.at_risk_size,
            "at_risk_ordered": _finite(self.at_risk_ordered),
            "at_risk_peers_ordered": _finite(self.at_risk_peers_ordered),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Backtest:
        """Inverse of :meth:`to_dict`."""
        return cls(
            as_of=int(data["as_of"]),
            horizon=int(data["horizon"]),
            enough=bool(data["enough"]),
            why=str(data.get("why", "")),
            why_params=dict(data.get("why_params") or {}),
            calibration_day=int(data.get("calibration_day", 0)),
            customers=int(data.get("customers", 0)),
            ordered=int(data.get("ordered", 0)),
            compared_at=int(data.get("compared_at", 0)),
            candidates=tuple(CandidateResult.from_dict(c) for c in data.get("candidates", [])),
            chosen=str(data.get("chosen", RHYTHM)),
            likely_share=float(data.get("likely_share", 0.0)),
            likely_size=int(data.get("likely_size", 0)),
            likely_ordered=_nan_if_none(data.get("likely_ordered")),
            at_risk_size=int(data.get("at_risk_size", 0)),
            at_risk_ordered=_nan_if_none(data.get("at_risk_ordered")),
            at_risk_peers_ordered=_nan_if_none(data.get("at_risk_peers_ordered")),
        )


def auc(scores: FloatArray, positive: BoolArray) -> float:
    """Area under the ROC curve (ties count half): the chance that a customer who ordered is
    ranked above one who did not. 0.5 is a coin toss."""
    pos = int(positive.sum())
    neg = len(positive) - pos
    if not pos or not neg:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - pos * (pos + 1) / 2) / (pos * neg))


def run(
    history: OrderHistory,
    as_of: int,
    horizon: int | None = None,
    *,
    overdue: float = cadence.OVERDUE_FACTOR,
    at_risk_spend_share: float = 0.5,
) -> Backtest:
    """Backtest every candidate on ``history`` as of day ``as_of`` (see the module docstring).

    ``horizon`` overrides :func:`horizon_for` (the benchmark uses 90 days throughout).
    ``overdue`` and ``at_risk_spend_share`` are the shop's at-risk rule (overdue by more than
    that many usual intervals; spent at least that quantile of customers' spend), measured
    the same way: who it would have named at the calibration day, and how many of them ordered.
    """
    days = history.day[history.day <= as_of]
    history_days = int(as_of - days.min()) if len(days) else 0
    chosen_horizon = horizon if horizon is not None else horizon_for(history_days)
    if chosen_horizon is None:
        return Backtest(
            as_of,
            0,
            False,
            "short_history",
            {"history_days": history_days, "needed_days": 2 * MIN_HORIZON},
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
            "few_customers",
            {
                "customers": customers,
                "calibration_date": day_date(cut).isoformat(),
                "ordered": buyers,
                "horizon": chosen_horizon,
                "needed_customers": MIN_CUSTOMERS,
                "needed_ordered": MIN_BUYERS,
            },
        )
    since = rhythm.days_since_last[has].astype(np.float64)
    usual = rhythm.usual_interval[has]
    eligible = ~cadence.silent_too_long(since, usual)
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
    best = max((r for r in results if r.refused is None), key=lambda r: r.merit)
    in_order = ordered[orders[best.name]]
    size = cadence.likely_size(in_order, customers, buyers / customers)
    spend = rhythm.spend[has]
    min_spend = float(np.quantile(spend, at_risk_spend_share))
    risk = cadence.at_risk(rhythm.orders[has], since, usual, spend, min_spend, overdue=overdue)
    peers = (rhythm.orders[has] >= 2) & (spend >= min_spend) & (since <= overdue * usual)
    return Backtest(
        as_of=as_of,
        horizon=chosen_horizon,
        enough=True,
        calibration_day=cut,
        customers=customers,
        ordered=buyers,
        compared_at=compared_at,
        candidates=tuple(results),
        chosen=best.name,
        likely_share=size / customers,
        likely_size=size,
        likely_ordered=float(in_order[:size].mean()) if size else math.nan,
        at_risk_size=int(risk.sum()),
        at_risk_ordered=float(ordered[risk].mean()) if risk.any() else math.nan,
        at_risk_peers_ordered=float(ordered[peers].mean()) if peers.any() else math.nan,
    )
