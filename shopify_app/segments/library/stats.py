"""The shop-level yardsticks (:class:`~.context.ShopStats`) a full recompute derives.

Some quantities belong to the whole shop rather than one customer: the VIP spend cutoff, the
RFM quintile edges, the fitted BG/NBD and Gamma-Gamma parameters, the email domains business
buyers use and the regions with most customers. A full recompute derives them from the
dataset; the incremental recompute of one customer passes the cached ones back in, so that
customer is judged by the same yardsticks as everyone else.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from shopify_app.segments import rfm
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import Dataset, Features
from shopify_app.segments.library.context import ShopStats
from shopify_app.segments.library.playbook import business_domains, company_names
from shopify_app.segments.library.predictions import fit_models
from shopify_app.segments.library.regions import customer_regions, top_regions


def compute_stats(
    ds: Dataset,
    f: Features,
    cfg: ShopConfig,
    as_of: dt.date,
    companies: list[str] | None = None,
    region_keys: list[tuple[str, str]] | None = None,
) -> ShopStats:
    """The shop-level yardsticks for a full recompute.

    ``companies`` and ``region_keys`` (from :func:`company_names` and :func:`customer_regions`)
    may be passed by a caller that needs them too, to derive them once.
    """
    mask = f.has_orders
    spend = f.spend[mask]
    n = int(mask.sum())
    if n:
        k = max(1, math.ceil(cfg.vip_share * n))
        vip_cutoff = float(np.sort(spend)[::-1][k - 1])
        at_risk_min = float(np.quantile(spend, cfg.at_risk_min_spend_share))
    else:
        vip_cutoff = math.inf
        at_risk_min = math.inf
    edges = rfm.fit_edges(f.days_since_last[mask], f.n_orders[mask], spend)
    bg, gg, status, note = fit_models(f)

    companies = company_names(ds) if companies is None else companies
    keys = customer_regions(ds) if region_keys is None else region_keys
    intervals = f.mean_interval[f.n_orders > 1]
    median_interval = float(np.median(intervals)) if len(intervals) else 90.0
    total_orders = int(f.n_orders.sum())
    return ShopStats(
        as_of=as_of.isoformat(),
        customers=n,
        vip_cutoff=vip_cutoff,
        at_risk_min_spend=at_risk_min,
        rfm_edges=edges,
        bgnbd=bg,
        gamma_gamma=gg,
        model_status=status,
        model_note=note,
        business_domains=business_domains(ds, f, cfg, companies),
        regions=top_regions(keys, mask, cfg),
        median_interval=max(median_interval, 1.0),
        mean_order_value=float(f.spend.sum() / total_orders) if total_orders else 0.0,
    )
