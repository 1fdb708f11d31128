"""Model-driven segments (likely to buy, at risk) and the BG/NBD + Gamma-Gamma fits behind them.

:func:`fit_models` fits the shop's models (kept in :class:`~.context.ShopStats`), :func:`predict`
turns them into per-customer :class:`~.context.Predictions`, falling back to each customer's own
order rhythm when the shop's data cannot carry a fit.
"""

from __future__ import annotations

import logging

import numpy as np

from shopify_app.segments import clv
from shopify_app.segments.dataset import Features
from shopify_app.segments.library.context import Context, Predictions, ShopStats
from shopify_app.segments.library.reasons import encoder
from shopify_app.states import ModelStatus

log = logging.getLogger(__name__)


def fit_models(
    f: Features,
) -> tuple[clv.BgNbdParams | None, clv.GammaGammaParams | None, ModelStatus, str]:
    """The shop's BG/NBD and Gamma-Gamma fits with status and note (None: too little data)."""
    mask = f.has_orders
    n = int(mask.sum())
    repeat = int((f.occasions[mask] > 1).sum())
    history = int(f.as_of - f.first_day[mask].min()) if n else 0
    if n < clv.MIN_CUSTOMERS or repeat < clv.MIN_REPEAT_CUSTOMERS:
        return (
            None,
            None,
            ModelStatus.FALLBACK,
            f"too few customers for the purchase model ({n} customers, {repeat} repeat; "
            f"needs {clv.MIN_CUSTOMERS} and {clv.MIN_REPEAT_CUSTOMERS}): "
            "predictions use each customer's own order rhythm",
        )
    if history < clv.MIN_HISTORY_DAYS:
        return (
            None,
            None,
            ModelStatus.FALLBACK,
            f"only {history} days of order history (needs {clv.MIN_HISTORY_DAYS}): "
            "predictions use each customer's own order rhythm",
        )
    x, t_x, T = f.bgnbd_inputs()
    m = f.repeat_value[mask]
    sampled = ""
    if len(x) > clv.MAX_FIT_CUSTOMERS:
        # Four parameters are pinned down long before 50,000 customers; a fixed-seed sample
        # keeps big shops' fits fast and reproducible (predictions still cover everyone).
        pick = np.random.default_rng(0).choice(len(x), clv.MAX_FIT_CUSTOMERS, replace=False)
        x, t_x, T, m = x[pick], t_x[pick], T[pick], m[pick]
        sampled = f" on a random sample of {clv.MAX_FIT_CUSTOMERS:,} customers"
    try:
        bg = clv.fit_bgnbd(x, t_x, T)
    except (ValueError, FloatingPointError) as exc:
        log.warning("BG/NBD fit failed: %s", exc)
        return (
            None,
            None,
            ModelStatus.FALLBACK,
            "the purchase model did not converge: rhythm fallback",
        )
    gg: clv.GammaGammaParams | None = None
    try:
        gg = clv.fit_gamma_gamma(x, m)
        if gg.q <= 1:
            gg = None
    except (ValueError, FloatingPointError) as exc:
        log.warning("Gamma-Gamma fit failed: %s", exc)
    note = "BG/NBD and Gamma-Gamma fitted" if gg else "BG/NBD fitted; order value is the average"
    note += sampled
    return bg, gg, ModelStatus.FITTED, note


def predict(f: Features, stats: ShopStats) -> Predictions:
    """P(active), expected purchases in 90 days and 12-month value for every customer."""
    n_c = len(f.n_orders)
    mask = f.has_orders
    alive = np.zeros(n_c)
    p90 = np.zeros(n_c)
    value_12m = np.zeros(n_c)
    if not mask.any():
        return Predictions(alive, p90, value_12m)
    aov = np.where(f.n_orders > 0, f.spend / np.maximum(f.n_orders, 1), 0.0)
    if stats.bgnbd is not None:
        x, t_x, T = f.bgnbd_inputs()
        alive[mask] = clv.p_alive(stats.bgnbd, x, t_x, T)
        p90[mask] = clv.expected_purchases(stats.bgnbd, 90 / 7, x, t_x, T)
        p365 = clv.expected_purchases(stats.bgnbd, 365 / 7, x, t_x, T)
        if stats.gamma_gamma is not None:
            value = clv.expected_order_value(
                stats.gamma_gamma, x, f.repeat_value[mask], stats.mean_order_value
            )
        else:
            value = aov[mask]
        value_12m[mask] = p365 * value
        return Predictions(alive, p90, value_12m)
    # Rhythm fallback: a customer is expected back after their usual interval (the shop's
    # median for one-order customers); the longer past it, the less likely they are active.
    interval = np.where(f.n_orders > 1, f.mean_interval, stats.median_interval)
    interval = np.maximum(np.nan_to_num(interval, nan=stats.median_interval), 1.0)[mask]
    overdue = np.maximum(f.days_since_last[mask] - interval, 0) / interval
    alive[mask] = np.exp(-overdue)
    p90[mask] = alive[mask] * 90 / interval
    value_12m[mask] = alive[mask] * 365 / interval * aov[mask]
    return Predictions(alive, p90, value_12m)


def likely_to_buy(ctx: Context) -> None:
    """Likely still active and expected to order again within 90 days."""
    preds, cfg = ctx.predictions, ctx.cfg
    likely = encoder("likely")
    # Predictions drift a little every day (a day older, a refitted model): in steps of 5 %
    # and half an order the reason stays put, so the daily recompute does not rewrite most
    # of these members for a change in the last digit.
    likely_percent = (np.round(preds.p_alive * 20) * 5).astype(np.int64).tolist()
    likely_orders = (np.round(preds.purchases_90d * 2) / 2).tolist()
    ctx.put(
        "likely-to-buy",
        (preds.p_alive >= cfg.likely_min_p_alive)
        & (preds.purchases_90d >= cfg.likely_min_purchases_90d),
        lambda i: likely(percent=likely_percent[i], orders=likely_orders[i], days=90),
    )


def at_risk(ctx: Context) -> None:
    """Repeat customers who spent well (a shop yardstick) and are now unlikely to be active."""
    f, preds, cfg = ctx.features, ctx.predictions, ctx.cfg
    spend_l, n_orders_l = ctx.spend, ctx.n_orders
    p_alive_l = preds.p_alive.tolist()
    reason = encoder("at_risk")
    ctx.put(
        "at-risk",
        (f.n_orders >= 2)
        & (f.spend >= ctx.stats.at_risk_min_spend)
        & (preds.p_alive < cfg.at_risk_max_p_alive),
        lambda i: reason(
            spend_money=spend_l[i], orders=n_orders_l[i], percent=round(p_alive_l[i] * 100)
        ),
    )
