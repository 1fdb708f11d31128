"""Retention metrics on a hand-made store: each headline figure as its definition says, the
tables, a year earlier, and the same output whatever order the customers come in."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from shopify_app.segments import library, metrics
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import Dataset, DatasetBuilder, day_number, product_key_for_title

AS_OF = dt.date(2025, 6, 30)
WEB = Path(__file__).resolve().parents[1] / "web" / "i18n"

ORDERS = [
    # email, date, total, product, code
    ("a@x.io", dt.date(2025, 1, 10), 100.0, "Napkins", "WELCOME"),
    ("a@x.io", dt.date(2025, 2, 10), 50.0, "Placemats", ""),
    ("a@x.io", dt.date(2025, 4, 10), 50.0, "Placemats", ""),
    ("b@x.io", dt.date(2025, 1, 20), 40.0, "Placemats", "WELCOME"),
    ("c@x.io", dt.date(2025, 2, 5), 60.0, "Napkins", ""),
    ("c@x.io", dt.date(2025, 6, 5), 60.0, "Napkins", ""),
    ("d@x.io", dt.date(2025, 6, 20), 30.0, "Tea Towels", ""),
    ("e@x.io", dt.date(2025, 7, 20), 30.0, "Tea Towels", ""),  # after as_of
]


def build(orders: list[tuple[str, dt.date, float, str, str]] = ORDERS) -> Dataset:
    builder = DatasetBuilder()
    ids: dict[str, int] = {}
    for n, (email, day, total, product, code) in enumerate(orders):
        cid = ids.setdefault(email, len(ids) + 1)
        index = builder.add_customer(cid, email=email)
        oi = builder.add_order(index, n + 1, day_number(day), total, code)
        builder.add_line(oi, product_key_for_title(product), product, 1)
    return builder.build()


def test_headline_figures_follow_their_definitions() -> None:
    ds = build()
    ev = library.evaluate(ds, ShopConfig(), AS_OF)
    m = metrics.compute(ds, AS_OF, evaluation=ev)
    figures = m["headline"]
    assert figures["customers"] == 4 and figures["orders"] == 7
    assert figures["revenue"] == 390.0
    assert figures["average_order_value"] == round(390 / 7, 2)
    assert figures["repeat_customers"] == 2 and figures["repeat_purchase_rate"] == 0.5
    assert figures["orders_per_customer"] == 1.75
    # gaps: a 31, 59; c 120
    assert figures["average_days_between_orders"] == round((31 + 59 + 120) / 3, 1)
    assert figures["median_days_between_orders"] == 59
    # Every order is in the last 12 months, and nobody ordered in the 12 before: one year.
    assert m["clv"] == {
        "average_order_value": 55.71,
        "purchases_per_year": 1.75,
        "lifespan_years": 1.0,
    }
    assert figures["clv_simple"] == round(390 / 7 * 1.75 * 1.0, 2)
    # Four customers: too little history for checked predictions, so no predicted value.
    assert figures["clv_predicted_12m"] is None
    hist = {(b["from"], b["to"]): b["count"] for b in m["days_between_orders_histogram"]}
    assert hist[(31, 60)] == 2 and hist[(91, 180)] == 1 and sum(hist.values()) == 3
    assert sum(m["rfm"]["groups"].values()) == 4
    assert sum(c["customers"] for c in m["rfm"]["cells"]) == 4
    a_cell = next(c for c in m["rfm"]["cells"] if c["average_spend"] == 200.0)  # a spent 200
    assert a_cell["customers"] == 1
    assert m["version"] == metrics.VERSION


def test_same_day_orders_count_once_between_orders() -> None:
    day = dt.date(2025, 3, 1)
    ds = build(
        [
            ("a@x.io", day, 10.0, "Napkins", ""),
            ("a@x.io", day, 12.0, "Napkins", ""),  # a second order the same day
            ("a@x.io", day + dt.timedelta(days=10), 10.0, "Napkins", ""),
        ]
    )
    figures = metrics.compute(ds, AS_OF)["headline"]
    assert figures["orders"] == 3 and figures["orders_per_customer"] == 3
    assert figures["average_days_between_orders"] == 10  # one gap of ten days, not (0 + 10) / 2


def test_a_year_earlier_is_the_same_engine_on_the_orders_of_then() -> None:
    orders = [
        *ORDERS,
        ("f@x.io", dt.date(2024, 3, 1), 80.0, "Napkins", ""),
        ("f@x.io", dt.date(2024, 5, 1), 20.0, "Napkins", ""),
        ("a@x.io", dt.date(2024, 6, 1), 70.0, "Placemats", ""),
    ]
    ds = build(orders)
    m = metrics.compute(ds, AS_OF)
    before = metrics.compute(ds, AS_OF - dt.timedelta(days=365))["headline"]
    assert m["year_before"] == {
        "as_of": (AS_OF - dt.timedelta(days=365)).isoformat(),
        **before,
        "clv_predicted_12m": None,
    }
    assert m["year_before"]["customers"] == 2 and m["headline"]["customers"] == 5
    # a came back this year, f did not: half of last year's customers were lost.
    assert m["clv"]["lifespan_years"] == 2.0


def test_cohorts_products_and_codes() -> None:
    ds = build()
    m = metrics.compute(ds, AS_OF)
    by_month = {c["key"]: c for c in m["cohorts"]["month"]}
    jan = by_month["2025-01"]
    assert jan["customers"] == 2
    assert jan["retention"] == [0.5, 0.0, 0.5, 0.0, 0.0]  # a in February and April; to June
    assert by_month["2025-06"]["retention"] == []  # no month after June has begun
    assert m["first_product"] == []  # fewer than five customers per product: not reported
    codes = {r["key"]: r for r in m["discount_codes"]}
    assert codes["WELCOME"]["customers"] == 2 and codes["WELCOME"]["repeat_purchase_rate"] == 0.5
    assert codes[None]["customers"] == 2 and codes[None]["repeat_purchase_rate"] == 0.5
    assert codes["WELCOME"]["returned_within_90_days"] == 0.5
    # By first code, month by month: of c (February) and d (June), who started without a code,
    # only c has reached month 1..4, and c ordered again in June, month 4.
    no_code = next(r for r in m["cohorts"]["discount"] if r["key"] is None)
    assert no_code["customers"] == 2 and no_code["retention"] == [0.0, 0.0, 0.0, 1.0]
    prev = m["previous_period"]
    assert prev["current"]["orders"] == 3  # 2025-04-01 .. 06-30: a, c, d
    assert prev["previous"]["orders"] == 4


def test_cohorts_count_only_customers_who_reached_the_month() -> None:
    # Six customers start with Napkins: three in January (one returns in month 1), three in
    # June (their month 1 has not begun on 30 June).
    orders = [(f"j{i}@x.io", dt.date(2025, 1, 5), 10.0, "Napkins", "") for i in range(3)]
    orders += [(f"n{i}@x.io", dt.date(2025, 6, 5), 10.0, "Napkins", "") for i in range(3)]
    orders.append(("j0@x.io", dt.date(2025, 2, 5), 10.0, "Napkins", ""))
    m = metrics.compute(build(orders), AS_OF)
    (napkins,) = m["cohorts"]["product"]
    assert napkins["key"] == "Napkins" and napkins["customers"] == 6
    assert napkins["retention"][0] == round(1 / 3, 4)  # not 1 / 6
    assert len(napkins["retention"]) == 5  # February..June have begun for the January three
    (row,) = m["first_product"]
    assert row["key"] == "Napkins" and row["repeat_purchase_rate"] == round(1 / 6, 4)


def test_the_output_does_not_depend_on_the_order_customers_come_in() -> None:
    shuffled = sorted(ORDERS, key=lambda o: (o[0] != "d@x.io", o[0][::-1], o[1]))
    assert metrics.compute(build(shuffled), AS_OF) == metrics.compute(build(), AS_OF)


def test_empty_store() -> None:
    ds = DatasetBuilder().build()
    ev = library.evaluate(ds, ShopConfig(), AS_OF)
    m = metrics.compute(ds, AS_OF, evaluation=ev)
    figures = m["headline"]
    assert figures["customers"] == 0 and figures["orders"] == 0
    # Nothing to divide by: no rate, no average (not a zero that looks measured).
    assert figures["repeat_purchase_rate"] is None and figures["average_order_value"] is None
    assert figures["clv_simple"] is None and figures["clv_predicted_12m"] is None
    assert m["cohorts"]["month"] == [] and m["rfm"]["cells"] == []
    assert m["backtest"]["enough"] is False
    assert all(seg.count == 0 for seg in ev.segments.values())
    json.dumps(m, allow_nan=False)  # stored as JSON as it is


def test_every_headline_figure_has_a_name_and_a_definition_in_every_language() -> None:
    m = metrics.compute(build(), AS_OF)
    assert list(metrics.NAMES) == list(metrics.DEFINITIONS) == list(m["headline"])
    english = json.loads((WEB / "en.json").read_text(encoding="utf-8"))
    for key in metrics.NAMES:
        # One English source: the page shows the words analyze prints.
        assert english[f"metric.{key}"] == metrics.NAMES[key]
        assert english[f"definition.{key}"] == metrics.DEFINITIONS[key]
    for lang in ("ar", "ko", "el"):
        other = json.loads((WEB / f"{lang}.json").read_text(encoding="utf-8"))
        for key in metrics.NAMES:
            assert other[f"definition.{key}"] != metrics.DEFINITIONS[key], (lang, key)
            assert other[f"metric.{key}"] != metrics.NAMES[key], (lang, key)


def test_a_month_still_in_progress_is_no_figure_and_a_range_picks_first_months() -> None:
    # Both start in May; one returns in June. On 15 June, June (month 1) is under way: no
    # figure for it, not 0% or 50%; on 30 June it is over.
    orders = [("p@x.io", dt.date(2025, 5, 3), 10.0, "Napkins", "")]
    orders += [("q@x.io", dt.date(2025, 5, 9), 10.0, "Napkins", "")]
    orders += [("q@x.io", dt.date(2025, 6, 2), 10.0, "Napkins", "")]
    orders += [("r@x.io", dt.date(2025, 3, 9), 10.0, "Runner", "")]
    ds = build(orders)
    mid = metrics.compute(ds, dt.date(2025, 6, 15))["cohorts"]["month"]
    assert {r["key"]: r["retention"] for r in mid}["2025-05"] == []
    end = metrics.compute(ds, AS_OF)["cohorts"]["month"]
    assert {r["key"]: r["retention"] for r in end}["2025-05"] == [0.5]
    # Only first orders in March: May's customers and their products are left out.
    march = metrics.month_number("2025-03")
    picked = metrics.cohorts(ds, day_number(AS_OF), march, march)
    assert [r["key"] for r in picked["month"]] == ["2025-03"]
    assert [r["customers"] for r in picked["discount"]] == [1]
