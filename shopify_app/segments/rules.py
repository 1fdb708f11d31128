"""Custom segments: rules over customer fields and metrics, combined with AND / OR.

A custom segment is JSON the merchant builds on the page::

    {"handle": "big-spenders-ny", "name": "Big spenders in New York", "match": "all",
     "archived": false,
     "rules": [{"field": "total_spent", "op": ">=", "value": 200},
               {"match": "any", "rules": [{"field": "province", "op": "=", "value": "NY"},
                                          {"field": "city", "op": "=", "value": "New York"}]}]}

:func:`parse_custom_segment` validates it into a tree (errors name the offending path, e.g.
``custom_segments[0].rules[1].op``); :func:`evaluate` turns the tree into a boolean mask over the
per-customer columns the segment library builds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shopify_app.errors import InputError
from shopify_app.tagging.tags import tag_key

HANDLE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")

NUMERIC_FIELDS = {
    "orders_count": "orders",
    "total_spent": "net spend",
    "average_order_value": "average order value",
    "days_since_last_order": "days since the last order",
    "days_since_first_order": "days since the first order",
    "average_days_between_orders": "average days between orders",
    "units_last_365_days": "units bought in the last 365 days",
    "max_units_in_order": "most units of one item in one order",
    "p_alive": "probability of being active",
    "expected_purchases_90d": "expected purchases in the next 90 days",
    "predicted_clv": "predicted 12-month value",
    "rfm_recency": "RFM recency score",
    "rfm_frequency": "RFM frequency score",
    "rfm_monetary": "RFM monetary score",
}
TEXT_FIELDS = {
    "email": "email",
    "email_domain": "email domain",
    "country": "country code",
    "province": "province code",
    "city": "city",
    "company": "company",
    "rfm_group": "RFM group",
    "marketing_state": "email marketing state",
}
PRODUCT_FIELD = "products"
TAG_FIELD = "tags"
"""The customer's tags in Shopify, compared as Shopify does (:func:`tag_key`). A tag Goldpan
writes cannot be tested (:func:`own_tag_problem`): a segment would feed on its own output."""
NUMERIC_OPS = ("=", "!=", ">", ">=", "<", "<=")
TEXT_OPS = ("=", "!=", "contains", "not_contains", "in", "not_in")
PRODUCT_OPS = ("includes", "excludes")
TAG_OPS = ("has", "has_not")
_KNOWN_FIELDS = ", ".join([*NUMERIC_FIELDS, *TEXT_FIELDS, PRODUCT_FIELD, TAG_FIELD])
MAX_DEPTH = 4
MAX_RULES = 50
DESCRIBE_CHARS = 200
"""The longest rule description: it is every member's reason, stored once per member."""
DESCRIBE_VALUES = 3
"""Values of an ``in`` / ``not_in`` list a description names; the rest are counted."""
DESCRIBE_VALUE_CHARS = 40
"""Characters of one value a description shows."""


@dataclass(frozen=True)
class Condition:
    """One ``field op value`` test."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Group:
    """All (``match == "all"``) or any of the children."""

    match: str
    children: tuple[Condition | Group, ...]


@dataclass(frozen=True)
class CustomSegment:
    """A validated custom segment. An archived one is kept (and can be restored) but is not
    evaluated: it has no members, so its tags come off as a deleted one's do."""

    handle: str
    name: str
    root: Group
    archived: bool = False


def parse_custom_segment(spec: Mapping[str, Any], where: str = "segment") -> CustomSegment:
    """Validate a custom segment's JSON; raises :class:`InputError` naming the bad path."""
    handle = spec.get("handle")
    if not isinstance(handle, str) or not HANDLE_RE.match(handle):
        raise InputError(
            "handle must be lowercase letters, digits and dashes (at most 48)",
            field=f"{where}.handle",
        )
    name = spec.get("name") or handle
    if not isinstance(name, str) or len(name) > 255:
        raise InputError("name must be text of at most 255 characters", field=f"{where}.name")
    archived = spec.get("archived", False)
    if not isinstance(archived, bool):
        raise InputError("archived is true or false", field=f"{where}.archived", code="shape")
    counter = [0]
    root = _parse_group(spec, where, 0, counter)
    return CustomSegment(handle=handle, name=name, root=root, archived=archived)


