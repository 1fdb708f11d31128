"""The built-in segment library: the playbook as pure functions over a :class:`Dataset`.

:func:`evaluate` takes a dataset, the shop's :class:`ShopConfig` and a day, and returns every
segment's members (customer indices) with a reason per member: stored JSON
(:class:`~.reasons.Reason`) that the page translates and :func:`~.reasons.render` says in English
("48 units of Dinner Napkins on 3 March 2026"). Segments overlap; each is defined on its own.
Cancelled and test orders never reach the dataset.

The shop-level yardsticks every customer is judged by (:class:`~.context.ShopStats`) come from
:mod:`.stats`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from shopify_app.segments import crosssell, rfm, rules
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import Dataset, Features, compute_features, email_domain
from shopify_app.segments.library.context import (
    IntArray,
    Predictions,
    SegmentDef,
    SegmentResult,
    ShopStats,
    finite_or_none,
)
from shopify_app.segments.library.custom import custom_columns
from shopify_app.segments.library.playbook import FREE_MAIL, business_core, company_names
from shopify_app.segments.library.predictions import predict
from shopify_app.segments.library.reasons import IsoDays, constant, encoder
from shopify_app.segments.library.regions import customer_regions
from shopify_app.segments.library.stats import compute_stats

BoolArray = NDArray[np.bool_]

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
            "builtin",
            {
                "units_per_order": cfg.business_units_per_order,
                "units_per_window": cfg.business_units_per_window,
                "window_days": cfg.business_window_days,
            },
        ),
        SegmentDef(
            "repeat-customers",
            BUILTIN_NAMES["repeat-customers"],
            "builtin",
            {"min_orders": cfg.repeat_min_orders},
        ),
        SegmentDef(
            "true-fans",
            BUILTIN_NAMES["true-fans"],
            "builtin",
            {"min_orders": cfg.true_fan_min_orders},
        ),
        SegmentDef("one-time-buyers", BUILTIN_NAMES["one-time-buyers"], "builtin", {}),
    ]
    tiers = cfg.lapsed_tiers
    for i, tier in enumerate(tiers):
        upper = tiers[i + 1].days - 1 if i + 1 < len(tiers) else None
        name = (
            f"Lapsed {tier.days}–{upper} days" if upper is not None else f"Lapsed {tier.days}+ days"
        )
        defs.append(
            SegmentDef(
                f"lapsed-{tier.days}",
                name,
                "builtin",
                {
                    "min_days": tier.days,
                    "max_days": upper,
                    "discount_percent": tier.discount_percent,
                },
            )
        )
    defs += [
        SegmentDef(
            "vip",
            BUILTIN_NAMES["vip"],
            "builtin",
            {"share": cfg.vip_share, "cutoff": finite_or_none(stats.vip_cutoff)},
        ),
        SegmentDef(
            "likely-to-buy",
            BUILTIN_NAMES["likely-to-buy"],
            "builtin",
            {
                "min_p_alive": cfg.likely_min_p_alive,
                "min_purchases_90d": cfg.likely_min_purchases_90d,
            },
        ),
        SegmentDef(
            "at-risk",
            BUILTIN_NAMES["at-risk"],
            "builtin",
            {
                "max_p_alive": cfg.at_risk_max_p_alive,
                "min_spend": finite_or_none(stats.at_risk_min_spend),
            },
        ),
    ]
    defs += [
        SegmentDef(f"rfm-{key}", f"RFM: {label}", "rfm", {"group": key})
        for key, label in rfm.GROUPS.items()
    ]
    defs += [
        SegmentDef(
            f"cross-sell-{r.handle}",
            r.name,
            "cross_sell",
            {"bought": list(r.bought), "never": list(r.never)},
        )
        for r in cfg.cross_sell
    ]
    defs += [
        SegmentDef(
            "holiday-shoppers",
            BUILTIN_NAMES["holiday-shoppers"],
            "builtin",
            {"months": list(cfg.season_months), "min_share": cfg.holiday_min_share},
        ),
        SegmentDef(
            "spend-milestone",
            BUILTIN_NAMES["spend-milestone"],
            "builtin",
            {"amount": cfg.milestone_amount, "window": cfg.milestone_window},
        ),
    ]
    for country, province, count in stats.regions:
        handle = f"region-{country}-{province}".lower() if province else f"region-{country}".lower()
        label = f"{province}, {country}" if province else country
        defs.append(
            SegmentDef(
                handle,
                f"Customers in {label}",
                "region",
                {"country": country, "province": province, "customers": count},
            )
        )
    for i, spec in enumerate(cfg.custom_segments):
        seg = rules.parse_custom_segment(spec, f"custom_segments[{i}]")
        defs.append(SegmentDef(f"custom-{seg.handle}", seg.name, "custom", dict(spec)))
    return defs


def evaluate(
    ds: Dataset,
    cfg: ShopConfig,
    as_of: dt.date,
    stats: ShopStats | None = None,
) -> Evaluation:
    """Every segment's members as of ``as_of`` (orders after it are ignored).

    Without ``stats`` the shop-level yardsticks are derived from ``ds`` (a full recompute);
    with them (cached from the last full recompute) ``ds`` may hold a single customer.
    """
    ds = ds.upto(as_of)
    f = compute_features(ds, as_of, cfg.business_window_days)
    companies = company_names(ds)
    keys = customer_regions(ds)
    if stats is None:
        stats = compute_stats(ds, f, cfg, as_of, companies=companies, region_keys=keys)
    preds = predict(f, stats)
    has = f.has_orders
    days = IsoDays()
    r_s, f_s, m_s = rfm.scores(stats.rfm_edges, f.days_since_last, f.n_orders, f.spend)
    group = np.where(has, rfm.groups(r_s, f_s, m_s), -1)
    # Reasons are formatted per member (a million strings on a big shop): Python numbers from
    # lists format several times faster than numpy scalars indexed one by one.
    n_orders_l = f.n_orders.tolist()
    last_day_l = f.last_day.tolist()
    spend_l = f.spend.tolist()
    max_units_l = f.max_line_units.tolist()
    max_product_l = f.max_line_product.tolist()
    max_day_l = f.max_line_day.tolist()
    window_units_l = f.window_units.tolist()
    p_alive_l = preds.p_alive.tolist()
    r_l, f_l, m_l = r_s.tolist(), f_s.tolist(), m_s.tolist()
    out: dict[str, SegmentResult] = {}
    defs = {d.handle: d for d in segment_definitions(cfg, stats)}

    def put(handle: str, mask: BoolArray, reason: Callable[[int], str]) -> None:
        members = np.nonzero(mask & has)[0].astype(np.int64)
        out[handle] = SegmentResult(defs[handle], members, [reason(i) for i in members.tolist()])

    titles = ds.product_titles
    emails = ds.info["email"]

    # business-buyers
    core = business_core(ds, f, cfg, companies)
    domains = [email_domain(e) for e in emails]
    known = set(stats.business_domains)
    by_domain = f.has_orders & np.fromiter(
        (bool(d) and d in known and d not in FREE_MAIL for d in domains),
        dtype=bool,
        count=ds.n_customers,
    )

    order_units = encoder("business.order_units", text=("product",))
    order_units_unnamed = encoder("business.order_units_unnamed")
    window_units = encoder("business.window_units")
    company_reason = encoder("business.company", text=("company",))
    domain_reason = encoder("business.domain", text=("domain",))

    def business_reason(i: int) -> str:
        if max_units_l[i] >= cfg.business_units_per_order:
            title = titles.get(int(max_product_l[i]))
            day = days(int(max_day_l[i]))
            if title is None:
                return order_units_unnamed(units=max_units_l[i], day_date=day)
            return order_units(units=max_units_l[i], product=title, day_date=day)
        if window_units_l[i] >= cfg.business_units_per_window:
            return window_units(units=window_units_l[i], days=cfg.business_window_days)
        if companies[i]:
            return company_reason(company=companies[i])
        return domain_reason(domain=domains[i])

    put("business-buyers", core | by_domain, business_reason)
    business = np.zeros(ds.n_customers, dtype=bool)
    business[out["business-buyers"].members] = True

    repeat = encoder("repeat")
    put(
        "repeat-customers",
        f.n_orders >= cfg.repeat_min_orders,
        lambda i: repeat(orders=n_orders_l[i], last_date=days(int(last_day_l[i]))),
    )
    interval = f.mean_interval
    interval_l = interval.tolist()

    true_fan = encoder("true_fan")

    def fan_reason(i: int) -> str:
        return true_fan(orders=n_orders_l[i], days=round(float(interval_l[i])))

    put("true-fans", (f.n_orders >= cfg.true_fan_min_orders) & ~business, fan_reason)
    one_time = encoder("one_time")
    put(
        "one-time-buyers",
        f.n_orders == 1,
        lambda i: one_time(day_date=days(int(last_day_l[i])), spend_money=spend_l[i]),
    )

    since = f.days_since_last
    regular = (f.n_orders >= cfg.true_fan_min_orders) & (
        since <= np.nan_to_num(interval, nan=-1) * cfg.reminder_factor
    )
    regular_l = regular.tolist()
    lapsed = encoder("lapsed")
    lapsed_discount = encoder("lapsed.discount")
    lapsed_reminder = encoder("lapsed.reminder")
    tiers = cfg.lapsed_tiers
    for i_t, tier in enumerate(tiers):
        upper = tiers[i_t + 1].days if i_t + 1 < len(tiers) else 10**7
        pct = tier.discount_percent

        def lapsed_reason(i: int, pct: int = pct) -> str:
            last = days(int(last_day_l[i]))
            if regular_l[i]:
                every = round(float(interval_l[i]))
                return lapsed_reminder(last_date=last, every=every)
            if pct:
                return lapsed_discount(last_date=last, percent=pct)
            return lapsed(last_date=last)

        put(f"lapsed-{tier.days}", (since >= tier.days) & (since < upper), lapsed_reason)

    vip = encoder("vip")
    vip_share = round(cfg.vip_share * 100)
    put(
        "vip",
        f.spend >= stats.vip_cutoff,
        lambda i: vip(spend_money=spend_l[i], share=vip_share, cutoff_money=stats.vip_cutoff),
    )
    likely = encoder("likely")
    # Predictions drift a little every day (a day older, a refitted model): in steps of 5 %
    # and half an order the reason stays put, so the daily recompute does not rewrite most
    # of these members for a change in the last digit.
    likely_percent = (np.round(preds.p_alive * 20) * 5).astype(np.int64).tolist()
    likely_orders = (np.round(preds.purchases_90d * 2) / 2).tolist()
    put(
        "likely-to-buy",
        (preds.p_alive >= cfg.likely_min_p_alive)
        & (preds.purchases_90d >= cfg.likely_min_purchases_90d),
        lambda i: likely(percent=likely_percent[i], orders=likely_orders[i], days=90),
    )
    at_risk = encoder("at_risk")
    put(
        "at-risk",
        (f.n_orders >= 2)
        & (f.spend >= stats.at_risk_min_spend)
        & (preds.p_alive < cfg.at_risk_max_p_alive),
        lambda i: at_risk(
            spend_money=spend_l[i], orders=n_orders_l[i], percent=round(p_alive_l[i] * 100)
        ),
    )
    rfm_reason = encoder("rfm")
    for code, key in enumerate(rfm.GROUP_KEYS):
        put(f"rfm-{key}", group == code, lambda i: rfm_reason(r=r_l[i], f=f_l[i], m=m_l[i]))

    cross_sell = encoder("cross_sell", text=("bought", "never"))
    for rule in cfg.cross_sell:
        mask, bought = crosssell.rule_members(ds, rule)
        bought_titles = [titles[k] for k in sorted(bought) if k in titles][:3]
        text = (
            cross_sell(bought=", ".join(bought_titles), never=", ".join(rule.never))
            if bought_titles
            else ""
        )
        put(f"cross-sell-{rule.handle}", mask, constant(text))

    # holiday-shoppers: share of orders placed in the season months.
    months = (
        ds.order_day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
    ) + 1
    in_season = np.isin(months, np.asarray(cfg.season_months))
    season_orders = np.bincount(ds.order_customer[in_season], minlength=ds.n_customers)
    season_l = season_orders.tolist()
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(f.n_orders > 0, season_orders / np.maximum(f.n_orders, 1), 0.0)
    holiday = encoder("holiday")
    season = list(cfg.season_months)
    put(
        "holiday-shoppers",
        (season_orders > 0) & (share >= cfg.holiday_min_share),
        lambda i: holiday(season_orders=season_l[i], orders=n_orders_l[i], season_months=season),
    )
    goal = cfg.milestone_amount
    milestone = encoder("milestone")
    put(
        "spend-milestone",
        (f.spend >= goal * (1 - cfg.milestone_window)) & (f.spend < goal),
        lambda i: milestone(spend_money=spend_l[i], gap_money=goal - spend_l[i], goal_money=goal),
    )
    region = encoder("region", text=("place",))
    # Each customer's region as a small integer (a shop has few distinct regions), so each
    # region segment is one vectorised look-up instead of a pass over every customer's key.
    distinct: dict[tuple[str, str], int] = {}
    key_ids = np.fromiter(
        (distinct.setdefault(k, len(distinct)) for k in keys), dtype=np.int64, count=len(keys)
    )
    for country, province, count in stats.regions:
        handle = f"region-{country}-{province}".lower() if province else f"region-{country}".lower()
        matching = [
            i for k, i in distinct.items() if k[0] == country and (not province or k[1] == province)
        ]
        mask = np.isin(key_ids, np.asarray(matching, dtype=np.int64))
        where = f"{province}, {country}" if province else country
        put(
            handle,
            mask,
            constant(region(place=where, customers=count)),
        )

    if cfg.custom_segments:
        columns = custom_columns(ds, f, preds, (r_s, f_s, m_s), group)
        cache: dict[str, BoolArray] = {}

        def product_mask(reference: str) -> BoolArray:
            if reference not in cache:
                cache[reference] = crosssell.bought_any(
                    ds, crosssell.products_matching(ds, reference)
                )
            return cache[reference]

        custom = encoder("custom", text=("rule",))
        for i_c, spec in enumerate(cfg.custom_segments):
            seg = rules.parse_custom_segment(spec, f"custom_segments[{i_c}]")
            text = custom(rule=rules.describe(seg.root))
            put(
                f"custom-{seg.handle}",
                rules.evaluate(seg.root, columns, product_mask),
                constant(text),
            )

    return Evaluation(ds, f, stats, preds, (r_s, f_s, m_s), group, out)


def today() -> dt.date:
    """Today's UTC date (the default "as of")."""
    return dt.datetime.now(dt.UTC).date()
