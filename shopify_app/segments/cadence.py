"""Each customer's own order rhythm, and the segments read against it.

A customer who orders every 30 days and has been silent for 75 is overdue; one who orders
every 400 days and has been silent for 75 is not. Segments that ignore this contradict
themselves: a "true fan" who orders every 600 days, a "likely buyer" silent for a year. So
every rule here compares a customer's silence with their *usual interval*: their own average
gap between order days, counting one extra gap of the shop's typical length (the median of its
repeat customers' own gaps, once at least ten repeat customers have one). The extra gap keeps
two quick orders from making a weekly customer, and gives one-order customers the shop's
typical gap.

Everything is a plain function over per-customer arrays (indexed alike), so the segment
library, the backtest and the benchmarks share one definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

OVERDUE_FACTOR = 1.5  # silent for longer than this many usual intervals: overdue
SILENCE_LIMIT = 3.0  # silent for longer than this many: gone quiet, never "likely to buy"
FAN_MAX_INTERVAL = 180.0  # true fans usually order at least twice a year
TYPICAL_INTERVAL_FALLBACK = 90.0  # a shop with few repeat customers has no rhythm of its own
# Below this many repeat customers the median of their gaps is one or two customers' habit, not
# the shop's: one customer who ordered twice in two days would make everyone "overdue" in three.
MIN_TYPICAL_REPEATERS = 10
# A customer scored alone (the incremental recompute) may differ from the same customer scored
# among all in the last bits: the likely-to-buy cutoff is met within this relative margin.
CUTOFF_TOLERANCE = 1e-9


def typical_interval(orders: IntArray, first_day: IntArray, last_day: IntArray) -> float:
    """The shop's typical gap between order days: the median of repeat customers' own gaps
    (:data:`TYPICAL_INTERVAL_FALLBACK` below :data:`MIN_TYPICAL_REPEATERS` of them)."""
    repeat = orders > 1
    if int(repeat.sum()) < MIN_TYPICAL_REPEATERS:
        return TYPICAL_INTERVAL_FALLBACK
    own = (last_day[repeat] - first_day[repeat]) / (orders[repeat] - 1)
    return max(float(np.median(own)), 1.0)


def usual_interval(
    orders: IntArray, first_day: IntArray, last_day: IntArray, typical: float
) -> FloatArray:
    """Each customer's usual gap between order days (see the module docstring): their span
    plus one ``typical`` gap, over their order days. Never below one day."""
    span = np.where(orders > 0, last_day - first_day, 0)
    return np.asarray((span + typical) / np.maximum(orders, 1), dtype=np.float64)


@dataclass(frozen=True)
class Rhythm:
    """Each customer's history as of one day, counted in order days (orders placed on the same
    day are one visit), with ``-1`` days for customers without orders."""

    as_of: int
    orders: IntArray  # order days up to and including ``as_of``
    first_day: IntArray
    last_day: IntArray
    recent_orders: IntArray  # order days in the 365 days up to ``as_of``
    spend: FloatArray

    @property
    def has_orders(self) -> BoolArray:
        """Customers with at least one order."""
        return self.orders > 0

    @property
    def days_since_last(self) -> IntArray:
        """Days from the last order to ``as_of`` (large for customers without orders)."""
        return np.where(self.orders > 0, self.as_of - self.last_day, 10**6)

    @property
    def typical_interval(self) -> float:
        """The shop's typical gap between order days (:func:`typical_interval`)."""
        return typical_interval(self.orders, self.first_day, self.last_day)

    @property
    def usual_interval(self) -> FloatArray:
        """Each customer's usual gap between order days (:func:`usual_interval`)."""
        return usual_interval(self.orders, self.first_day, self.last_day, self.typical_interval)

    def model_inputs(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(x, t_x, T)`` in weeks for customers with orders, as the purchase models take them."""
        mask = self.has_orders
        x = (self.orders[mask] - 1).astype(np.float64)
        t_x = (self.last_day[mask] - self.first_day[mask]) / 7.0
        T = (self.as_of - self.first_day[mask]) / 7.0
        return x, t_x, T


def expected_orders(days_since_last: FloatArray, usual: FloatArray, horizon: int) -> FloatArray:
    """The rhythm ranking: expected orders in the next ``horizon`` days, read from the rhythm.

    A customer who orders about every *usual* days and last ordered *since* days ago is
    expected to order about ``horizon / (usual + since)`` times in the next ``horizon`` days:
    as often as their rhythm says while they are on it, and less and less the longer they stay
    silent past it. Someone who orders monthly and bought 10 days ago scores 90 / 40, about two
    orders in 90 days; the same customer silent for 300 days scores 90 / 330, about a quarter.
    """
    return np.asarray(horizon / (usual + np.asarray(days_since_last, np.float64)), np.float64)


def silent_too_long(
    days_since_last: FloatArray, usual: FloatArray, limit: float = SILENCE_LIMIT
) -> BoolArray:
    """Customers silent for more than ``limit`` of their usual intervals."""
    return np.asarray(days_since_last > limit * usual, dtype=np.bool_)


def ranked(scores: FloatArray, days_since_last: FloatArray) -> IntArray:
    """Indices from the highest score down; ties go to the more recent customer."""
    return np.lexsort((days_since_last, -scores)).astype(np.int64)


def likely_cutoff(
    scores: FloatArray,
    days_since_last: FloatArray,
    usual: FloatArray,
    size: int,
    limit: float = SILENCE_LIMIT,
) -> float:
    """The score that puts a customer among the ``size`` highest-ranked, leaving out anyone
    silent for more than ``limit`` of their usual intervals (pass customers with orders only);
    infinity when nobody qualifies. ``size`` comes from :func:`likely_size`.

    A cutoff rather than a count, so one customer can be judged alone against it (the
    incremental recompute); customers tied with the last one are in too.
    """
    eligible = ~silent_too_long(days_since_last, usual, limit) & (scores > 0)
    take = min(size, int(eligible.sum()))
    if take <= 0:
        return math.inf
    order = ranked(np.where(eligible, scores, -np.inf), days_since_last)
    return float(scores[order[take - 1]])


def likely_to_buy(
    scores: FloatArray,
    days_since_last: FloatArray,
    usual: FloatArray,
    cutoff: float,
    limit: float = SILENCE_LIMIT,
) -> BoolArray:
    """Customers scoring at least ``cutoff`` (:func:`likely_cutoff`) who have not been silent
    for more than ``limit`` of their usual intervals."""
    eligible = ~silent_too_long(days_since_last, usual, limit) & (scores > 0)
    return np.asarray(eligible & (scores >= cutoff * (1 - CUTOFF_TOLERANCE)), dtype=np.bool_)


def chance_threshold(store_average: float) -> float:
    """The chance of ordering that earns "likely to buy": twice the store average, or halfway
    from the store average to certain where most customers come back anyway."""
    return min(2 * store_average, (1 + store_average) / 2)


def likely_size(
    ordered_in_rank_order: BoolArray,
    customers: int,
    store_average: float,
    max_share: float = 0.10,
    min_band: int = 25,
) -> int:
    """How many of the top of a ranking are "likely to buy", judged on a backtest.

    ``ordered_in_rank_order`` says, for the eligible customers from the top of the ranking
    down, who ordered in the backtest window. The ranking is cut into bands (1% of customers,
    at least ``min_band``); the segment takes bands from the top while each band's share that
    ordered reaches :func:`chance_threshold`, and never more than ``max_share`` of customers.
    """
    cap = math.ceil(max_share * customers)
    band = max(math.ceil(0.01 * customers), min_band)
    threshold = chance_threshold(store_average)
    size = 0
    for start in range(0, min(len(ordered_in_rank_order), cap), band):
        group = ordered_in_rank_order[start : start + band]
        if float(np.mean(group)) < threshold:
            break
        size = min(start + len(group), cap)
    return size


def at_risk(
    orders: IntArray,
    days_since_last: FloatArray,
    usual: FloatArray,
    spend: FloatArray,
    min_spend: float,
    overdue: float = OVERDUE_FACTOR,
    limit: float = SILENCE_LIMIT,
) -> BoolArray:
    """Valuable repeat customers who are overdue but not yet gone: spent at least
    ``min_spend``, two or more order days, silent for more than ``overdue`` but at most
    ``limit`` of their usual intervals."""
    since = np.asarray(days_since_last, np.float64)
    return np.asarray(
        (orders >= 2) & (spend >= min_spend) & (since > overdue * usual) & (since <= limit * usual),
        dtype=np.bool_,
    )


def true_fans(
    orders: IntArray,
    days_since_last: FloatArray,
    usual: FloatArray,
    min_orders: int = 3,
    overdue: float = OVERDUE_FACTOR,
    max_interval: float = FAN_MAX_INTERVAL,
) -> BoolArray:
    """Repeat customers on their rhythm now: at least ``min_orders`` order days, usually
    ordering at least every ``max_interval`` days, and not overdue."""
    since = np.asarray(days_since_last, np.float64)
    return np.asarray(
        (orders >= min_orders) & (usual <= max_interval) & (since <= overdue * usual),
        dtype=np.bool_,
    )
