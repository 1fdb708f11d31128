"""Region segments: customers in the shop's most common countries and provinces."""

from __future__ import annotations

from shopify_app.segments.dataset import Dataset


def customer_regions(ds: Dataset) -> list[tuple[str, str]]:
    """Each customer's (country, province) codes, uppercased ('' where unknown)."""
    countries = ds.info["country_code"]
    provinces = ds.info["province_code"]
    return [
        ((c or "").strip().upper(), (p or "").strip().upper())
        for c, p in zip(countries, provinces, strict=True)
    ]
