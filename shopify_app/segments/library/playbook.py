"""The playbook's segments: business buyers, repeat customers, true fans, one-time buyers,
lapsed tiers, VIP, holiday shoppers and customers close to a spend milestone.

Each segment is one function over the evaluation :class:`~.context.Context`.
"""

from __future__ import annotations

import numpy as np

from shopify_app.segments import cadence
from shopify_app.segments.config import LAPSED_REMINDER, ShopConfig, lapsed_handle
from shopify_app.segments.dataset import Dataset, Features, email_domain
from shopify_app.segments.evidence import company_evidence, is_mailbox_domain
from shopify_app.segments.library.context import BoolArray, Context
from shopify_app.segments.library.reasons import encoder


def company_names(ds: Dataset) -> list[str]:
    """A company per customer that is evidence of a business (:func:`.evidence.company_evidence`):
    the customer's own, else one from a billing address; ``''`` when there is none."""
    info = ds.info
    first, last, emails = info["first_name"], info["last_name"], info["email"]
    names = [
        company_evidence(c, first[i], last[i], emails[i]) if c else ""
        for i, c in enumerate(info["company"])
    ]
    # Most orders carry no company: find the few that do without a Python step per order.
    for i in [i for i, company in enumerate(ds.order_company) if company]:
        c = int(ds.order_customer[i])
        if not names[c]:
            names[c] = company_evidence(ds.order_company[i], first[c], last[c], emails[c])
    return names


def company_domains(ds: Dataset) -> list[str]:
    """Each customer's email domain when it can name an employer (not a consumer mailbox)."""
    verdicts: dict[str, bool] = {}
    out = []
    for email in ds.info["email"]:
        domain = email_domain(email)
        if domain not in verdicts:
            verdicts[domain] = not is_mailbox_domain(domain)
        out.append(domain if verdicts[domain] else "")
    return out


def business_core(ds: Dataset, f: Features, cfg: ShopConfig, companies: list[str]) -> BoolArray:
    """Business buyers on their own evidence: bulk units or a company (not a shared domain)."""
    has_company = np.fromiter((bool(c) for c in companies), dtype=bool, count=ds.n_customers)
    return f.has_orders & (
        (f.max_line_units >= cfg.business_units_per_order)
        | (f.window_units >= cfg.business_units_per_window)
        | has_company
    )


def business_domains(ds: Dataset, f: Features, cfg: ShopConfig, companies: list[str]) -> list[str]:
    """Company email domains of business buyers with evidence of their own (bulk units or a
    genuine company): a colleague on the same domain is evidence too. Mailboxes never count."""
    core = business_core(ds, f, cfg, companies)
    domains = company_domains(ds)
    return sorted({domains[i] for i in np.nonzero(core)[0].tolist() if domains[i]})


def business_buyers(ctx: Context) -> None:
    """Bulk units in one order or over the window, a genuine company, or the company email
    domain of another business buyer with evidence of their own."""
    ds, f, cfg = ctx.dataset, ctx.features, ctx.cfg
    companies = ctx.companies
    titles = ds.product_titles
    days = ctx.iso_day
    core = business_core(ds, f, cfg, companies)
    domains = company_domains(ds)
    known = set(ctx.stats.business_domains)
    # ``known`` holds the company domains of buyers with evidence of their own, so for a
    # customer without any, a domain on it is a colleague's evidence (also when ``ds`` holds
    # this one customer and ``stats`` come from the last full recompute).
    by_domain = f.has_orders & np.fromiter(
        (bool(d) and d in known for d in domains), dtype=bool, count=ds.n_customers
    )
    max_units_l = f.max_line_units.tolist()
    max_product_l = f.max_line_product.tolist()
    max_day_l = f.max_line_day.tolist()
    window_units_l = f.window_units.tolist()

    order_units = encoder("business.order_units", text=("product",))
    order_units_unnamed = encoder("business.order_units_unnamed")
    window_units = encoder("business.window_units")
    company_reason = encoder("business.company", text=("company",))
    domain_reason = encoder("business.domain", text=("domain",))

    def reason(i: int) -> str:
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

    ctx.put("business-buyers", core | by_domain, reason)


def repeat_customers(ctx: Context) -> None:
    """At least ``repeat_min_orders`` orders."""
    n_orders_l, last_day_l, days = ctx.n_orders, ctx.last_day, ctx.iso_day
    repeat = encoder("repeat")
    ctx.put(
        "repeat-customers",
        ctx.features.n_orders >= ctx.cfg.repeat_min_orders,
        lambda i: repeat(orders=n_orders_l[i], last_date=days(int(last_day_l[i]))),
    )


