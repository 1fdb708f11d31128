"""Cross-sell segments: one per rule, "bought any of these, never any of those"."""

from __future__ import annotations

from shopify_app.segments import crosssell
from shopify_app.segments.library.context import Context
from shopify_app.segments.library.reasons import constant, encoder


def cross_sell(ctx: Context) -> None:
    """One segment per configured rule (:func:`shopify_app.segments.crosssell.rule_members`)."""
    ds = ctx.dataset
    titles = ds.product_titles
    reason = encoder("cross_sell", text=("bought", "never"))
    for rule in ctx.cfg.cross_sell:
        mask, bought = crosssell.rule_members(ds, rule)
        bought_titles = [titles[k] for k in sorted(bought) if k in titles][:3]
        # A picked product is stored by id; the reason names it by its title.
        never = [
            titles.get(int(ref), ref) if crosssell.is_product_id(ref) else ref for ref in rule.never
        ]
        text = (
            reason(bought=", ".join(bought_titles), never=", ".join(never)) if bought_titles else ""
        )
        ctx.put(f"cross-sell-{rule.handle}", mask, constant(text))
