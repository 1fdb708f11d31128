"""The built-in segment library: the playbook as pure functions over a :class:`Dataset`.

:func:`evaluate` takes a dataset, the shop's :class:`ShopConfig` and a day, and returns every
segment's members (customer indices) with a reason per member: stored JSON (:class:`Reason`)
that the page translates and :func:`render` says in English ("48 units of Dinner Napkins on
3 March 2026"). Segments overlap; each is defined on its own. Cancelled and test orders
never reach the dataset.

Some quantities belong to the whole shop rather than one customer: the VIP spend cutoff, the
RFM quintile edges, the fitted BG/NBD and Gamma-Gamma parameters, the email domains business
buyers use and the regions with most customers. They are gathered in :class:`ShopStats`; a full
recompute derives them from the dataset, and the incremental recompute of one customer passes
the cached ones back in so that customer is judged by the same yardsticks as everyone else.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shopify_app.segments import clv, crosssell, rfm, rules
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import (
    Dataset,
    Features,
    compute_features,
    day_date,
    day_number,
    email_domain,
)

log = logging.getLogger(__name__)

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

# Free-mail providers: a shared domain here says nothing about a shared employer.
FREE_MAIL = frozenset(
    (
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de",
        "ymail.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr", "outlook.com", "live.com",
        "msn.com", "aol.com", "icloud.com", "me.com", "mac.com", "gmx.com", "gmx.de", "gmx.net",
        "web.de", "mail.com", "protonmail.com", "proton.me", "pm.me", "zoho.com", "yandex.ru",
        "yandex.com", "mail.ru", "qq.com", "163.com", "126.com", "naver.com", "daum.net",
        "hanmail.net", "comcast.net", "verizon.net", "att.net", "sbcglobal.net", "orange.fr",
        "free.fr", "laposte.net", "wanadoo.fr", "libero.it", "btinternet.com", "sky.com",
        "t-online.de", "seznam.cz", "wp.pl", "o2.pl", "fastmail.com", "hey.com", "example.com",
        "example.org",
    )
)  # fmt: skip

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

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


@dataclass(frozen=True)
class SegmentDef:
    """What a segment is: handle, display name, kind and the parameters that define it."""

    handle: str
    name: str
    kind: str  # builtin | rfm | cross_sell | region | custom
    definition: dict[str, Any] = field(default_factory=dict)


@dataclass
class SegmentResult:
    """A segment's members (customer indices, ascending) and one reason per member.

    Reasons are in their stored form (JSON, see :class:`Reason`); :func:`render` says one in
    English.
    """

    definition: SegmentDef
    members: IntArray
    reasons: list[str]

    @property
    def count(self) -> int:
        """Number of members."""
        return len(self.members)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _inf_if_none(value: Any) -> float:
    return math.inf if value is None else float(value)


@dataclass
class ShopStats:
    """Shop-level yardsticks from the last full recompute (JSON-cached for incremental runs)."""

    as_of: str
    customers: int
    vip_cutoff: float
    at_risk_min_spend: float
    rfm_edges: rfm.RfmEdges
    bgnbd: clv.BgNbdParams | None
    gamma_gamma: clv.GammaGammaParams | None
    model_status: str  # fitted | fallback
    model_note: str
    business_domains: list[str]
    regions: list[tuple[str, str, int]]  # (country, province, customers)
    median_interval: float
    mean_order_value: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "as_of": self.as_of,
            "customers": self.customers,
            # JSON has no infinity (PostgreSQL refuses it): "nobody qualifies" is stored as null.
            "vip_cutoff": _finite_or_none(self.vip_cutoff),
            "at_risk_min_spend": _finite_or_none(self.at_risk_min_spend),
            "rfm_edges": self.rfm_edges.to_dict(),
            "bgnbd": self.bgnbd.to_dict() if self.bgnbd else None,
            "gamma_gamma": self.gamma_gamma.to_dict() if self.gamma_gamma else None,
            "model_status": self.model_status,
            "model_note": self.model_note,
            "business_domains": self.business_domains,
            "regions": [list(r) for r in self.regions],
            "median_interval": self.median_interval,
            "mean_order_value": self.mean_order_value,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShopStats:
        """Inverse of :meth:`to_dict`."""
        return cls(
            as_of=str(data["as_of"]),
            customers=int(data.get("customers", 0)),
            vip_cutoff=_inf_if_none(data.get("vip_cutoff")),
            at_risk_min_spend=_inf_if_none(data.get("at_risk_min_spend")),
            rfm_edges=rfm.RfmEdges.from_dict(data["rfm_edges"]),
            bgnbd=clv.BgNbdParams.from_dict(data["bgnbd"]) if data.get("bgnbd") else None,
            gamma_gamma=(
                clv.GammaGammaParams.from_dict(data["gamma_gamma"])
                if data.get("gamma_gamma")
                else None
            ),
            model_status=str(data.get("model_status", "fallback")),
            model_note=str(data.get("model_note", "")),
            business_domains=list(data.get("business_domains", [])),
            regions=[(str(c), str(p), int(n)) for c, p, n in data.get("regions", [])],
            median_interval=float(data.get("median_interval", 90.0)),
            mean_order_value=float(data.get("mean_order_value", 0.0)),
        )


@dataclass
class Predictions:
    """Per-customer model outputs (zeros for customers without orders)."""

    p_alive: FloatArray
    purchases_90d: FloatArray
    clv_12m: FloatArray


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


# ---------------------------------------------------------------- reasons
#
# A membership reason is stored as JSON, ``{"key": "repeat", "params": {...}}``, so the page can
# say it in the merchant's language (``reason.<key>`` in web/i18n/<lang>.json, filled by
# web/i18n.js) while the CSV export, the data-request export and ``analyze`` say it in English
# through :func:`render`. The English templates live here, not in web/i18n/en.json, because the
# package must work installed without ``web/``; tests/test_segments_library.py checks that
# en.json holds exactly these templates and the other languages the same placeholders.
#
# A parameter's name says how to show it, on both sides:
#   ``*_date``   an ISO day ("2026-03-03") shown as a date ("3 March 2026")
#   ``*_money``  an amount shown with two decimals ("1,234.50"; the shop's currency is implied)
#   ``*_months`` month numbers ([11, 12]) shown as month names ("November–December")
#   anything else: numbers with grouping and at most one decimal, text as written.

REASON_TEMPLATES: dict[str, str] = {
    "business.order_units": "{units} units of {product} on {day_date}",
    "business.order_units_unnamed": "{units} units of one item on {day_date}",
    "business.window_units": "{units} units in the last {days} days",
    "business.company": "orders for a company: {company}",
    "business.domain": "email at {domain}, a company another business buyer also uses",
    "repeat": "{orders} orders, the last on {last_date}",
    "true_fan": "{orders} orders, about every {days} days",
    "one_time": "one order on {day_date} ({spend_money})",
    # Lapsed reasons name the day of the last order, not "N days ago": a count relative to
    # as-of would change every member's reason every day, and the daily recompute would
    # rewrite them all. The segment's own name says how long ago ("Lapsed 60–89 days").
    "lapsed": "last order on {last_date}",
    "lapsed.discount": "last order on {last_date}; suggest {percent}% off",
    "lapsed.reminder": (
        "last order on {last_date}; usually orders every {every} days: send a reminder, no discount"
    ),
    "vip": "net spend {spend_money} (top {share}% start at {cutoff_money})",
    "likely": "{percent}% likely active; {orders} orders expected in {days} days",
    "at_risk": "spent {spend_money} over {orders} orders; only {percent}% likely still active",
    "rfm": "R{r} F{f} M{m}",
    "cross_sell": "bought {bought}; never bought {never}",
    "holiday": "{season_orders} of {orders} orders in {season_months}",
    "milestone": "spent {spend_money}: {gap_money} from the {goal_money} reward",
    "region": "lives in {place}, where {customers} customers are",
    "custom": "matches {rule}",
}

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_json_text = json.JSONEncoder(ensure_ascii=False).encode


@dataclass(frozen=True)
class Reason:
    """Why a customer is in a segment: a message key and its parameters."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The stored form (what ``Membership.reason`` holds)."""
        return json.dumps(
            {"key": self.key, "params": self.params}, ensure_ascii=False, separators=(",", ":")
        )

    @classmethod
    def parse(cls, stored: str | None) -> Reason | None:
        """The reason in a stored string; None for empty or plain (pre-JSON) text."""
        if not stored or not stored.startswith("{"):
            return None
        try:
            data = json.loads(stored)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("key"), str):
            return None
        params = data.get("params")
        return cls(data["key"], params if isinstance(params, dict) else {})