def _parse_group(spec: Mapping[str, Any], where: str, depth: int, counter: list[int]) -> Group:
    if depth >= MAX_DEPTH:
        raise InputError(f"rules nest at most {MAX_DEPTH} levels deep", field=where)
    match = spec.get("match", "all")
    if match not in ("all", "any"):
        raise InputError('match must be "all" (AND) or "any" (OR)', field=f"{where}.match")
    rules = spec.get("rules")
    if not isinstance(rules, list) or not rules:
        raise InputError("add at least one rule", field=f"{where}.rules")
    children: list[Condition | Group] = []
    for i, item in enumerate(rules):
        path = f"{where}.rules[{i}]"
        counter[0] += 1
        if counter[0] > MAX_RULES:
            raise InputError(f"at most {MAX_RULES} rules per segment", field=path)
        if not isinstance(item, Mapping):
            raise InputError("a rule is an object with field, op and value", field=path)
        if "rules" in item:
            children.append(_parse_group(item, path, depth + 1, counter))
        else:
            children.append(_parse_condition(item, path))
    return Group(match=str(match), children=tuple(children))


def _parse_condition(item: Mapping[str, Any], path: str) -> Condition:
    field = item.get("field")
    op = item.get("op")
    value = item.get("value")
    if not isinstance(field, str):  # a list or an object cannot even be looked up
        raise InputError(f"field must be one of: {_KNOWN_FIELDS}", field=f"{path}.field")
    if field in NUMERIC_FIELDS:
        if op not in NUMERIC_OPS:
            raise InputError(f"op must be one of {' '.join(NUMERIC_OPS)}", field=f"{path}.op")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{NUMERIC_FIELDS[field]} needs a number", field=f"{path}.value")
        return Condition(field, op, float(value))
    if field in TEXT_FIELDS:
        if op not in TEXT_OPS:
            raise InputError(f"op must be one of {' '.join(TEXT_OPS)}", field=f"{path}.op")
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InputError("needs a list of texts", field=f"{path}.value")
            return Condition(field, op, tuple(v.strip().lower() for v in value))
        if not isinstance(value, str):
            raise InputError(f"{TEXT_FIELDS[field]} needs text", field=f"{path}.value")
        return Condition(field, op, value.strip().lower())
    if field == PRODUCT_FIELD:
        if op not in PRODUCT_OPS:
            raise InputError(f"op must be one of {' '.join(PRODUCT_OPS)}", field=f"{path}.op")
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
            raise InputError("needs a product id or title words", field=f"{path}.value")
        return Condition(field, op, str(value).strip())
    if field == TAG_FIELD:
        if op not in TAG_OPS:
            raise InputError(f"op must be one of {' '.join(TAG_OPS)}", field=f"{path}.op")
        if not isinstance(value, str) or not tag_key(value):
            raise InputError("needs a tag", field=f"{path}.value")
        return Condition(field, op, tag_key(value))
    raise InputError(
        f"unknown field {field!r}; known fields: {_KNOWN_FIELDS}", field=f"{path}.field"
    )


def conditions(group: Group, where: str) -> Iterator[tuple[str, Condition]]:
    """Every condition of a parsed tree with its path (``custom_segments[0].rules[1]``)."""
    for i, child in enumerate(group.children):
        path = f"{where}.rules[{i}]"
        if isinstance(child, Group):
            yield from conditions(child, path)
        else:
            yield path, child


def own_tag_problem(seg: CustomSegment, where: str, prefix: str, own: Iterable[str]) -> None:
    """Refuse a tags condition on a tag Goldpan writes: one under the shop's ``prefix`` or one
    of its segments' tags (``own``, renamed ones included). Raises :class:`InputError`."""
    own_keys = {tag_key(t) for t in own}
    start = tag_key(prefix)
    for path, cond in conditions(seg.root, where):
        if cond.field == TAG_FIELD and (
            (start and cond.value.startswith(start)) or cond.value in own_keys
        ):
            raise InputError(
                f"{cond.value!r} is a tag Goldpan writes: a segment cannot be built on it",
                field=f"{path}.value",
                code="own_tag",
                params={"tag": cond.value},
            )


def uses_field(group: Group, field: str) -> bool:
    """Whether any condition of the tree tests ``field``."""
    return any(cond.field == field for _, cond in conditions(group, ""))


