"""Membership reasons: stored as JSON for the page, said in English for exports and ``analyze``.

A membership reason is stored as JSON, ``{"key": "repeat", "params": {...}}``, so the page can
say it in the merchant's language (``reason.<key>`` in web/i18n/<lang>.json, filled by
web/i18n.js) while the CSV export, the data-request export and ``analyze`` say it in English
through :func:`render`. The English templates live here, not in web/i18n/en.json, because the
package must work installed without ``web/``; tests/test_segments_library.py checks that
en.json holds exactly these templates and the other languages the same placeholders.

A parameter's name says how to show it, on both sides:

- ``*_date``   an ISO day ("2026-03-03") shown as a date ("3 March 2026")
- ``*_money``  an amount shown in the shop's currency ("USD 1,234.50"; without one known, two
  decimals)
- ``*_months`` month numbers ([11, 12]) shown as month names ("November–December")
- a name in :data:`COUNTED` (``orders``, ``units``, ``days``, ``customers``): a count shown with
  its noun in the plural the number needs ("1 order", "3 orders"; the page's ``count.<name>``
  messages, chosen by the locale's plural rules), so templates never write the noun themselves
  (unless a language's noun changes with its place: Arabic "every two days" is "كل يومين",
  "two days" alone "يومان"; that template writes the count as a plural argument)
- anything else: numbers with grouping and at most one decimal, text as written.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shopify_app.segments.dataset import day_date

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


REASON_TEMPLATES: dict[str, str] = {
    "business.order_units": "{units} of {product} on {day_date}",
    "business.order_units_unnamed": "{units} of one item on {day_date}",
    "business.window_units": "{units} in the last {days}",
    "business.company": "orders for a company: {company}",
    "business.domain": "email at {domain}, a company another business buyer also uses",
    "repeat": "{orders}, the last on {last_date}",
    "true_fan": "{orders}, about every {days}; the last on {last_date}",
    "one_time": "one order on {day_date} ({spend_money})",
    # Lapsed reasons name the day of the last order, not "N days ago": a count relative to
    # as-of would change every member's reason every day, and the daily recompute would
    # rewrite them all. The segment's own name says how long ago ("Lapsed 60–89 days").
    "lapsed": "last order on {last_date}",
    "lapsed.discount": "last order on {last_date}; suggest {percent}% off",
    "lapsed.reminder": (
        "last order on {last_date}; usually orders every {days}: send a reminder, no discount"
    ),
    "vip": "net spend {spend_money} (top {share}% start at {cutoff_money})",
    "holdout": "held out of {segment} for comparison: no Goldpan discount, list or Flow event",
    # Predictions are explained by the customer's own rhythm (the segment's page says how the
    # shop's ranking did in the backtest), with the day of the last order for the same reason.
    "likely": "orders about every {days}; last order on {last_date}",
    "likely.one_order": (
        "ordered once so far, on {last_date}; repeat customers here order about every {days}"
    ),
    "at_risk": (
        "spent {spend_money} over {orders}; usually orders about every {days}, the last on "
        "{last_date}"
    ),
    "rfm": "R{r} F{f} M{m}",
    "cross_sell": "bought {bought}; never bought {never}",
    "holiday": "{season_orders} of {orders} in {season_months}",
    "milestone": "spent {spend_money}: {gap_money} from the {goal_money} reward",
    "region": "lives in {place}, home to {customers}",
    "custom": "matches {rule}",
}

COUNTED: dict[str, tuple[str, str]] = {
    "orders": ("{count} order", "{count} orders"),
    "units": ("{count} unit", "{count} units"),
    "days": ("{count} day", "{count} days"),
    "customers": ("{count} customer", "{count} customers"),
}
"""Counts shown with their noun, by parameter name: English (one, other) here, and
``count.<name>`` in web/i18n/<lang>.json with the language's own plural forms."""

ZERO_DECIMAL_CURRENCIES = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
     "VUV", "XAF", "XOF", "XPF"}
)  # fmt: skip
"""ISO 4217 currencies without minor units (amounts shown without decimals)."""

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_PLURAL_ARGUMENT = re.compile(r"\{(\w+), plural,")
_PLURAL_FORM = re.compile(r"(=\d+|zero|one|two|few|many|other)\s*\{((?:[^{}]|\{\w+\})*)\}")
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


@functools.cache
def encoder(key: str, *, text: tuple[str, ...] = ()) -> Callable[..., str]:
    """A function writing one reason key's JSON from keyword arguments (the template's names).

    A big shop gives a million members a reason each, so this is the hot path: the function is
    generated (as :mod:`dataclasses` does) to be one %-format over positional values, several
    times faster than ``json.dumps`` or a ``**kwargs`` wrapper. Numbers go in as given, ``*_date``
    values are ISO days (nothing to escape), ``*_money`` gets two decimals, and the ``text``
    names and ``*_months`` lists are JSON-encoded. Cached: generating it costs more than a
    webhook's incremental recompute encodes.
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


def _season_label(months: list[int] | tuple[int, ...], names: tuple[str, ...] = MONTHS) -> str:
    months = list(months)
    if len(months) == 1:
        return names[months[0] - 1]
    if months == list(range(months[0], months[-1] + 1)):
        return f"{names[months[0] - 1]}–{names[months[-1] - 1]}"
    return ", ".join(names[m - 1] for m in months)


def _number(value: int | float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"


def plural_category(lang: str, shown: int | float) -> str:
    """CLDR's plural category of a number as shown (what ``Intl.PluralRules`` picks on the
    page) for the page's languages: Arabic has six forms, Greek and English two, Korean one."""
    whole = float(shown).is_integer()
    n = int(shown) if whole else None
    if lang == "ko":
        return "other"
    if lang != "ar":
        return "one" if n == 1 else "other"
    if n is None:
        return "other"
    if n in (0, 1, 2):
        return ("zero", "one", "two")[n]
    if 3 <= n % 100 <= 10:
        return "few"
    return "many" if 11 <= n % 100 <= 99 else "other"