def _encoder(key: str, *, text: tuple[str, ...] = ()) -> Callable[..., str]:
    """A function writing one reason key's JSON from keyword arguments (the template's names).

    A big shop gives a million members a reason each, so this is the hot path: the function is
    generated (as :mod:`dataclasses` does) to be one %-format over positional values, several
    times faster than ``json.dumps`` or a ``**kwargs`` wrapper. Numbers go in as given, ``*_date``
    values are ISO days (nothing to escape), ``*_money`` gets two decimals, and the ``text``
    names and ``*_months`` lists are JSON-encoded.
    """
    names = list(dict.fromkeys(_PLACEHOLDER.findall(REASON_TEMPLATES[key])))
    encoded = set(text) | {n for n in names if n.endswith("_months")}
    if not set(text) <= set(names):
        raise ValueError(f"{key}: unknown text parameters {sorted(set(text) - set(names))}")
    parts, values = [], []
    for name in names:
        if name.endswith("_date"):
            code = '"%s"'
        elif name.endswith("_money"):
            code = "%.2f"
        else:
            code = "%s"
        parts.append(_json_text(name).replace("%", "%%") + ":" + code)
        values.append(f"_json_text({name})" if name in encoded else name)
    template = (
        '{"key":' + _json_text(key).replace("%", "%%") + ',"params":{' + ",".join(parts) + "}}"
    )
    source = f"def encode(*, {', '.join(names)}):\n    return TEMPLATE % ({', '.join(values)},)\n"
    namespace: dict[str, Any] = {"TEMPLATE": template, "_json_text": _json_text}
    exec(source, namespace)  # the names come from REASON_TEMPLATES, never from input
    encode: Callable[..., str] = namespace["encode"]
    return encode


