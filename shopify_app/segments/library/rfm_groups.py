"""RFM segments: one per group of recency, frequency and monetary quintile scores."""

from __future__ import annotations

from shopify_app.segments import rfm
from shopify_app.segments.library.context import Context
from shopify_app.segments.library.reasons import encoder


def rfm_groups(ctx: Context) -> None:
    """A segment per group of :data:`shopify_app.segments.rfm.GROUPS`, scores as the reason."""
    r_l, f_l, m_l = (scores.tolist() for scores in ctx.rfm_scores)
    reason = encoder("rfm")
    for code, key in enumerate(rfm.GROUP_KEYS):
        ctx.put(f"rfm-{key}", ctx.rfm_group == code, lambda i: reason(r=r_l[i], f=f_l[i], m=m_l[i]))
