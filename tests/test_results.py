"""Results math on constructed data: intervals cover the truth, counts are right, codes count."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from shopify_app.actions import results
from shopify_app.actions.results import Entry
from shopify_app.errors import InputError
from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import DatasetBuilder, day_number

START = day_number(dt.date(2026, 3, 10))


def test_wilson_matches_published_values() -> None:
    # Wilson (1927) / Newcombe (1998) table: 0/10 and 5/10 at 95%.
    assert results.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert results.wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert results.wilson(0, 0) == (0.0, 1.0)
    # No one (or everyone) ordering: the interval ends exactly at 0 (or 1), as the demo's
    # 145-customer tier showed 1.7e-18.
    assert results.wilson(0, 145)[0] == 0.0 and results.wilson(145, 145)[1] == 1.0


def test_revenue_interval_does_not_go_below_zero() -> None:
    # The demo's 60-day tier: one of 145 customers came back with a $30 order.
    mean, low, high = results.mean_interval([0.0] * 144 + [30.0])
    assert mean == pytest.approx(30 / 145) and low == 0.0 and high > mean
    assert results.mean_interval([10.0, 20.0, 30.0]) == pytest.approx((20, 0, 44.84), abs=1e-2)
    assert results.mean_interval([40.0, 50.0, 60.0]) == pytest.approx((50, 25.16, 74.84), abs=1e-2)


def _simulate(
    rng: np.random.Generator, n: int, rate: float, held_rate: float
) -> tuple[DatasetBuilder, list[Entry]]:
    """``n`` customers entering on START; a tenth held out; buyers order once within 30 days
    for an exponential amount (mean 50)."""
    b = DatasetBuilder()
    found = []
    for c in range(n):
        index = b.add_customer(c + 1)
        b.add_order(index, 10 * c + 1, START - 200, 20.0)  # history before entering
        held = c % 10 == 0
        found.append(Entry("lapsed-tier-1", index, START, held))
        if rng.random() < (held_rate if held else rate):
            b.add_order(index, 10 * c + 2, START + int(rng.integers(1, 30)), rng.exponential(50))
    return b, found


def test_intervals_cover_the_true_rate_and_revenue_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(18)
    rate, held_rate, runs = 0.3, 0.1, 300
    covered = {"rate": 0, "held": 0, "revenue": 0}
    for _ in range(runs):
        b, found = _simulate(rng, 400, rate, held_rate)
        (row,) = results.cohorts(b.build(), found, START + 120)
        treated, held = row["treated"], row["held_out"]
        assert (treated["customers"], held["customers"]) == (360, 40)
        lo, hi = treated["rate_ci"]
        covered["rate"] += lo <= rate <= hi
        lo, hi = held["rate_ci"]
        covered["held"] += lo <= held_rate <= hi
        lo, hi = treated["revenue_ci"]
        covered["revenue"] += lo <= rate * 50 <= hi
    for name, hits in covered.items():
        assert 0.91 <= hits / runs <= 0.99, name


def test_cohorts_split_by_month_count_only_the_window_and_flag_small_and_open_groups() -> None:
    b = DatasetBuilder()
    march = [b.add_customer(i) for i in range(1, 4)]
    april = b.add_customer(9)
    for index in (*march, april):
        b.add_order(index, index * 10, START - 100, 10.0)
    b.add_order(march[0], 1001, START + 5, 40.0)  # inside the window
    b.add_order(march[1], 1002, START + results.WINDOW_DAYS + 1, 99.0)  # too late
    b.add_order(march[2], 1003, START - 1, 99.0)  # before entering
    ds = b.build()
    found = [Entry("lapsed-tier-1", i, START, False) for i in march]
    found.append(Entry("lapsed-tier-1", april, START + 30, True))
    rows = results.cohorts(ds, found, START + 200)
    assert [(r["month"], r["open"]) for r in rows] == [("2026-03", False), ("2026-04", False)]
    treated = rows[0]["treated"]
    assert (treated["customers"], treated["repurchased"]) == (3, 1)
    assert treated["revenue_per_customer"] == pytest.approx(40 / 3)
    assert treated["enough"] is False and rows[0]["held_out"]["customers"] == 0
    assert results.cohorts(ds, found, START + 10)[0]["open"] is True


def test_tiers_count_redemptions_and_recovered_customers_with_their_revenue() -> None:
    b = DatasetBuilder()
    came_back, with_code, stayed_away = (b.add_customer(i) for i in (1, 2, 3))
    for index in (came_back, with_code, stayed_away):
        b.add_order(index, index * 10, START - 70, 10.0)
    b.add_order(came_back, 101, START + 3, 30.0)
    b.add_order(with_code, 102, START + 4, 45.0, discount="COMEBACK10-ABCD")
    b.add_order(with_code, 103, START + 9, 5.0)
    ds = b.build()
    found = [Entry("lapsed-tier-1", i, START, False) for i in (came_back, with_code, stayed_away)]
    (tier,) = results.tiers(ds, found, {"lapsed-tier-1": ["comeback10-abcd"]}, START + 60)
    assert tier["redemptions"] == 1 and tier["redemption_revenue"] == 45.0
    assert (tier["entered"], tier["recovered"], tier["recovered_revenue"]) == (3, 2, 80.0)


def test_lapse_entries_are_rebuilt_from_order_gaps() -> None:
    b = DatasetBuilder()
    gap, steady = b.add_customer(1), b.add_customer(2)
    b.add_order(gap, 1, START, 10.0)
    b.add_order(gap, 2, START + 75, 10.0)  # 75 days later: entered the 60-day tier only
    b.add_order(steady, 3, START, 10.0)
    b.add_order(steady, 4, START + 30, 10.0)
    ds = b.build()
    found = results.lapse_entries(ds, ShopConfig(), START + 100)
    assert sorted((e.segment, ds.customer_ids[e.customer], e.day - START) for e in found) == [
        ("lapsed-tier-1", 1, 60),
        ("lapsed-tier-1", 2, 90),
    ]
    assert not any(e.held_out for e in found)  # an export does not say who was held out


def test_codes_go_to_the_tier_with_their_percentage_and_others_are_refused() -> None:
    cfg = ShopConfig()  # tiers: 60 days at 10%, 90 days at 15%
    assert results.codes_by_tier(cfg, ["comeback15-7kq2", " COMEBACK10-ABCD", ""]) == {
        "lapsed-tier-1": ["COMEBACK10-ABCD"],
        "lapsed-tier-2": ["COMEBACK15-7KQ2"],
    }
    for bad in ("SUMMER10", "COMEBACK20-ABCD"):
        with pytest.raises(InputError) as refused:
            results.codes_by_tier(cfg, [bad])
        assert refused.value.field == "codes" and bad in str(refused.value)
