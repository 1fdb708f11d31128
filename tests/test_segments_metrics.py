"""Retention metrics on a hand-made store."""

from __future__ import annotations

import datetime as dt

from shopify_app.segments import library, metrics
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import DatasetBuilder, day_number, product_key_for_title

AS_OF = dt.date(2025, 6, 30)


def build():  # type: ignore[no-untyped-def]
    builder = DatasetBuilder()
    orders = [
        # email, date, total, first product, code
        ("a@x.io", dt.date(2025, 1, 10), 100.0, "Napkins", "WELCOME"),
        ("a@x.io", dt.date(2025, 2, 10), 50.0, "Placemats", ""),
        ("a@x.io", dt.date(2025, 4, 10), 50.0, "Placemats", ""),
        ("b@x.io", dt.date(2025, 1, 20), 40.0, "Placemats", "WELCOME"),
        ("c@x.io", dt.date(2025, 2, 5), 60.0, "Napkins", ""),
        ("c@x.io", dt.date(2025, 6, 5), 60.0, "Napkins", ""),
        ("d@x.io", dt.date(2025, 6, 20), 30.0, "Tea Towels", ""),
        ("e@x.io", dt.date(2025, 7, 20), 30.0, "Tea Towels", ""),  # after as_of
    ]
    ids: dict[str, int] = {}
    for n, (email, day, total, product, code) in enumerate(orders):
        cid = ids.setdefault(email, len(ids) + 1)
        index = builder.add_customer(cid, email=email)
        oi = builder.add_order(index, n + 1, day_number(day), total, code)
        builder.add_line(oi, product_key_for_title(product), product, 1)
    return builder.build()


def test_headline_numbers() -> None:
    ds = build()
    ev = library.evaluate(ds, ShopConfig(), AS_OF)
    m = metrics.compute(ds, AS_OF, evaluation=ev)
    assert m["customers"] == 4 and m["orders"] == 7
    assert m["revenue"] == 390.0
    assert m["average_order_value"] == round(390 / 7, 2)
    assert m["repeat_purchase_rate"] == 0.5
    assert m["orders_per_customer"] == 1.75
    # gaps: a 31, 59; c 120
    assert m["average_days_between_orders"] == round((31 + 59 + 120) / 3, 1)
    hist = {b["days"]: b["count"] for b in m["days_between_orders_histogram"]}
    assert hist["31-60"] == 2 and hist["91-180"] == 1
    # Four customers: too little history for checked predictions, so no predicted value.
    assert m["clv"]["predicted_12m"] is None and m["clv"]["simple"] > 0
    assert sum(m["rfm"]["groups"].values()) == 4


def test_cohorts_products_and_codes() -> None:
    ds = build()
    m = metrics.compute(ds, AS_OF)
    jan = next(c for c in m["cohorts"] if c["month"] == "2025-01")
    assert jan["customers"] == 2
    assert jan["retention"][0] == 0.5  # a came back in February
    assert jan["retention"][2] == 0.5  # and in April
    products = {r["key"]: r for r in m["first_product"]} if m["first_product"] else {}
    assert products == {}  # fewer than five customers per product: not reported
    codes = {r["key"]: r for r in m["discount_codes"]}
    assert codes["WELCOME"]["customers"] == 2 and codes["WELCOME"]["repeat_purchase_rate"] == 0.5
    assert (
        codes["(no code)"]["customers"] == 2 and codes["(no code)"]["repeat_purchase_rate"] == 0.5
    )
    assert codes["WELCOME"]["returned_within_90_days"] == 0.5
    prev = m["previous_period"]
    assert prev["current"]["orders"] == 3  # 2025-04-01 .. 06-30: a, c, d
    assert prev["previous"]["orders"] == 4


def test_empty_store() -> None:
    ds = DatasetBuilder().build()
    ev = library.evaluate(ds, ShopConfig(), AS_OF)
    m = metrics.compute(ds, AS_OF, evaluation=ev)
    assert m["customers"] == 0 and m["repeat_purchase_rate"] == 0.0
    assert all(seg.count == 0 for seg in ev.segments.values())