def tag_sets(values: list[Any]) -> list[frozenset[str]]:
    """The tags column: each customer's tags (a JSON list, as text or decoded) as keys."""
    out = []
    for value in values:
        tags = json.loads(value) if isinstance(value, str) else value
        out.append(frozenset(tag_key(str(t)) for t in tags or ()))
    return out


Mask = NDArray[np.bool_]


def evaluate(
    root: Group,
    columns: Mapping[str, Any],
    product_mask: Any,
) -> Mask:
    """The customers matching ``root``.

    ``columns`` maps every numeric field to a float array and every text field to a list of
    lowercased strings; ``product_mask(reference)`` returns the customers who bought a product.
    """
    masks = [
        evaluate(child, columns, product_mask)
        if isinstance(child, Group)
        else _condition(child, columns, product_mask)
        for child in root.children
    ]
    combined = masks[0].copy()
    for mask in masks[1:]:
        combined = combined & mask if root.match == "all" else combined | mask
    return combined


def _condition(cond: Condition, columns: Mapping[str, Any], product_mask: Any) -> Mask:
    if cond.field == PRODUCT_FIELD:
        bought = np.asarray(product_mask(cond.value), dtype=bool)
        return bought if cond.op == "includes" else ~bought
    if cond.field == TAG_FIELD:
        has = np.fromiter((cond.value in tags for tags in columns[TAG_FIELD]), dtype=bool)
        return has if cond.op == "has" else ~has
    column = columns[cond.field]
    if cond.field in NUMERIC_FIELDS:
        values = np.asarray(column, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            result = {
                "=": values == cond.value,
                "!=": values != cond.value,
                ">": values > cond.value,
                ">=": values >= cond.value,
                "<": values < cond.value,
                "<=": values <= cond.value,
            }[cond.op]
        return np.asarray(result & ~np.isnan(values), dtype=bool)
    texts: list[str] = column
    v = cond.value
    if cond.op == "=":
        out = [t == v for t in texts]
    elif cond.op == "!=":
        out = [t != v for t in texts]
    elif cond.op == "contains":
        out = [v in t for t in texts]
    elif cond.op == "not_contains":
        out = [v not in t for t in texts]
    elif cond.op == "in":
        out = [t in v for t in texts]
    else:
        out = [t not in v for t in texts]
    return np.asarray(out, dtype=bool)


def describe(cond: Condition | Group, titles: Mapping[int, str] | None = None) -> str:
    """A short human sentence for a rule tree, at most :data:`DESCRIBE_CHARS` characters;
    products picked by id are named by their ``titles``.

    It is every member's reason, so it is bounded whatever the rules hold: a list names its
    first :data:`DESCRIBE_VALUES` values and counts the rest ("city in paris, lyon, nice and
    97 more"), long values and long descriptions end in "…".
    """
    return _clip(_sentence(cond, titles or {}), DESCRIBE_CHARS)


def _sentence(cond: Condition | Group, titles: Mapping[int, str]) -> str:
    if isinstance(cond, Group):
        joiner = " and " if cond.match == "all" else " or "
        parts = [_sentence(c, titles) for c in cond.children]
        text = joiner.join(parts)
        return f"({text})" if len(parts) > 1 else text
    label = NUMERIC_FIELDS.get(cond.field) or TEXT_FIELDS.get(cond.field) or cond.field
    if cond.field == TAG_FIELD:
        tag = _clip(cond.value, DESCRIBE_VALUE_CHARS)
        return f"tagged {tag}" if cond.op == "has" else f"not tagged {tag}"
    if cond.field == PRODUCT_FIELD:
        # A product picked by id is named by its title, as the merchant knows it.
        ref = cond.value
        name = titles.get(int(ref), ref) if ref.isascii() and ref.isdigit() else ref
        shown = _clip(name, DESCRIBE_VALUE_CHARS)
        return f"bought {shown}" if cond.op == "includes" else f"never bought {shown}"
    value = cond.value
    if isinstance(value, tuple):
        shown = ", ".join(_clip(v, DESCRIBE_VALUE_CHARS) for v in value[:DESCRIBE_VALUES])
        rest = len(value) - DESCRIBE_VALUES
        text = f"{shown} and {rest:,} more" if rest > 0 else shown
    else:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text = _clip(str(value), DESCRIBE_VALUE_CHARS)
    return f"{label} {cond.op.replace('_', ' ')} {text}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
