"""Per-shop segment settings: thresholds, lapsed tiers, seasons, rules, tag prefix, consent.

:class:`ShopConfig` lives in ``Shop.settings`` (JSON) under the keys of
:meth:`ShopConfig.to_settings`; keys it does not know are left alone, so other features can
keep their own settings next to it. Every value is validated on the way in, and a bad one
raises :class:`~shopify_app.errors.InputError` whose ``field`` names it
(``"lapsed_tiers[1].days"``), so the page can put the message next to the right input.

A merchant's change goes through :meth:`ShopConfig.changed`, which also holds a new tag prefix
to the rules for new prefixes; a prefix stored before those rules stays readable.

Lapsed tiers are segments by position (:func:`lapsed_handle`: tier 1, tier 2, ...), not by their
days, so changing 60/90 days to 45/120/180 keeps tier 1 and 2 (their tag, their syncs) and adds
tier 3.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from anyascii import anyascii

from shopify_app.errors import InputError
from shopify_app.tagging.tags import DEFAULT_PREFIX, prefix_problem, stored_prefix_problem

HANDLE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
CONSENT_POLICIES = ("subscribed", "subscribed_or_pending", "all")


@dataclass(frozen=True)
class LapsedTier:
    """Customers whose last order is at least ``days`` ago (up to the next tier)."""

    days: int
    discount_percent: int


def lapsed_handle(tier: int) -> str:
    """The handle of the ``tier``-th lapsed tier (1-based): ``lapsed-tier-1``, whatever its days."""
    return f"lapsed-tier-{tier}"


LAPSED_REMINDER = "lapsed-reminder"
"""Regulars in a lapsed tier still inside their usual interval: a reminder, no discount."""


def holdout_handle(handle: str) -> str:
    """The handle of ``handle``'s hold-out group, whose tag keeps it out of Goldpan's actions."""
    return f"holdout-{handle}"


@dataclass(frozen=True)
class CrossSellRule:
    """ "Bought any of ``bought``, never any of ``never``": products by id or title words."""

    handle: str
    name: str
    bought: tuple[str, ...]
    never: tuple[str, ...]


DEFAULT_CROSS_SELL = (
    CrossSellRule(
        "napkins-to-table-linen",
        "Dinner napkin buyers without cocktail napkins, tea napkins or placemats",
        ("dinner napkin",),
        ("cocktail napkin", "tea napkin", "placemat"),
    ),
    CrossSellRule(
        "handkerchief-gift-box",
        "Wedding handkerchief buyers without a handkerchief gift box",
        ("wedding handkerchief",),
        ("handkerchief gift box",),
    ),
)


@dataclass(frozen=True)
class ShopConfig:
    """Everything a merchant can tune about segments; the defaults follow the playbook."""

    tag_prefix: str = DEFAULT_PREFIX
    consent_policy: str = "subscribed"
    business_units_per_order: int = 36
    business_units_per_window: int = 72
    business_window_days: int = 365
    repeat_min_orders: int = 2
    true_fan_min_orders: int = 3
    lapsed_tiers: tuple[LapsedTier, ...] = (LapsedTier(60, 10), LapsedTier(90, 15))
    reminder_factor: float = 1.5
    vip_share: float = 0.10
    at_risk_min_spend_share: float = 0.5
    season_months: tuple[int, ...] = (11, 12)
    holiday_min_share: float = 0.6
    milestone_amount: float = 500.0
    milestone_window: float = 0.2
    region_top: int = 3
    region_min_customers: int = 5
    cross_sell: tuple[CrossSellRule, ...] = DEFAULT_CROSS_SELL
    custom_segments: tuple[dict[str, Any], ...] = ()
    # Segment handle -> share of its members kept as a hold-out (see shopify_app.actions.holdout).
    holdouts: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None) -> ShopConfig:
        """Read and validate the config from ``Shop.settings`` (missing keys take defaults)."""
        settings = dict(settings or {})
        default = cls()
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in settings:
                values[f.name] = getattr(default, f.name)
                continue
            values[f.name] = _PARSERS[f.name](settings[f.name], f.name)
        config = cls(**values)
        config.validate()
        return config

    def to_settings(self) -> dict[str, Any]:
        """JSON-able form; merge it into ``Shop.settings``."""
        data = asdict(self)
        data["lapsed_tiers"] = [asdict(t) for t in self.lapsed_tiers]
        data["cross_sell"] = [
            {"handle": r.handle, "name": r.name, "bought": list(r.bought), "never": list(r.never)}
            for r in self.cross_sell
        ]
        data["season_months"] = list(self.season_months)
        data["custom_segments"] = [dict(c) for c in self.custom_segments]
        data["holdouts"] = dict(self.holdouts)
        return data

    def changed(self, changes: dict[str, Any]) -> ShopConfig:
        """This config with ``changes`` (some settings, by key) applied and validated.

        Unknown keys are refused. A new tag prefix must pass
        :func:`~shopify_app.tagging.tags.prefix_problem`; the stored one is not re-judged.
        """
        current = self.to_settings()
        unknown = sorted(set(changes) - set(current))
        if unknown:
            raise InputError(
                f"unknown setting {unknown[0]!r}", field=unknown[0], code="unknown_setting"
            )
        config = ShopConfig.from_settings({**current, **changes})
        if config.tag_prefix != self.tag_prefix:
            problem = prefix_problem(config.tag_prefix)
            if problem is not None:
                raise InputError(problem, field="tag_prefix", code="prefix_shape")
        return config

    def validate(self) -> None:
        """Cross-field checks; raises :class:`InputError` naming the field that is wrong (the
        later of two that contradict each other, the rule that repeats a handle)."""
        for i in range(1, len(self.lapsed_tiers)):
            before = self.lapsed_tiers[i - 1].days
            if self.lapsed_tiers[i].days <= before:
                raise InputError(
                    "lapsed tiers must have increasing day counts",
                    field=f"lapsed_tiers[{i}].days",
                    code="tier_days_order",
                    params={"before": before},
                )
        if self.true_fan_min_orders < self.repeat_min_orders:
            # Every true fan is a repeat customer: a lower bar would make them a wider group.
            raise InputError(
                "true fans need at least as many orders as repeat customers",
                field="true_fan_min_orders",
                code="true_fan_below_repeat",
                params={"repeat": self.repeat_min_orders},
            )
        seen_rules: set[str] = set()
        for i, rule in enumerate(self.cross_sell):
            if rule.handle in seen_rules:
                raise InputError(
                    "cross-sell rule handles must be unique",
                    field=f"cross_sell[{i}].handle",
                    code="duplicate_handle",
                )
            seen_rules.add(rule.handle)
            bought = {ref.lower() for ref in rule.bought}
            for j, ref in enumerate(rule.never):
                if ref.lower() in bought:
                    # Nobody can have bought it and never bought it: the segment would be empty.
                    raise InputError(
                        f"{ref!r} is both bought and never bought",
                        field=f"cross_sell[{i}].never[{j}]",
                        code="same_product",
                        params={"product": ref},
                    )
        from shopify_app.segments.rules import own_tag_problem, parse_custom_segment

        seen: set[str] = set()
        for i, spec in enumerate(self.custom_segments):
            seg = parse_custom_segment(spec, f"custom_segments[{i}]")
            own_tag_problem(seg, f"custom_segments[{i}]", self.tag_prefix, ())
            if seg.handle in seen:
                raise InputError(
                    f"duplicate custom segment handle {seg.handle!r}",
                    field=f"custom_segments[{i}].handle",
                    code="duplicate_handle",
                )
            seen.add(seg.handle)


def _int(lo: int, hi: int) -> Any:
    def parse(value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise InputError(f"{name} must be a whole number", field=name, code="whole_number")
        if not lo <= value <= hi:
            raise InputError(
                f"{name} must be between {lo} and {hi}",
                field=name,
                code="range",
                params={"min": lo, "max": hi},
            )
        return int(value)

    return parse


def _float(lo: float, hi: float) -> Any:
    def parse(value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{name} must be a number", field=name, code="number")
        if not lo <= float(value) <= hi:
            raise InputError(
                f"{name} must be between {lo:g} and {hi:g}",
                field=name,
                code="range",
                params={"min": lo, "max": hi},
            )
        return float(value)

    return parse


def _tag_prefix(value: Any, name: str) -> str:
    problem = stored_prefix_problem(value if isinstance(value, str) else "")
    if problem is not None:
        raise InputError(problem, field=name, code="prefix_shape")
    return str(value)


def _consent(value: Any, name: str) -> str:
    if value not in CONSENT_POLICIES:
        raise InputError(
            f"consent policy must be one of {', '.join(CONSENT_POLICIES)}",
            field=name,
            code="choice",
        )
    return str(value)


def _tiers(value: Any, name: str) -> tuple[LapsedTier, ...]:
    if not isinstance(value, list) or not value or len(value) > 5:
        raise InputError(
            "lapsed tiers must be a list of 1 to 5 tiers",
            field=name,
            code="tier_count",
            params={"max": 5},
        )
    tiers = []
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise InputError(
                "a lapsed tier needs days and discount_percent", field=where, code="shape"
            )
        days = _int(1, 3650)(item.get("days"), f"{where}.days")
        pct = _int(0, 90)(item.get("discount_percent", 0), f"{where}.discount_percent")
        tiers.append(LapsedTier(days, pct))
    return tuple(tiers)


def _months(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise InputError(
            "season months must be a non-empty list of months 1-12", field=name, code="no_months"
        )
    return tuple(sorted({_int(1, 12)(m, f"{name}[{i}]") for i, m in enumerate(value)}))


def _handle(value: Any, name: str) -> str:
    if not isinstance(value, str) or not HANDLE_RE.match(value):
        raise InputError(
            "handle must be lowercase letters, digits and dashes (at most 48)",
            field=name,
            code="handle_shape",
        )
    return value


def _products(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise InputError(
            "list at least one product (id or title words)", field=name, code="no_products"
        )
    out = []
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, str | int) or not str(item).strip():
            raise InputError(
                "a product is an id or title words", field=f"{name}[{i}]", code="shape"
            )
        out.append(str(item).strip())
    return tuple(out)


def _cross_sell(value: Any, name: str) -> tuple[CrossSellRule, ...]:
    if not isinstance(value, list) or len(value) > 50:
        raise InputError(
            "cross-sell rules must be a list (at most 50)",
            field=name,
            code="too_many",
            params={"max": 50},
        )
    rules = []
    # Handles the merchant's rules already have: a new rule's handle is made around them.
    taken = {item.get("handle") for item in value if isinstance(item, dict)}
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise InputError("a cross-sell rule is an object", field=where, code="shape")
        rule_name = item.get("name") or item.get("handle") or ""
        if not isinstance(rule_name, str):
            raise InputError("name must be text", field=f"{where}.name", code="shape")
        bought = _products(item.get("bought"), f"{where}.bought")
        never = _products(item.get("never"), f"{where}.never")
        if item.get("handle"):
            handle = _handle(item["handle"], f"{where}.handle")
        else:
            handle = rule_handle(rule_name, bought, taken)
            taken.add(handle)
        rules.append(CrossSellRule(handle, rule_name or handle, bought, never))
    return tuple(rules)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", anyascii(text).lower()).strip("-")[:40].rstrip("-")


def rule_handle(
    name: str, bought: tuple[str, ...], taken: set[Any], *, fallback: str = "rule"
) -> str:
    """A handle for a new cross-sell rule or custom segment, which names its tag: the name in
    Latin letters (생일 선물 -> ``saengil-seonmul``, Ελληνικά -> ``ellinika``), else a rule's
    bought product words, else ``fallback``; with ``-2``, ``-3``... when another has it."""
    words = " ".join(ref for ref in bought if not (ref.isascii() and ref.isdigit()))
    base = _slug(name) or _slug(words) or fallback
    handle, n = base, 1
    while handle in taken:
        n += 1
        handle = f"{base}-{n}"
    return handle


def _custom(value: Any, name: str) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or len(value) > 50:
        raise InputError(
            "custom segments must be a list (at most 50)",
            field=name,
            code="too_many",
            params={"max": 50},
        )
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InputError("a custom segment is an object", field=f"{name}[{i}]", code="shape")
    # A new segment's handle (its tag) is made from its name, in any script, as a rule's is.
    taken = {item.get("handle") for item in value}
    out = []
    for item in value:
        if not item.get("handle"):
            words = item.get("name") if isinstance(item.get("name"), str) else ""
            item = {**item, "handle": rule_handle(words or "", (), taken, fallback="segment")}
            taken.add(item["handle"])
        out.append(dict(item))
    return tuple(out)


def _holdouts(value: Any, name: str) -> dict[str, float]:
    if not isinstance(value, dict) or len(value) > 200:
        raise InputError("hold-outs must map segment handles to a share", field=name, code="shape")
    shares = {}
    for handle, share in value.items():
        where = f"{name}.{handle}"
        _handle(handle, where)
        shares[handle] = _float(0.0, 0.5)(share, where)
    return {h: s for h, s in shares.items() if s > 0}


_PARSERS: dict[str, Any] = {
    "tag_prefix": _tag_prefix,
    "consent_policy": _consent,
    "business_units_per_order": _int(1, 100000),
    "business_units_per_window": _int(1, 1000000),
    "business_window_days": _int(1, 3650),
    "repeat_min_orders": _int(2, 1000),
    "true_fan_min_orders": _int(2, 1000),
    "lapsed_tiers": _tiers,
    "reminder_factor": _float(1.0, 10.0),
    "vip_share": _float(0.001, 0.5),
    "at_risk_min_spend_share": _float(0.0, 1.0),
    "season_months": _months,
    "holiday_min_share": _float(0.01, 1.0),
    "milestone_amount": _float(1.0, 1e9),
    "milestone_window": _float(0.01, 0.9),
    "region_top": _int(0, 20),
    "region_min_customers": _int(1, 1000000),
    "cross_sell": _cross_sell,
    "custom_segments": _custom,
    "holdouts": _holdouts,
}

assert set(_PARSERS) == {f.name for f in fields(ShopConfig)}  # every field has a parser

__all__ = [
    "CONSENT_POLICIES",
    "LAPSED_REMINDER",
    "CrossSellRule",
    "LapsedTier",
    "ShopConfig",
    "holdout_handle",
    "lapsed_handle",
    "rule_handle",
]
