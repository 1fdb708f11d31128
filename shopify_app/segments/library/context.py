"""What the segment families share: definitions, results, yardsticks, predictions, the context.

:class:`Context` is one evaluation's inputs: every family reads it and adds its segments to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shopify_app.segments import clv, rfm
from shopify_app.segments.backtest import PARAMS, Backtest
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import Dataset, Features, FloatArray, IntArray
from shopify_app.segments.library.reasons import IsoDays
from shopify_app.states import ModelStatus, SegmentKind

BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class SegmentDef:
    """What a segment is: handle, display name, kind and the parameters that define it."""

    handle: str
    name: str
    kind: SegmentKind
    definition: dict[str, Any] = field(default_factory=dict)


@dataclass
class SegmentResult:
    """A segment's members (customer indices, ascending) and one reason per member.

    Reasons are in their stored form (JSON, see :class:`~.reasons.Reason`);
    :func:`~.reasons.render` says one in English.
    """

    definition: SegmentDef
    members: IntArray
    reasons: list[str]

    @property
    def count(self) -> int:
        """Number of members."""
        return len(self.members)


def finite_or_none(value: float) -> float | None:
    """The value, or None for infinities: JSON has none (PostgreSQL refuses them)."""
    return value if math.isfinite(value) else None


def _inf_if_none(value: Any) -> float:
    return math.inf if value is None else float(value)


@dataclass
class ShopStats:
    """Shop-level yardsticks from the last full recompute (JSON-cached for incremental runs).

    The predictions part (see :mod:`.predictions`): ``backtest`` is what the shop's backtest
    found; ``ranking`` the candidate that orders ``likely-to-buy`` (``None``: no predictions,
    the backtest had not enough history); ``purchase_model`` the fitted model behind expected
    purchases, chance of being active and 12-month value (``None``: none could be trusted);
    ``models`` every candidate model fitted on the whole history; ``model_note`` all of that in
    plain words.
    """

    as_of: str
    customers: int
    vip_cutoff: float
    at_risk_min_spend: float
    rfm_edges: rfm.RfmEdges
    backtest: Backtest
    ranking: str | None
    purchase_model: str | None
    models: dict[str, clv.CountParams]
    gamma_gamma: clv.GammaGammaParams | None
    model_status: ModelStatus  # fitted (a purchase model is in use) | fallback
    model_note: str
    horizon: int  # days the ranking looks ahead (the backtest's horizon)
    likely_share: float  # likely-to-buy's size as a share of customers with orders
    likely_min_score: float  # the ranking score that earns likely-to-buy (inf: nobody)
    typical_interval: float  # days (:func:`shopify_app.segments.cadence.typical_interval`)
    business_domains: list[str]
    regions: list[tuple[str, str, int]]  # (country, province, customers)
    mean_order_value: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "as_of": self.as_of,
            "customers": self.customers,
            # JSON has no infinity (PostgreSQL refuses it): "nobody qualifies" is stored as null.
            "vip_cutoff": finite_or_none(self.vip_cutoff),
            "at_risk_min_spend": finite_or_none(self.at_risk_min_spend),
            "rfm_edges": self.rfm_edges.to_dict(),
            "backtest": self.backtest.to_dict(),
            "ranking": self.ranking,
            "purchase_model": self.purchase_model,
            "models": {name: params.to_dict() for name, params in self.models.items()},
            "gamma_gamma": self.gamma_gamma.to_dict() if self.gamma_gamma else None,
            "model_status": self.model_status,
            "model_note": self.model_note,
            "horizon": self.horizon,
            "likely_share": self.likely_share,
            "likely_min_score": finite_or_none(self.likely_min_score),
            "typical_interval": self.typical_interval,
            "business_domains": self.business_domains,
            "regions": [list(r) for r in self.regions],
            "mean_order_value": self.mean_order_value,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShopStats:
        """Inverse of :meth:`to_dict`. Raises ``KeyError`` for stats cached before the
        backtest existed: the caller then waits for a full recompute."""
        return cls(
            as_of=str(data["as_of"]),
            customers=int(data.get("customers", 0)),
            vip_cutoff=_inf_if_none(data.get("vip_cutoff")),
            at_risk_min_spend=_inf_if_none(data.get("at_risk_min_spend")),
            rfm_edges=rfm.RfmEdges.from_dict(data["rfm_edges"]),
            backtest=Backtest.from_dict(data["backtest"]),
            ranking=None if data.get("ranking") is None else str(data["ranking"]),
            purchase_model=(
                None if data.get("purchase_model") is None else str(data["purchase_model"])
            ),
            models={
                name: PARAMS[name].from_dict(params)
                for name, params in (data.get("models") or {}).items()
            },
            gamma_gamma=(
                clv.GammaGammaParams.from_dict(data["gamma_gamma"])
                if data.get("gamma_gamma")
                else None
            ),
            model_status=ModelStatus(data.get("model_status", ModelStatus.FALLBACK)),
            model_note=str(data.get("model_note", "")),
            horizon=int(data["horizon"]),
            likely_share=float(data.get("likely_share", 0.0)),
            likely_min_score=_inf_if_none(data.get("likely_min_score")),
            typical_interval=float(data["typical_interval"]),
            business_domains=list(data.get("business_domains", [])),
            regions=[(str(c), str(p), int(n)) for c, p, n in data.get("regions", [])],
            mean_order_value=float(data.get("mean_order_value", 0.0)),
        )


@dataclass
class Predictions:
    """Per-customer model outputs (zeros for customers without orders). Without a trusted
    purchase model (``available`` false) they are NaN: no numbers rather than made-up ones."""

    p_alive: FloatArray
    purchases_90d: FloatArray
    clv_12m: FloatArray
    available: bool


@dataclass
class Context:
    """One evaluation's inputs, built once and read by every segment family.

    A family computes its members as a mask over customers and adds them with :meth:`put`;
    families later in the display order may read the segments already put (true fans leave
    business buyers out).
    """

    dataset: Dataset
    features: Features
    cfg: ShopConfig
    stats: ShopStats
    predictions: Predictions
    companies: list[str]  # a company name per customer, '' for none
    regions: list[tuple[str, str]]  # (country, province) per customer
    rfm_scores: tuple[IntArray, IntArray, IntArray]
    rfm_group: IntArray  # -1 for customers without orders
    definitions: dict[str, SegmentDef]
    # Reasons are formatted per member (a million strings on a big shop): Python numbers from
    # lists format several times faster than numpy scalars indexed one by one.
    n_orders: list[int]
    last_day: list[int]
    spend: list[float]
    # Each customer's usual gap between order days (the rhythm every cadence rule reads,
    # :func:`shopify_app.segments.cadence.usual_interval`), and rounded to days for reasons.
    usual_interval: FloatArray
    usual_days: list[int]
    iso_day: IsoDays = field(default_factory=IsoDays)
    segments: dict[str, SegmentResult] = field(default_factory=dict)

    def put(self, handle: str, mask: BoolArray, reason: Callable[[int], str]) -> None:
        """Add a segment: the customers in ``mask`` who have orders, a reason for each."""
        members = np.nonzero(mask & self.features.has_orders)[0].astype(np.int64, copy=False)
        self.segments[handle] = SegmentResult(
            self.definitions[handle], members, [reason(i) for i in members.tolist()]
        )

    def members_mask(self, handle: str) -> BoolArray:
        """A segment already put, as a mask over customers."""
        mask = np.zeros(self.dataset.n_customers, dtype=bool)
        mask[self.segments[handle].members] = True
        return mask
