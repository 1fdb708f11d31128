"""RFM scoring: recency, frequency and monetary scores 1-5 and the eleven named groups.

Scores are quintiles of the shop's customers with orders. The quintile edges are shop-level
quantities: a full recompute computes them and caches them, and the incremental recompute of
one customer scores that customer against the cached edges, so a single order does not shift
everyone else's score.

Groups follow the usual recency x (frequency+monetary) grid:

====  =====================================================================
R     F+M average 1 ........................................ 5
5     new | potential loyalist | potential loyalist | champions | champions
4     promising | potential loyalist | potential loyalist | loyal | champions
3     about to sleep | about to sleep | need attention | loyal | loyal
2     hibernating | hibernating | at risk | at risk | can't lose
1     lost | lost | at risk | at risk | can't lose
====  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]

GROUPS: dict[str, str] = {
    "champions": "Champions",
    "loyal": "Loyal",
    "potential-loyalist": "Potential loyalist",
    "new": "New",
    "promising": "Promising",
    "need-attention": "Need attention",
    "about-to-sleep": "About to sleep",
    "at-risk": "At risk",
    "cant-lose": "Can't lose",
    "hibernating": "Hibernating",
    "lost": "Lost",
}

_GRID = (
    # rows: R = 1..5; columns: FM = 1..5
    ("lost", "lost", "at-risk", "at-risk", "cant-lose"),
    ("hibernating", "hibernating", "at-risk", "at-risk", "cant-lose"),
    ("about-to-sleep", "about-to-sleep", "need-attention", "loyal", "loyal"),
    ("promising", "potential-loyalist", "potential-loyalist", "loyal", "champions"),
    ("new", "potential-loyalist", "potential-loyalist", "champions", "champions"),
)
GROUP_KEYS = tuple(GROUPS)
_GRID_CODES = np.array([[GROUP_KEYS.index(g) for g in row] for row in _GRID], dtype=np.int64)


@dataclass(frozen=True)
class RfmEdges:
    """Quintile edges (four each) of days-since-last-order, order count and net spend."""

    recency: tuple[float, ...]
    frequency: tuple[float, ...]
    monetary: tuple[float, ...]

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-able form."""
        return {
            "recency": list(self.recency),
            "frequency": list(self.frequency),
            "monetary": list(self.monetary),
        }

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> RfmEdges:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tuple(map(float, data["recency"])),
            tuple(map(float, data["frequency"])),
            tuple(map(float, data["monetary"])),
        )


def fit_edges(days_since: IntArray, orders: IntArray, spend: NDArray[np.float64]) -> RfmEdges:
    """Quintile edges over customers with orders (the arrays hold only those customers)."""
    qs = [0.2, 0.4, 0.6, 0.8]
    if len(orders) == 0:
        return RfmEdges((0.0,) * 4, (1.0,) * 4, (0.0,) * 4)
    return RfmEdges(
        tuple(float(v) for v in np.quantile(days_since, qs)),
        tuple(float(v) for v in np.quantile(orders, qs)),
        tuple(float(v) for v in np.quantile(spend, qs)),
    )


def scores(
    edges: RfmEdges, days_since: IntArray, orders: IntArray, spend: NDArray[np.float64]
) -> tuple[IntArray, IntArray, IntArray]:
    """R, F, M scores 1-5 (5 best: most recent, most orders, highest spend).

    A value equal to an edge takes the lower score, so with many one-order customers (edges all
    1) a single order scores F = 1 rather than 5.
    """
    r = 5 - np.searchsorted(np.asarray(edges.recency), days_since, side="left")
    f = 1 + np.searchsorted(np.asarray(edges.frequency), orders, side="left")
    m = 1 + np.searchsorted(np.asarray(edges.monetary), spend, side="left")
    return r.astype(np.int64), f.astype(np.int64), m.astype(np.int64)


def groups(r: IntArray, f: IntArray, m: IntArray) -> IntArray:
    """Group codes (indices into :data:`GROUP_KEYS`) from the three scores."""
    fm = np.floor((f + m) / 2 + 0.5).astype(np.int64)  # round half up
    return np.asarray(_GRID_CODES[r - 1, np.clip(fm, 1, 5) - 1], dtype=np.int64)
