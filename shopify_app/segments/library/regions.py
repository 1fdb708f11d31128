"""Region segments: customers in the shop's most common countries and provinces.

Which regions get a segment is a shop yardstick (:attr:`~.context.ShopStats.regions`), so a
customer evaluated alone is placed against the same regions as everyone else.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import Dataset
from shopify_app.segments.library.context import BoolArray, Context
from shopify_app.segments.library.reasons import constant, encoder


def customer_regions(ds: Dataset) -> list[tuple[str, str]]:
    """Each customer's (country, province) codes, uppercased ('' where unknown)."""
    countries = ds.info["country_code"]
    provinces = ds.info["province_code"]
    return [
        ((c or "").strip().upper(), (p or "").strip().upper())
        for c, p in zip(countries, provinces, strict=True)
    ]


def top_regions(
    keys: list[tuple[str, str]], has_orders: BoolArray, cfg: ShopConfig
) -> list[tuple[str, str, int]]:
    """The ``region_top`` regions with most customers who ordered, each with enough of them."""
    counts = Counter(k for k, has in zip(keys, has_orders, strict=True) if has and k[0])
    return [
        (c, p, cnt)
        for (c, p), cnt in counts.most_common(cfg.region_top)
        if cnt >= cfg.region_min_customers
    ]


def region_handle(country: str, province: str) -> str:
    """The segment handle of a region (``region-us-ny``, or ``region-us`` for a country)."""
    return f"region-{country}-{province}".lower() if province else f"region-{country}".lower()


def region_label(country: str, province: str) -> str:
    """A region as people write it: "NY, US", or the country alone."""
    return f"{province}, {country}" if province else country


def regions(ctx: Context) -> None:
    """One segment per top region of the shop; a country-wide region takes every province."""
    keys = ctx.regions
    reason = encoder("region", text=("place",))
    # Each customer's region as a small integer (a shop has few distinct regions), so each
    # region segment is one vectorised look-up instead of a pass over every customer's key.
    distinct: dict[tuple[str, str], int] = {}
    key_ids = np.fromiter(
        (distinct.setdefault(k, len(distinct)) for k in keys), dtype=np.int64, count=len(keys)
    )
    for country, province, count in ctx.stats.regions:
        matching = np.zeros(len(distinct), dtype=bool)
        for k, i in distinct.items():
            matching[i] = k[0] == country and (not province or k[1] == province)
        mask = matching[key_ids]
        place = region_label(country, province)
        ctx.put(
            region_handle(country, province),
            mask,
            constant(reason(place=place, customers=count)),
        )
