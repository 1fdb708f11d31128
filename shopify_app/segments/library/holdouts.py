"""Hold-out groups as segments: ``holdout-<handle>`` holds the members of ``<handle>`` that
the stable hash puts in its control group (:mod:`shopify_app.actions.holdout`).

As a segment the group gets a tag Goldpan writes and alone removes (the ledger), so Shopify's
own segments can leave it out: a tier's discount is limited to
``customer_tags CONTAINS '<tier tag>' AND customer_tags NOT CONTAINS '<hold-out tag>'``.
Last in the display order: it reads the segments already put.
"""

from __future__ import annotations

import numpy as np

from shopify_app.actions.holdout import held_out
from shopify_app.segments.config import holdout_handle
from shopify_app.segments.library.context import Context
from shopify_app.segments.library.reasons import encoder


def holdouts(ctx: Context) -> None:
    """One segment per hold-out the merchant keeps: its segment's members in the control group."""
    reason = encoder("holdout", text=("segment",))
    for handle in ctx.cfg.holdouts:
        held = holdout_handle(handle)
        if held not in ctx.definitions:
            continue
        mask = np.zeros(ctx.dataset.n_customers, dtype=bool)
        base = ctx.segments.get(handle)
        if base is not None:
            ids = ctx.dataset.customer_ids[base.members].tolist()
            kept = np.array([held_out(ctx.cfg, handle, c) for c in ids], dtype=bool)
            mask[base.members[kept]] = True
        text = reason(segment=ctx.definitions[handle].name)  # one reason for every member

        def same(_i: int, text: str = text) -> str:
            return text

        ctx.put(held, mask, same)