def true_fans(ctx: Context) -> None:
    """Repeat customers on their rhythm now (:func:`shopify_app.segments.cadence.true_fans`):
    at least ``true_fan_min_orders`` order days, usually ordering at least twice a year, not
    overdue, and never in a lapsed tier at the same time; business buyers aside (they order
    for work)."""
    f, cfg = ctx.features, ctx.cfg
    since = f.days_since_last
    fans = cadence.true_fans(
        f.occasions,
        since.astype(np.float64),
        ctx.usual_interval,
        min_orders=cfg.true_fan_min_orders,
        overdue=cfg.reminder_factor,
    )
    fans &= since < cfg.lapsed_tiers[0].days
    fans &= ~ctx.members_mask("business-buyers")
    n_orders_l, usual_l, last_day_l, days = ctx.n_orders, ctx.usual_days, ctx.last_day, ctx.iso_day
    true_fan = encoder("true_fan")
    ctx.put(
        "true-fans",
        fans,
        lambda i: true_fan(
            orders=n_orders_l[i], days=usual_l[i], last_date=days(int(last_day_l[i]))
        ),
    )


def one_time_buyers(ctx: Context) -> None:
    """Exactly one order."""
    last_day_l, spend_l, days = ctx.last_day, ctx.spend, ctx.iso_day
    one_time = encoder("one_time")
    ctx.put(
        "one-time-buyers",
        ctx.features.n_orders == 1,
        lambda i: one_time(day_date=days(int(last_day_l[i])), spend_money=spend_l[i]),
    )


def lapsed(ctx: Context) -> None:
    """One segment per lapsed tier: days since the last order, up to the next tier.

    Tiers are segments by position (``lapsed-tier-1``, ...), so a tier whose days change keeps
    its segment, tag and syncs.

    The reason suggests the tier's discount, except to regulars (``true_fan_min_orders``
    order days or more) still within their usual interval times ``reminder_factor``: they get
    a reminder, not a discount. Those regulars, whatever their tier, are also the reminder
    segment (:data:`LAPSED_REMINDER`), whose tag the tiers' discounts leave out.
    """
    f, cfg = ctx.features, ctx.cfg
    last_day_l, usual_l, days = ctx.last_day, ctx.usual_days, ctx.iso_day
    since = f.days_since_last
    regular = (f.occasions >= cfg.true_fan_min_orders) & (
        since <= ctx.usual_interval * cfg.reminder_factor
    )
    regular_l = regular.tolist()
    plain = encoder("lapsed")
    discount = encoder("lapsed.discount")
    reminder = encoder("lapsed.reminder")
    tiers = cfg.lapsed_tiers
    for i_t, tier in enumerate(tiers):
        upper = tiers[i_t + 1].days if i_t + 1 < len(tiers) else 10**7
        pct = tier.discount_percent

        def reason(i: int, pct: int = pct) -> str:
            last = days(int(last_day_l[i]))
            if regular_l[i]:
                return reminder(last_date=last, days=usual_l[i])
            if pct:
                return discount(last_date=last, percent=pct)
            return plain(last_date=last)

        ctx.put(lapsed_handle(i_t + 1), (since >= tier.days) & (since < upper), reason)
    ctx.put(
        LAPSED_REMINDER,
        (since >= tiers[0].days) & regular,
        lambda i: reminder(last_date=days(int(last_day_l[i])), days=usual_l[i]),
    )


def vip(ctx: Context) -> None:
    """Net spend in the shop's top ``vip_share`` (the cutoff is a shop yardstick)."""
    spend_l, cutoff = ctx.spend, ctx.stats.vip_cutoff
    share = round(ctx.cfg.vip_share * 100)
    reason = encoder("vip")
    ctx.put(
        "vip",
        ctx.features.spend >= cutoff,
        lambda i: reason(spend_money=spend_l[i], share=share, cutoff_money=cutoff),
    )


def holiday_shoppers(ctx: Context) -> None:
    """At least ``holiday_min_share`` of the customer's orders placed in the season months."""
    ds, f, cfg = ctx.dataset, ctx.features, ctx.cfg
    n_orders_l = ctx.n_orders
    months = (
        ds.order_day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
    ) + 1
    season_month = np.zeros(13, dtype=bool)  # by month number: a look-up, not an isin
    season_month[list(cfg.season_months)] = True
    in_season = season_month[months]
    season_orders = np.bincount(ds.order_customer[in_season], minlength=ds.n_customers)
    season_l = season_orders.tolist()
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(f.n_orders > 0, season_orders / np.maximum(f.n_orders, 1), 0.0)
    holiday = encoder("holiday")
    season = list(cfg.season_months)
    ctx.put(
        "holiday-shoppers",
        (season_orders > 0) & (share >= cfg.holiday_min_share),
        lambda i: holiday(season_orders=season_l[i], orders=n_orders_l[i], season_months=season),
    )


def spend_milestone(ctx: Context) -> None:
    """Net spend within ``milestone_window`` below the milestone: a nudge away from a reward."""
    f, cfg = ctx.features, ctx.cfg
    spend_l = ctx.spend
    goal = cfg.milestone_amount
    milestone = encoder("milestone")
    ctx.put(
        "spend-milestone",
        (f.spend >= goal * (1 - cfg.milestone_window)) & (f.spend < goal),
        lambda i: milestone(spend_money=spend_l[i], gap_money=goal - spend_l[i], goal_money=goal),
    )
