"""What the segment families share: definitions, results, the shop's yardsticks, predictions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shopify_app.segments import clv, rfm

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class SegmentDef:
    """What a segment is: handle, display name, kind and the parameters that define it."""

    handle: str
    name: str
    kind: str  # builtin | rfm | cross_sell | region | custom
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
    model_status: str  # fitted | fallback
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
            model_status=str(data.get("model_status", "fallback")),
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