@dataclass(frozen=True)
class Wording:
    """A language's reason templates, count nouns and month names: the page's own messages
    (``reason.*``, ``count.*``, ``month.*`` in web/i18n/<lang>.json), so an export says a
    reason as the page does. Dates are ISO days and amounts "USD 1,234.50" in every language:
    unambiguous in any spreadsheet."""

    lang: str
    messages: Mapping[str, Any]

    def counted(self, name: str, value: float) -> str:
        shown: int | float = value if isinstance(value, int) else round(float(value), 1)
        forms = self.messages.get(f"count.{name}")
        if not isinstance(forms, dict):
            return counted(name, value)
        form = forms.get(plural_category(self.lang, shown), forms.get("other", "{count}"))
        return str(form).replace("{count}", _number(shown))

    def plural_arguments(self, template: str, params: Mapping[str, Any]) -> str:
        """``template`` with each plural argument ("{days, plural, one {…} other {…}}") replaced
        by the form its number needs, "#" being that number, as web/i18n.js's ``t()`` does: a
        count whose noun changes with its place in the sentence (Arabic "كل يومين", every two
        days, against "يومان", two days) is written out in the template itself."""
        out: list[str] = []
        last = 0
        for found in _PLURAL_ARGUMENT.finditer(template):
            if found.start() < last:
                continue  # inside the forms of the argument before
            end, depth = found.end(), 1
            while end < len(template) and depth:
                depth += {"{": 1, "}": -1}.get(template[end], 0)
                end += 1
            forms: dict[str, str] = dict(_PLURAL_FORM.findall(template[found.end() : end - 1]))
            value = params.get(found.group(1))
            number = value if isinstance(value, int | float) else 0
            shown: int | float = number if isinstance(number, int) else round(float(number), 1)
            exact = f"={int(shown)}" if float(shown).is_integer() else ""
            category = forms.get(plural_category(self.lang, shown), forms.get("other", ""))
            form = forms.get(exact, category)
            out += [template[last : found.start()], form.replace("#", _number(shown))]
            last = end
        return "".join(out) + template[last:]

    def months(self) -> tuple[str, ...]:
        return tuple(str(self.messages.get(f"month.{m}", MONTHS[m - 1])) for m in range(1, 13))


def counted(name: str, value: float) -> str:
    """A count of the noun :data:`COUNTED` names, in English: "1 order", "3 orders", "0.4
    orders" (the plural follows the number as shown, one decimal at most)."""
    shown: int | float = value if isinstance(value, int) else round(float(value), 1)
    one, other = COUNTED[name]
    return (one if shown == 1 else other).replace("{count}", _number(shown))


def _said(name: str, value: Any, currency: str | None, wording: Wording | None) -> str:
    """One parameter as text: in English, or in ``wording``'s language."""
    if value is None:
        return ""
    if name.endswith("_date") and isinstance(value, str):
        try:
            d = dt.date.fromisoformat(value)
        except ValueError:
            return value
        return d.isoformat() if wording else f"{d.day} {MONTHS[d.month - 1]} {d.year}"
    if name.endswith("_money") and isinstance(value, int | float):
        return money(float(value), currency)
    if name.endswith("_months") and isinstance(value, list):
        names = wording.months() if wording else MONTHS
        return _season_label([int(m) for m in value if 1 <= int(m) <= 12], names)
    if isinstance(value, bool):
        return str(value)
    if name in COUNTED and isinstance(value, int | float):
        return wording.counted(name, value) if wording else counted(name, value)
    if isinstance(value, int | float):
        return _number(value)
    return str(value)


def render(
    reason: Reason | str | None, currency: str | None = None, wording: Wording | None = None
) -> str:
    """A reason in English, or in ``wording``'s language: the stored JSON, a :class:`Reason`,
    or plain text (returned as is); amounts in ``currency`` (the shop's ISO code) when it is
    known."""
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
    if wording is not None:
        template = str(wording.messages.get(f"reason.{parsed.key}", template))
        template = wording.plural_arguments(template, params)
    return _PLACEHOLDER.sub(
        lambda m: _said(m.group(1), params.get(m.group(1)), currency, wording), template
    )


def money(value: float, currency: str | None = None) -> str:
    """An amount in English: "USD 1,234.50" (no decimals for currencies without minor units),
    or "1,234.50" when the currency is not known."""
    if not currency:
        return f"{value:,.2f}"
    code = currency.upper()
    return f"{code} {value:,.{0 if code in ZERO_DECIMAL_CURRENCIES else 2}f}"


class IsoDays:
    """Formats day numbers as ISO dates, caching because many members share a day."""

    def __init__(self) -> None:
        self._cache: dict[int, str] = {}

    def __call__(self, day: int) -> str:
        text = self._cache.get(day)
        if text is None:
            text = self._cache[day] = _iso(day)
        return text


def constant(text: str) -> Callable[[int], str]:
    """The same reason for every member (segments whose reason does not vary by customer)."""
    return lambda _i: text
