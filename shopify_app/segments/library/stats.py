"""The shop-level yardsticks (:class:`~.context.ShopStats`) a full recompute derives.

Some quantities belong to the whole shop rather than one customer: the VIP spend cutoff, the
RFM quintile edges, the backtest and the predictions it settled (which ranking, which model,
how many are likely to buy and the score that earns it), the shop's typical gap between orders,
the email domains business buyers use and the regions with most customers. A full recompute
derives them from the dataset; the incremental recompute of one customer passes the cached
ones back in, so that customer is judged by the same yardsticks as everyone else.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from shopify_app.segments import backtest, cadence, rfm
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import Dataset, Features
from shopify_app.segments.library.context import ShopStats
from shopify_app.segments.library.playbook import business_domains, company_names
from shopify_app.segments.library.predictions import choose, ranking_scores
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

    history = backtest.OrderHistory.of(ds)
    bt = backtest.run(
        history,
        f.as_of,
        overdue=cfg.reminder_factor,
        at_risk_spend_share=cfg.at_risk_min_spend_share,
    )
    choice = choose(history.rhythm(f.as_of), f.repeat_value[mask], bt)
    companies = company_names(ds) if companies is None else companies
    keys = customer_regions(ds) if region_keys is None else region_keys
    typical = cadence.typical_interval(f.occasions, f.first_day, f.last_day)
    total_orders = int(f.n_orders.sum())
    stats = ShopStats(
        as_of=as_of.isoformat(),
        customers=n,
        vip_cutoff=vip_cutoff,
        at_risk_min_spend=at_risk_min,
        rfm_edges=edges,
        backtest=bt,
        ranking=choice.ranking,
        purchase_model=choice.purchase_model,
        models=choice.models,
        gamma_gamma=choice.gamma_gamma,
        model_status=choice.status,
        model_note=choice.note,
        horizon=bt.horizon or backtest.DEFAULT_HORIZON,
        likely_share=bt.likely_share,
        likely_min_score=math.inf,
        typical_interval=typical,
        business_domains=business_domains(ds, f, cfg, companies),
        regions=top_regions(keys, mask, cfg),
        mean_order_value=float(f.spend.sum() / total_orders) if total_orders else 0.0,
    )
    if choice.ranking is not None and stats.likely_share > 0:
        # The segment's size is the backtest's share of today's customers; the cutoff is the
        # score of the last of them, so one customer alone can be judged against it.
        usual = cadence.usual_interval(f.occasions, f.first_day, f.last_day, typical)
        scores = ranking_scores(f, stats, usual)
        stats.likely_min_score = cadence.likely_cutoff(
            scores[mask],
            f.days_since_last[mask].astype(np.float64),
            usual[mask],
            round(stats.likely_share * n),
        )
    return stats
