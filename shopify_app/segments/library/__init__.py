"""The built-in segment library: the playbook as pure functions over a :class:`Dataset`.

:func:`evaluate` takes a dataset, the shop's :class:`ShopConfig` and a day, and returns every
segment's members (customer indices) with a reason per member: stored JSON
(:class:`~.reasons.Reason`) that the page translates and :func:`~.reasons.render` says in English
("48 units of Dinner Napkins on 3 March 2026"). Segments overlap; each is defined on its own.
Cancelled and test orders never reach the dataset.

It builds one :class:`~.context.Context` (dataset, features, the shop's yardsticks from
:mod:`.stats`, predictions, config) and hands it to every segment family in display order
(:data:`FAMILIES`): :mod:`.playbook`, :mod:`.predictions`, :mod:`.rfm_groups`,
:mod:`.cross_sell`, :mod:`.regions` and :mod:`.custom`. A family is one function deciding its
members and their reasons, so a rule changes in one place; :func:`segment_definitions` says
what each segment is (handle, name, the parameters that define it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shopify_app.segments import cadence, rfm, rules
from shopify_app.segments.config import (
    LAPSED_REMINDER,
    ShopConfig,
    holdout_handle,
    lapsed_handle,
)
from shopify_app.segments.dataset import Dataset, Features, IntArray, compute_features
from shopify_app.segments.library import (
    cross_sell,
    custom,
    holdouts,
    playbook,
    predictions,
    regions,
    rfm_groups,
)
from shopify_app.segments.library.context import (
    Context,
    Predictions,
    SegmentDef,
    SegmentResult,
    ShopStats,
    finite_or_none,
)
from shopify_app.segments.library.stats import compute_stats
from shopify_app.states import SegmentKind

BUILTIN_NAMES: dict[str, str] = {
    "business-buyers": "Business buyers",
    "repeat-customers": "Repeat customers",
    "true-fans": "True fans",
    "one-time-buyers": "One-time buyers",
    "vip": "VIP",
    "likely-to-buy": "Likely to buy",
    "at-risk": "At risk",
    "holiday-shoppers": "Holiday shoppers",
    "spend-milestone": "Close to a spend milestone",
    LAPSED_REMINDER: "Lapsed regulars: a reminder, no discount",
}


@dataclass
class Evaluation:
    """Everything one evaluation produced."""

    dataset: Dataset
    features: Features
    stats: ShopStats
    predictions: Predictions
    rfm_scores: tuple[IntArray, IntArray, IntArray]
    rfm_group: IntArray  # -1 for customers without orders
    segments: dict[str, SegmentResult]


def segment_definitions(cfg: ShopConfig, stats: ShopStats) -> list[SegmentDef]:
    """Every segment this shop has, in display order (members or not)."""
    defs = [
        SegmentDef(
            "business-buyers",
            BUILTIN_NAMES["business-buyers"],
            SegmentKind.BUILTIN,
            {
                "units_per_order": cfg.business_units_per_order,
                "units_per_window": cfg.business_units_per_window,
                "window_days": cfg.business_window_days,
            },
        ),
        SegmentDef(
            "repeat-customers",
            BUILTIN_NAMES["repeat-customers"],
            SegmentKind.BUILTIN,
            {"min_orders": cfg.repeat_min_orders},
        ),
        SegmentDef(
            "true-fans",
            BUILTIN_NAMES["true-fans"],
            SegmentKind.BUILTIN,
            {
                "min_orders": cfg.true_fan_min_orders,
                "max_interval_days": cadence.FAN_MAX_INTERVAL,
                "overdue_factor": cfg.reminder_factor,
                "before_lapsed_days": cfg.lapsed_tiers[0].days,
            },
        ),
        SegmentDef("one-time-buyers", BUILTIN_NAMES["one-time-buyers"], SegmentKind.BUILTIN, {}),
    ]
    tiers = cfg.lapsed_tiers
    for i, tier in enumerate(tiers):
        upper = tiers[i + 1].days - 1 if i + 1 < len(tiers) else None
        name = (
            f"Lapsed {tier.days}–{upper} days" if upper is not None else f"Lapsed {tier.days}+ days"
        )
        defs.append(
            SegmentDef(
                lapsed_handle(i + 1),
                name,
                SegmentKind.BUILTIN,
                {
                    "min_days": tier.days,
                    "max_days": upper,
                    "discount_percent": tier.discount_percent,
                },
            )
        )
    defs.append(
        SegmentDef(
            LAPSED_REMINDER,
            BUILTIN_NAMES[LAPSED_REMINDER],
            SegmentKind.BUILTIN,
            {"min_days": tiers[0].days, "overdue_factor": cfg.reminder_factor},
        )
    )
    defs += [
        SegmentDef(
            "vip",
            BUILTIN_NAMES["vip"],
            SegmentKind.BUILTIN,
            {"share": cfg.vip_share, "cutoff": finite_or_none(stats.vip_cutoff)},
        ),
        SegmentDef(
            "likely-to-buy",
            BUILTIN_NAMES["likely-to-buy"],
            SegmentKind.BUILTIN,
            {
                "ranking": stats.ranking,
                "share": stats.likely_share,
                "min_score": finite_or_none(stats.likely_min_score),
                "horizon_days": stats.horizon,
                "silence_limit": cadence.SILENCE_LIMIT,
            },
        ),
        SegmentDef(
            "at-risk",
            BUILTIN_NAMES["at-risk"],
            SegmentKind.BUILTIN,
            {
                "min_spend": finite_or_none(stats.at_risk_min_spend),
                "overdue_factor": cfg.reminder_factor,
                "silence_limit": cadence.SILENCE_LIMIT,
            },
        ),
    ]
    defs += [
        SegmentDef(f"rfm-{key}", f"RFM: {label}", SegmentKind.RFM, {"group": key})
        for key, label in rfm.GROUPS.items()
    ]
    defs += [
        SegmentDef(
            f"cross-sell-{r.handle}",
            r.name,
            SegmentKind.CROSS_SELL,
            {"bought": list(r.bought), "never": list(r.never)},
        )
        for r in cfg.cross_sell
    ]
    defs += [
        SegmentDef(
            "holiday-shoppers",
            BUILTIN_NAMES["holiday-shoppers"],
            SegmentKind.BUILTIN,
            {"months": list(cfg.season_months), "min_share": cfg.holiday_min_share},
        ),
        SegmentDef(
            "spend-milestone",
            BUILTIN_NAMES["spend-milestone"],
            SegmentKind.BUILTIN,
            {"amount": cfg.milestone_amount, "window": cfg.milestone_window},
        ),
    ]
    for country, province, count in stats.regions:
        defs.append(
            SegmentDef(
                regions.region_handle(country, province),
                f"Customers in {regions.region_label(country, province)}",
                SegmentKind.REGION,
                {"country": country, "province": province, "customers": count},
            )
        )
    for i, spec in enumerate(cfg.custom_segments):
        seg = rules.parse_custom_segment(spec, f"custom_segments[{i}]")
        if not seg.archived:  # an archived segment is defined no more, as a deleted one
            defs.append(
                SegmentDef(f"custom-{seg.handle}", seg.name, SegmentKind.CUSTOM, dict(spec))
            )
    names = {d.handle: d.name for d in defs}
    defs += [
        SegmentDef(
            holdout_handle(handle),
            f"Hold-out: {names[handle]}",
            SegmentKind.BUILTIN,
            {"segment": handle, "share": share},
        )
        for handle, share in cfg.holdouts.items()
        if handle in names
    ]
    return defs


# Every family in display order (the order of Evaluation.segments and of the page); each adds
# its segments to the context. True fans come after business buyers: they leave them out.
FAMILIES: tuple[Callable[[Context], None], ...] = (
    playbook.business_buyers,
    playbook.repeat_customers,
    playbook.true_fans,
    playbook.one_time_buyers,
    playbook.lapsed,
    playbook.vip,
    predictions.likely_to_buy,
    predictions.at_risk,
    rfm_groups.rfm_groups,
    cross_sell.cross_sell,
    playbook.holiday_shoppers,
    playbook.spend_milestone,
    regions.regions,
    custom.custom_segments,
    holdouts.holdouts,
)


def evaluate(
    ds: Dataset,
    cfg: ShopConfig,
    as_of: dt.date,
    stats: ShopStats | None = None,
    definitions: list[SegmentDef] | None = None,
) -> Evaluation:
    """Every segment's members as of ``as_of`` (orders after it are ignored).

    Without ``stats`` the shop-level yardsticks are derived from ``ds`` (a full recompute);
    with them (cached from the last full recompute) ``ds`` may hold a single customer.
    ``definitions`` are :func:`segment_definitions` of ``cfg`` and ``stats``, when the caller
    keeps them.
    """
    ds = ds.upto(as_of)
    f = compute_features(ds, as_of, cfg.business_window_days)
    companies = playbook.company_names(ds)
    keys = regions.customer_regions(ds)
    if stats is None:
        stats = compute_stats(ds, f, cfg, as_of, companies=companies, region_keys=keys)
    preds = predictions.predict(f, stats)
    usual = cadence.usual_interval(f.occasions, f.first_day, f.last_day, stats.typical_interval)
    scores = rfm.scores(stats.rfm_edges, f.days_since_last, f.n_orders, f.spend)
    group = np.where(f.has_orders, rfm.groups(*scores), -1)
    ctx = Context(
        dataset=ds,
        features=f,
        cfg=cfg,
        stats=stats,
        predictions=preds,
        companies=companies,
        regions=keys,
        rfm_scores=scores,
        rfm_group=group,
        definitions={
            d.handle: d
            for d in (definitions if definitions is not None else segment_definitions(cfg, stats))
        },
        n_orders=f.n_orders.tolist(),
        last_day=f.last_day.tolist(),
        spend=f.spend.tolist(),
        usual_interval=usual,
        usual_days=np.round(usual).astype(np.int64).tolist(),
    )
    for family in FAMILIES:
        family(ctx)
    return Evaluation(ds, f, stats, preds, scores, group, ctx.segments)


def today() -> dt.date:
    """Today's UTC date (the default "as of")."""
    return dt.datetime.now(dt.UTC).date()
