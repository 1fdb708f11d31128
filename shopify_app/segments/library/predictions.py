"""Predictions that were checked, and the segments read from them: likely to buy, at risk.

A full recompute runs the shop's backtest (:mod:`shopify_app.segments.backtest`) and
:func:`choose` keeps what it found: the candidate that ranked best orders ``likely-to-buy``
(fitted again on the whole history), and the best model that can be trusted gives expected
purchases, the chance of being active and 12-month value. A model whose fit on the whole
history is refused steps aside for the next candidate, and the note says so. Below the
backtest's minimum of history there are no predictions: ``likely-to-buy`` and ``at-risk`` stay
empty and the note says "not enough history yet" instead of numbers nobody checked.

:func:`ranking_scores` and :func:`predict` turn the cached choice (in
:class:`~.context.ShopStats`) into per-customer numbers, so the incremental recompute judges one
customer alone exactly as the full one judged them among everyone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopify_app.segments import backtest, cadence, clv
from shopify_app.segments.dataset import Features, FloatArray, IntArray
from shopify_app.segments.library.context import BoolArray, Context, Predictions, ShopStats
from shopify_app.segments.library.reasons import encoder
from shopify_app.states import ModelStatus


@dataclass(frozen=True)
class ModelChoice:
    """What the backtest and the fits on the whole history settled (see :class:`ShopStats`)."""

    ranking: str | None
    purchase_model: str | None
    models: dict[str, clv.CountParams]
    gamma_gamma: clv.GammaGammaParams | None
    status: ModelStatus
    note: str


def _sample(n: int) -> slice | IntArray:
    """Which customers a fit sees: all, or the same fixed-seed sample the backtest draws."""
    if n <= clv.MAX_FIT_CUSTOMERS:
        return slice(None)
    return np.random.default_rng(0).choice(n, clv.MAX_FIT_CUSTOMERS, replace=False)


def choose(rhythm: cadence.Rhythm, repeat_value: FloatArray, bt: backtest.Backtest) -> ModelChoice:
    """The ranking and the purchase model for a shop, from its backtest ``bt`` and every
    customer's history ``rhythm`` (``repeat_value``: mean value of repeat order days, for
    the customers with orders), with a note saying what is in use and why."""
    if not bt.enough:
        return ModelChoice(
            None, None, {}, None, ModelStatus.FALLBACK, f"No predictions: {bt.note}."
        )
    label = backtest.LABELS
    order = bt.ranked()
    models: dict[str, clv.CountParams] = {}
    refused = [
        f"{c.label} could not compete in the backtest: {c.refused}."
        for c in bt.candidates
        if c.refused is not None
    ]
    for name in order:
        if name in backtest.MODELS:
            try:
                models[name] = backtest.fit_model(name, rhythm)
            except clv.DegenerateFit as exc:
                refused.append(f"{label[name]} was refused on the whole history: {exc.reason}.")
    ranking = next(n for n in order if n == backtest.RHYTHM or n in models)
    purchase_model = next((n for n in order if n in models), None)

    best = "in this shop's backtest" if ranking == bt.chosen else "that fit the whole history"
    words = [f"Likely to buy is ranked by {label[ranking]}, the best of the ways tried {best}."]
    gamma_gamma = None
    if purchase_model is None:
        words.append("No purchase model can be trusted here: no expected purchases or values.")
    else:
        x, _t_x, _T = rhythm.model_inputs()
        pick = _sample(len(x))
        try:
            gamma_gamma = clv.fit_gamma_gamma(x[pick], repeat_value[pick])
            values = "the Gamma-Gamma model"
        except clv.DegenerateFit as exc:
            values = f"each customer's average (Gamma-Gamma: {exc.reason})"
        words.append(
            f"Expected purchases and 12-month value come from {label[purchase_model]}, "
            f"order values from {values}."
        )
        if len(x) > clv.MAX_FIT_CUSTOMERS:
            words.append(f"Fitted on a random sample of {clv.MAX_FIT_CUSTOMERS:,} customers.")
    words += [reason[0].upper() + reason[1:] for reason in refused]
    status = ModelStatus.FITTED if purchase_model is not None else ModelStatus.FALLBACK
    return ModelChoice(ranking, purchase_model, models, gamma_gamma, status, " ".join(words))


def ranking_scores(f: Features, stats: ShopStats, usual: FloatArray) -> FloatArray:
    """Each customer's score on the shop's ranking: expected orders in the next
    ``stats.horizon`` days (0 without orders, or without predictions)."""
    scores = np.zeros(len(f.n_orders))
    mask = f.has_orders
    if stats.ranking is None or not mask.any():
        return scores
    if stats.ranking == backtest.RHYTHM:
        since = f.days_since_last[mask].astype(np.float64)
        scores[mask] = cadence.expected_orders(since, usual[mask], stats.horizon)
    else:
        x, t_x, T = f.bgnbd_inputs()
        params = stats.models[stats.ranking]
        scores[mask] = clv.expected_purchases(params, stats.horizon / 7, x, t_x, T)
    return scores


def predict(f: Features, stats: ShopStats) -> Predictions:
    """P(active), expected purchases in 90 days and 12-month value for every customer, from
    the shop's purchase model; NaN throughout when it has none."""
    n_c = len(f.n_orders)
    mask = f.has_orders
    if stats.purchase_model is None:
        nan = np.full(n_c, np.nan)
        return Predictions(nan, nan.copy(), nan.copy(), available=False)
    alive = np.zeros(n_c)
    p90 = np.zeros(n_c)
    value_12m = np.zeros(n_c)
    if not mask.any():
        return Predictions(alive, p90, value_12m, available=True)
    params = stats.models[stats.purchase_model]
    x, t_x, T = f.bgnbd_inputs()
    alive[mask] = clv.p_alive(params, x, t_x, T)
    p90[mask] = clv.expected_purchases(params, 90 / 7, x, t_x, T)
    p365 = clv.expected_purchases(params, 365 / 7, x, t_x, T)
    if stats.gamma_gamma is not None:
        value = clv.expected_order_value(
            stats.gamma_gamma, x, f.repeat_value[mask], stats.mean_order_value
        )
    else:
        value = f.spend[mask] / f.n_orders[mask]
    value_12m[mask] = p365 * value
    return Predictions(alive, p90, value_12m, available=True)


