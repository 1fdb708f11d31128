"""Custom segments: the merchant's own rules (:mod:`shopify_app.segments.rules`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from shopify_app.segments import crosssell, rfm, rules
from shopify_app.segments.dataset import email_domain
from shopify_app.segments.library.context import BoolArray, Context
from shopify_app.segments.library.reasons import constant, encoder


def _lower(values: list[str | None]) -> list[str]:
    return [(v or "").strip().lower() for v in values]


def custom_columns(ctx: Context) -> dict[str, Any]:
    """The per-customer columns custom rules test (see :mod:`shopify_app.segments.rules`)."""
    ds, f, preds = ctx.dataset, ctx.features, ctx.predictions
    scores, group = ctx.rfm_scores, ctx.rfm_group
    has = f.has_orders
    nan = np.nan
    return {
        "orders_count": f.n_orders.astype(np.float64),
        "total_spent": f.spend,
        "average_order_value": np.where(has, f.spend / np.maximum(f.n_orders, 1), nan),
        "days_since_last_order": np.where(has, f.days_since_last, nan),
        "days_since_first_order": np.where(has, f.as_of - f.first_day, nan),
        "average_days_between_orders": f.mean_interval,
        "units_last_365_days": f.window_units.astype(np.float64),
        "max_units_in_order": f.max_line_units.astype(np.float64),
        "p_alive": np.where(has, preds.p_alive, nan),
        "expected_purchases_90d": preds.purchases_90d,
        "predicted_clv": preds.clv_12m,
        "rfm_recency": np.where(has, scores[0], nan),
        "rfm_frequency": np.where(has, scores[1], nan),
        "rfm_monetary": np.where(has, scores[2], nan),
        "email": _lower(ds.info["email"]),
        "email_domain": [email_domain(e) for e in ds.info["email"]],
        "country": _lower(ds.info["country_code"]),
        "province": _lower(ds.info["province_code"]),
        "city": _lower(ds.info["city"]),
        "company": _lower(ds.info["company"]),
        "rfm_group": [rfm.GROUP_KEYS[g] if g >= 0 else "" for g in group],
        "marketing_state": _lower(ds.info["email_marketing_state"]),
    }


def custom_segments(ctx: Context) -> None:
    """One segment per custom rule set; the rule, said in words, is every member's reason.

    The reason is the ``custom`` template with one parameter, the rule's description, which
    :func:`~shopify_app.segments.rules.describe` keeps short whatever the rule holds: it is
    stored once per member.
    """
    if not ctx.cfg.custom_segments:
        return
    ds = ctx.dataset
    columns = custom_columns(ctx)
    segments = [
        rules.parse_custom_segment(spec, f"custom_segments[{i}]")
        for i, spec in enumerate(ctx.cfg.custom_segments)
    ]
    live = [seg for seg in segments if not seg.archived]
    if any(rules.uses_field(seg.root, rules.TAG_FIELD) for seg in live):
        # Decoded only when a rule tests tags: a JSON list per customer is not free.
        columns[rules.TAG_FIELD] = rules.tag_sets(ds.info["tags"])
    cache: dict[str, BoolArray] = {}

    def product_mask(reference: str) -> BoolArray:
        if reference not in cache:
            cache[reference] = crosssell.bought_any(ds, crosssell.products_matching(ds, reference))
        return cache[reference]

    reason = encoder("custom", text=("rule",))
    for seg in live:
        text = reason(rule=rules.describe(seg.root, ds.product_titles))
        ctx.put(
            f"custom-{seg.handle}",
            rules.evaluate(seg.root, columns, product_mask),
            constant(text),
        )
