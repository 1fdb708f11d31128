"""Bounds on what a shop's settings may hold, so one merchant cannot fill the shared disk.

Settings are stored as JSON on the shop and read by every recompute and page load, and custom
rules used to be copied into every member's reason: a 13 MB ``not_in`` list once grew the
database by 600 MB. :func:`check` bounds each list and text in a settings change before it is
parsed; :func:`check_size` bounds the whole, after validation. Both raise
:class:`~shopify_app.errors.InputError` naming the field and the limit.

The request that carries a change is bounded before this (256 KB, finite numbers, at most 32
levels deep: :mod:`shopify_app.server.api.request`).
"""

from __future__ import annotations

import json
from typing import Any

from shopify_app.errors import InputError

MAX_LIST_ITEMS = 100
"""Items in any one list: tiers, rules, products of a cross-sell side, an ``in`` rule's values."""

MAX_TEXT_CHARS = 255
"""Characters in any one text (a name, a product reference, a rule's value, a key)."""

MAX_SETTINGS_BYTES = 64 * 1024
"""The validated settings as stored (compact UTF-8 JSON); the defaults take about 1 KB."""


def check(value: Any, path: str) -> None:
    """Refuse a list longer than :data:`MAX_LIST_ITEMS` or a text longer than
    :data:`MAX_TEXT_CHARS` anywhere in ``value``; the error names its path
    (``custom_segments[0].rules[2].value``)."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if len(item) > MAX_TEXT_CHARS:
                raise InputError(
                    f"{where} has {len(item):,} characters; at most {MAX_TEXT_CHARS} are allowed",
                    field=where,
                )
        elif isinstance(item, list):
            if len(item) > MAX_LIST_ITEMS:
                raise InputError(
                    f"{where} has {len(item):,} items; at most {MAX_LIST_ITEMS} are allowed",
                    field=where,
                )
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
        elif isinstance(item, dict):
            for key, child in item.items():
                if len(key) > MAX_TEXT_CHARS:
                    raise InputError(
                        f"a key in {where} is longer than {MAX_TEXT_CHARS} characters",
                        field=where,
                    )
                stack.append((child, f"{where}.{key}" if where else key))


def check_size(settings: dict[str, Any]) -> None:
    """Refuse settings whose stored JSON would exceed :data:`MAX_SETTINGS_BYTES`."""
    size = len(json.dumps(settings, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_SETTINGS_BYTES:
        raise InputError(
            f"settings would take {size // 1024:,} KB; at most {MAX_SETTINGS_BYTES // 1024} KB "
            "are allowed (remove some rules or values)",
            field="settings",
        )