def likely_to_buy(ctx: Context) -> None:
    """The top of the shop's ranking, as many as the backtest says hold up, nobody silent for
    more than three of their usual intervals; empty without predictions."""
    stats, f = ctx.stats, ctx.features
    members: BoolArray = np.zeros(len(f.n_orders), dtype=bool)
    if stats.ranking is not None:
        scores = ranking_scores(f, stats, ctx.usual_interval)
        since = f.days_since_last.astype(np.float64)
        members = cadence.likely_to_buy(scores, since, ctx.usual_interval, stats.likely_min_score)
    occasions_l, last_day_l, usual_l, days = (
        f.occasions.tolist(),
        ctx.last_day,
        ctx.usual_days,
        ctx.iso_day,
    )
    typical = round(stats.typical_interval)
    regular = encoder("likely")
    first = encoder("likely.one_order")

    def reason(i: int) -> str:
        last = days(int(last_day_l[i]))
        if occasions_l[i] > 1:
            return regular(days=usual_l[i], last_date=last)
        return first(last_date=last, days=typical)

    ctx.put("likely-to-buy", members, reason)


def at_risk(ctx: Context) -> None:
    """Repeat customers who spent well (a shop yardstick) and are overdue against their own
    rhythm but not yet gone (:func:`shopify_app.segments.cadence.at_risk`); empty without
    predictions, since the backtest is what checks the rule."""
    stats, f, cfg = ctx.stats, ctx.features, ctx.cfg
    members: BoolArray = np.zeros(len(f.n_orders), dtype=bool)
    if stats.ranking is not None:
        members = cadence.at_risk(
            f.occasions,
            f.days_since_last.astype(np.float64),
            ctx.usual_interval,
            f.spend,
            stats.at_risk_min_spend,
            overdue=cfg.reminder_factor,
        )
    spend_l, n_orders_l, last_day_l, usual_l, days = (
        ctx.spend,
        ctx.n_orders,
        ctx.last_day,
        ctx.usual_days,
        ctx.iso_day,
    )
    reason = encoder("at_risk")
    ctx.put(
        "at-risk",
        members,
        lambda i: reason(
            spend_money=spend_l[i],
            orders=n_orders_l[i],
            days=usual_l[i],
            last_date=days(int(last_day_l[i])),
        ),
    )