def _iso(day: int) -> str:
    return day_date(day).isoformat()


def _season_label(months: list[int] | tuple[int, ...]) -> str:
    months = list(months)
    if len(months) == 1:
        return MONTHS[months[0] - 1]
    if months == list(range(months[0], months[-1] + 1)):
        return f"{MONTHS[months[0] - 1]}–{MONTHS[months[-1] - 1]}"
    return ", ".join(MONTHS[m - 1] for m in months)


def _english(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name.endswith("_date") and isinstance(value, str):
        try:
            d = dt.date.fromisoformat(value)
        except ValueError:
            return value
        return f"{d.day} {MONTHS[d.month - 1]} {d.year}"
    if name.endswith("_money") and isinstance(value, int | float):
        return money(float(value))
    if name.endswith("_months") and isinstance(value, list):
        return _season_label([int(m) for m in value if 1 <= int(m) <= 12])
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"
    return str(value)


def render(reason: Reason | str | None) -> str:
    """A reason in English: the stored JSON, a :class:`Reason`, or plain text (returned as is)."""
    if reason is None:
        return ""
    parsed = reason if isinstance(reason, Reason) else Reason.parse(reason)
    if parsed is None:
        return str(reason)
    template = REASON_TEMPLATES.get(parsed.key)
    if template is None:
        text = parsed.params.get("text")
        return str(text) if text is not None else parsed.key
    params = parsed.params
    return _PLACEHOLDER.sub(lambda m: _english(m.group(1), params.get(m.group(1))), template)


def money(value: float) -> str:
    """Money as the page shows it: thousands separators, two decimals."""
    return f"{value:,.2f}"


class _Days:
    """Formats day numbers as ISO dates, caching because many members share a day."""

    def __init__(self) -> None:
        self._cache: dict[int, str] = {}

    def __call__(self, day: int) -> str:
        text = self._cache.get(day)
        if text is None:
            text = self._cache[day] = _iso(day)
        return text


def _constant(text: str) -> Callable[[int], str]:
    return lambda _i: text


def _lower(values: list[str | None]) -> list[str]:
    return [(v or "").strip().lower() for v in values]


# ---------------------------------------------------------------- shop-level statistics


def _company_flags(ds: Dataset) -> list[str]:
    """A company name per customer: the customer's own, else one from a billing address."""
    names = [(c or "").strip() for c in ds.info["company"]]
    # Most orders carry no company: find the few that do without a Python step per order.
    for i in [i for i, company in enumerate(ds.order_company) if company]:
        company = (ds.order_company[i] or "").strip()
        if company:
            c = int(ds.order_customer[i])
            if not names[c]:
                names[c] = company
    return names


def _region_keys(ds: Dataset) -> list[tuple[str, str]]:
    countries = ds.info["country_code"]
    provinces = ds.info["province_code"]
    return [
        ((c or "").strip().upper(), (p or "").strip().upper())
        for c, p in zip(countries, provinces, strict=True)
    ]


def _business_core(ds: Dataset, f: Features, cfg: ShopConfig, companies: list[str]) -> BoolArray:
    has_company = np.fromiter((bool(c) for c in companies), dtype=bool, count=ds.n_customers)
    return f.has_orders & (
        (f.max_line_units >= cfg.business_units_per_order)
        | (f.window_units >= cfg.business_units_per_window)
        | has_company
    )


def _fit_models(
    f: Features,
) -> tuple[clv.BgNbdParams | None, clv.GammaGammaParams | None, str, str]:
    mask = f.has_orders
    n = int(mask.sum())
    repeat = int((f.occasions[mask] > 1).sum())
    history = int(f.as_of - f.first_day[mask].min()) if n else 0
    if n < clv.MIN_CUSTOMERS or repeat < clv.MIN_REPEAT_CUSTOMERS:
        return (
            None,
            None,
            "fallback",
            f"too few customers for the purchase model ({n} customers, {repeat} repeat; "
            f"needs {clv.MIN_CUSTOMERS} and {clv.MIN_REPEAT_CUSTOMERS}): "
            "predictions use each customer's own order rhythm",
        )
    if history < clv.MIN_HISTORY_DAYS:
        return (
            None,
            None,
            "fallback",
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
        return None, None, "fallback", "the purchase model did not converge: rhythm fallback"
    gg: clv.GammaGammaParams | None = None
    try:
        gg = clv.fit_gamma_gamma(x, m)
        if gg.q <= 1:
            gg = None
    except (ValueError, FloatingPointError) as exc:
        log.warning("Gamma-Gamma fit failed: %s", exc)
    note = "BG/NBD and Gamma-Gamma fitted" if gg else "BG/NBD fitted; order value is the average"
    note += sampled
    return bg, gg, "fitted", note


def compute_stats(
    ds: Dataset,
    f: Features,
    cfg: ShopConfig,
    as_of: dt.date,
    companies: list[str] | None = None,
    region_keys: list[tuple[str, str]] | None = None,
) -> ShopStats:
    """The shop-level yardsticks for a full recompute.

    ``companies`` and ``region_keys`` (from :func:`_company_flags` and :func:`_region_keys`)
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
    bg, gg, status, note = _fit_models(f)

    companies = _company_flags(ds) if companies is None else companies
    core = _business_core(ds, f, cfg, companies)
    domains = Counter(
        d
        for d in (email_domain(ds.info["email"][i]) for i in np.nonzero(core)[0])
        if d and d not in FREE_MAIL
    )
    regions_count = Counter(
        k
        for k, has in zip(
            _region_keys(ds) if region_keys is None else region_keys, mask, strict=True
        )
        if has and k[0]
    )
    regions = [
        (c, p, cnt)
        for (c, p), cnt in regions_count.most_common(cfg.region_top)
        if cnt >= cfg.region_min_customers
    ]
    intervals = f.mean_interval[f.n_orders > 1]
    median_interval = float(np.median(intervals)) if len(intervals) else 90.0
    total_orders = int(f.n_orders.sum())
    return ShopStats(
        as_of=as_of.isoformat(),
        customers=n,
        vip_cutoff=vip_cutoff,
        at_risk_min_spend=at_risk_min,
        rfm_edges=edges,
        bgnbd=bg,
        gamma_gamma=gg,
        model_status=status,
        model_note=note,
        business_domains=sorted(domains),
        regions=regions,
        median_interval=max(median_interval, 1.0),
        mean_order_value=float(f.spend.sum() / total_orders) if total_orders else 0.0,
    )


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


# ---------------------------------------------------------------- the segments


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
            {"share": cfg.vip_share, "cutoff": _finite_or_none(stats.vip_cutoff)},
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
                "min_spend": _finite_or_none(stats.at_risk_min_spend),
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
    companies = _company_flags(ds)
    keys = _region_keys(ds)
    if stats is None:
        stats = compute_stats(ds, f, cfg, as_of, companies=companies, region_keys=keys)
    preds = predict(f, stats)
    has = f.has_orders
    days = _Days()
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
    core = _business_core(ds, f, cfg, companies)
    domains = [email_domain(e) for e in emails]
    known = set(stats.business_domains)
    by_domain = f.has_orders & np.fromiter(
        (bool(d) and d in known and d not in FREE_MAIL for d in domains),
        dtype=bool,
        count=ds.n_customers,
    )

    order_units = _encoder("business.order_units", text=("product",))
    order_units_unnamed = _encoder("business.order_units_unnamed")
    window_units = _encoder("business.window_units")
    company_reason = _encoder("business.company", text=("company",))
    domain_reason = _encoder("business.domain", text=("domain",))

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

    repeat = _encoder("repeat")
    put(
        "repeat-customers",
        f.n_orders >= cfg.repeat_min_orders,
        lambda i: repeat(orders=n_orders_l[i], last_date=days(int(last_day_l[i]))),
    )
    interval = f.mean_interval
    interval_l = interval.tolist()

    true_fan = _encoder("true_fan")

    def fan_reason(i: int) -> str:
        return true_fan(orders=n_orders_l[i], days=round(float(interval_l[i])))

    put("true-fans", (f.n_orders >= cfg.true_fan_min_orders) & ~business, fan_reason)
    one_time = _encoder("one_time")
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
    lapsed = _encoder("lapsed")
    lapsed_discount = _encoder("lapsed.discount")
    lapsed_reminder = _encoder("lapsed.reminder")
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

    vip = _encoder("vip")
    vip_share = round(cfg.vip_share * 100)
    put(
        "vip",
        f.spend >= stats.vip_cutoff,
        lambda i: vip(spend_money=spend_l[i], share=vip_share, cutoff_money=stats.vip_cutoff),
    )
    likely = _encoder("likely")
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
    at_risk = _encoder("at_risk")
    put(
        "at-risk",
        (f.n_orders >= 2)
        & (f.spend >= stats.at_risk_min_spend)
        & (preds.p_alive < cfg.at_risk_max_p_alive),
        lambda i: at_risk(
            spend_money=spend_l[i], orders=n_orders_l[i], percent=round(p_alive_l[i] * 100)
        ),
    )
    rfm_reason = _encoder("rfm")
    for code, key in enumerate(rfm.GROUP_KEYS):
        put(f"rfm-{key}", group == code, lambda i: rfm_reason(r=r_l[i], f=f_l[i], m=m_l[i]))

    cross_sell = _encoder("cross_sell", text=("bought", "never"))
    for rule in cfg.cross_sell:
        mask, bought = crosssell.rule_members(ds, rule)
        bought_titles = [titles[k] for k in sorted(bought) if k in titles][:3]
        text = (
            cross_sell(bought=", ".join(bought_titles), never=", ".join(rule.never))
            if bought_titles
            else ""
        )
        put(f"cross-sell-{rule.handle}", mask, _constant(text))

    # holiday-shoppers: share of orders placed in the season months.
    months = (
        ds.order_day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
    ) + 1
    in_season = np.isin(months, np.asarray(cfg.season_months))
    season_orders = np.bincount(ds.order_customer[in_season], minlength=ds.n_customers)
    season_l = season_orders.tolist()
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(f.n_orders > 0, season_orders / np.maximum(f.n_orders, 1), 0.0)
    holiday = _encoder("holiday")
    season = list(cfg.season_months)
    put(
        "holiday-shoppers",
        (season_orders > 0) & (share >= cfg.holiday_min_share),
        lambda i: holiday(season_orders=season_l[i], orders=n_orders_l[i], season_months=season),
    )
    goal = cfg.milestone_amount
    milestone = _encoder("milestone")
    put(
        "spend-milestone",
        (f.spend >= goal * (1 - cfg.milestone_window)) & (f.spend < goal),
        lambda i: milestone(spend_money=spend_l[i], gap_money=goal - spend_l[i], goal_money=goal),
    )
    region = _encoder("region", text=("place",))
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
            _constant(region(place=where, customers=count)),
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

        custom = _encoder("custom", text=("rule",))
        for i_c, spec in enumerate(cfg.custom_segments):
            seg = rules.parse_custom_segment(spec, f"custom_segments[{i_c}]")
            text = custom(rule=rules.describe(seg.root))
            put(
                f"custom-{seg.handle}",
                rules.evaluate(seg.root, columns, product_mask),
                _constant(text),
            )

    return Evaluation(ds, f, stats, preds, (r_s, f_s, m_s), group, out)


def custom_columns(
    ds: Dataset,
    f: Features,
    preds: Predictions,
    scores: tuple[IntArray, IntArray, IntArray],
    group: IntArray,
) -> dict[str, Any]:
    """The per-customer columns custom rules test (see :mod:`shopify_app.segments.rules`)."""
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


def today() -> dt.date:
    """Today's UTC date (the default "as of")."""
    return dt.datetime.now(dt.UTC).date()


__all__ = [
    "REASON_TEMPLATES",
    "Evaluation",
    "Predictions",
    "Reason",
    "SegmentDef",
    "SegmentResult",
    "ShopStats",
    "compute_stats",
    "day_number",
    "evaluate",
    "predict",
    "render",
    "segment_definitions",
    "today",
]
