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
    """Shop-level yardsticks from the last full recompute (JSON-cached for incremental runs)."""

    as_of: str
    customers: int
    vip_cutoff: float
    at_risk_min_spend: float
    rfm_edges: rfm.RfmEdges
    bgnbd: clv.BgNbdParams | None
    gamma_gamma: clv.GammaGammaParams | None
    model_status: ModelStatus
    model_note: str
    business_domains: list[str]
    regions: list[tuple[str, str, int]]  # (country, province, customers)
    median_interval: float
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
            "bgnbd": self.bgnbd.to_dict() if self.bgnbd else None,
            "gamma_gamma": self.gamma_gamma.to_dict() if self.gamma_gamma else None,
            "model_status": self.model_status,
            "model_note": self.model_note,
            "business_domains": self.business_domains,
            "regions": [list(r) for r in self.regions],
            "median_interval": self.median_interval,
            "mean_order_value": self.mean_order_value,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShopStats:
        """Inverse of :meth:`to_dict`."""
        return cls(
            as_of=str(data["as_of"]),
            customers=int(data.get("customers", 0)),
            vip_cutoff=_inf_if_none(data.get("vip_cutoff")),
            at_risk_min_spend=_inf_if_none(data.get("at_risk_min_spend")),
            rfm_edges=rfm.RfmEdges.from_dict(data["rfm_edges"]),
            bgnbd=clv.BgNbdParams.from_dict(data["bgnbd"]) if data.get("bgnbd") else None,
            gamma_gamma=(
                clv.GammaGammaParams.from_dict(data["gamma_gamma"])
                if data.get("gamma_gamma")
                else None
            ),
            model_status=ModelStatus(data.get("model_status", ModelStatus.FALLBACK)),
            model_note=str(data.get("model_note", "")),
            business_domains=list(data.get("business_domains", [])),
            regions=[(str(c), str(p), int(n)) for c, p, n in data.get("regions", [])],
            median_interval=float(data.get("median_interval", 90.0)),
            mean_order_value=float(data.get("mean_order_value", 0.0)),
        )


@dataclass
class Predictions:
    """Per-customer model outputs (zeros for customers without orders)."""

    p_alive: FloatArray
    purchases_90d: FloatArray
    clv_12m: FloatArray


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
    mean_interval: list[float]
    iso_day: IsoDays = field(default_factory=IsoDays)
    segments: dict[str, SegmentResult] = field(default_factory=dict)

    def put(self, handle: str, mask: BoolArray, reason: Callable[[int], str]) -> None:
        """Add a segment: the customers in ``mask`` who have orders, a reason for each."""
        members = np.nonzero(mask & self.features.has_orders)[0].astype(np.int64)
        self.segments[handle] = SegmentResult(
            self.definitions[handle], members, [reason(i) for i in members.tolist()]
        )

    def members_mask(self, handle: str) -> BoolArray:
        """A segment already put, as a mask over customers."""
        mask = np.zeros(self.dataset.n_customers, dtype=bool)
        mask[self.segments[handle].members] = True
        return mask
