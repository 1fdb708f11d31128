"""The per-shop backtest and the rhythm rules: checked predictions, honest fallbacks (also
through ``shopify-app analyze`` on a tiny shop, one without repeat customers and one where every
order has the same value)."""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopify_app.cli import main
from shopify_app.segments import backtest, cadence, clv
from shopify_app.segments.dataset import compute_features, day_number
from tests.test_segments_models import cdnow_dataset

AS_OF = day_number(dt.date(1997, 10, 1))


def history(orders: list[tuple[int, int, float]], customers: int) -> backtest.OrderHistory:
    """Orders as (customer, day, value)."""
    c, d, v = zip(*orders, strict=True) if orders else ((), (), ())
    return backtest.OrderHistory.from_orders(
        np.array(c, np.int64), np.array(d, np.int64), np.array(v, np.float64), customers
    )


@pytest.fixture(scope="module")
def cdnow() -> backtest.OrderHistory:
    return backtest.OrderHistory.of(cdnow_dataset())


def test_rhythm_agrees_with_the_dataset_features(cdnow: backtest.OrderHistory) -> None:
    as_of = dt.date(1997, 9, 30)
    features = compute_features(cdnow_dataset().upto(as_of), as_of)
    rhythm = cdnow.rhythm(day_number(as_of))
    assert np.array_equal(rhythm.orders, features.occasions)  # same-day orders are one visit
    assert np.array_equal(rhythm.first_day, features.first_day)
    assert np.array_equal(rhythm.last_day, features.last_day)
    assert np.allclose(rhythm.spend, features.spend)
    for ours, theirs in zip(rhythm.model_inputs(), features.bgnbd_inputs(), strict=True):
        assert np.allclose(ours, theirs)


def test_usual_interval_counts_one_extra_gap_of_the_shops_typical_length() -> None:
    every_10_days = [(0, 0, 1.0), (0, 10, 1.0), (0, 20, 1.0), (0, 30, 1.0), (0, 30, 5.0)]
    # Ten more repeat customers, twice each, 20, 22, ... 38 days apart.
    twice = [(c, day, 1.0) for c in range(1, 11) for day in (0, 18 + 2 * c)]
    h = history([*every_10_days, *twice, (11, 5, 1.0)], customers=13)
    rhythm = h.rhythm(40)
    assert rhythm.typical_interval == 28.0  # the median of 10, 20, 22, ... 38
    assert rhythm.usual_interval[[0, 1, 11]].tolist() == [(30 + 28) / 4, (20 + 28) / 2, 28.0]
    assert rhythm.orders[[0, 1, 11, 12]].tolist() == [4, 2, 1, 0]
    assert rhythm.spend[0] == 9.0
    assert rhythm.days_since_last[[0, 1, 11]].tolist() == [10, 20, 35]
    assert not rhythm.has_orders[12]


def test_a_few_repeat_customers_are_not_the_shops_rhythm() -> None:
    # The issue's small store: one repeat customer, who ordered twice a day apart, the last
    # time 3 days ago. Their habit alone would make a one-day "typical" gap and them overdue.
    orders = [(0, 36, 80.0), (0, 37, 80.0), *[(c, 30 + c, 20.0) for c in range(1, 6)]]
    rhythm = history(orders, customers=6).rhythm(40)
    assert rhythm.typical_interval == cadence.TYPICAL_INTERVAL_FALLBACK
    since = rhythm.days_since_last.astype(np.float64)
    usual = rhythm.usual_interval
    assert usual[0] == (1 + cadence.TYPICAL_INTERVAL_FALLBACK) / 2
    risk = cadence.at_risk(rhythm.orders, since, usual, rhythm.spend, min_spend=50.0)
    assert not risk.any()
    # The same customer judged by their own one-day habit would have been "at risk".
    own = cadence.usual_interval(rhythm.orders, rhythm.first_day, rhythm.last_day, 1.0)
    assert cadence.at_risk(rhythm.orders, since, own, rhythm.spend, min_spend=50.0)[0]
    # Ten repeat customers make a rhythm of the shop's own.
    ten = [(c, day, 20.0) for c in range(10) for day in (0, 7 * (c + 1))]
    assert history(ten, customers=10).rhythm(100).typical_interval == 38.5


def test_rhythm_ranking_is_the_horizon_over_usual_gap_plus_silence() -> None:
    # The docstring's worked example: monthly, 10 days since -> about two orders in 90 days.
    value = cadence.expected_orders(np.array([10.0, 300.0]), np.array([30.0, 30.0]), 90)
    assert value.tolist() == [90 / 40, 90 / 330]


def test_the_issues_binge_buyer_is_never_likely_to_buy() -> None:
    # 34 orders in two days, then 373 silent days: "100% likely active" before.
    binge = [(0, 0, 10.0)] * 17 + [(0, 1, 10.0)] * 17
    others = [(c, day, 20.0) for c in range(1, 5) for day in (300, 330, 360)]
    h = history(binge + others, customers=5)
    rhythm = h.rhythm(374)
    since = rhythm.days_since_last.astype(np.float64)
    usual = rhythm.usual_interval
    assert cadence.silent_too_long(since, usual).tolist() == [True, False, False, False, False]
    scores = np.array([9.0, 4.0, 3.0, 2.0, 1.0])  # whatever ranks the binge buyer first
    cutoff = cadence.likely_cutoff(scores, since, usual, size=2)
    assert cutoff == 3.0
    likely = cadence.likely_to_buy(scores, since, usual, cutoff)
    assert likely.tolist() == [False, True, True, False, False]
    # A size beyond everyone eligible takes everyone eligible, never the silent.
    cutoff = cadence.likely_cutoff(scores, since, usual, size=5)
    assert cadence.likely_to_buy(scores, since, usual, cutoff).tolist() == [False] + [True] * 4
    # Nobody: an infinite cutoff, and nobody qualifies.
    assert cadence.likely_cutoff(scores, since, usual, size=0) == np.inf
    assert not cadence.likely_to_buy(scores, since, usual, np.inf).any()


def test_likely_to_buy_is_a_cutoff_one_customer_can_be_judged_against() -> None:
    since = np.array([5.0, 5.0, 5.0, 5.0, 400.0])
    usual = np.full(5, 30.0)
    scores = np.array([4.0, 3.0, 3.0, 1.0, 9.0])
    cutoff = cadence.likely_cutoff(scores, since, usual, size=2)
    # A customer tied with the last one is in too: nobody identical is left out.
    assert cadence.likely_to_buy(scores, since, usual, cutoff).tolist() == [
        True,
        True,
        True,
        False,
        False,
    ]
    # Alone, a customer scored a hair lower (the last bits of a computation done on one
    # customer rather than many) still meets it; a real difference does not.
    alone = cadence.likely_to_buy(
        np.array([3.0 * (1 - 1e-12), 3.0 * (1 - 1e-6)]), since[:2], usual[:2], cutoff
    )
    assert alone.tolist() == [True, False]


def test_at_risk_is_valuable_repeat_customers_overdue_on_their_own_rhythm() -> None:
    orders = np.array([5, 5, 1, 5, 5])
    since = np.array([60.0, 3.0, 60.0, 60.0, 200.0])
    usual = np.array([30.0, 30.0, 30.0, 30.0, 30.0])
    spend = np.array([500.0, 500.0, 500.0, 10.0, 500.0])
    risk = cadence.at_risk(orders, since, usual, spend, min_spend=100.0)
    # overdue | ordered 3 days ago (the issue's "at-risk") | one order | low spend | gone quiet
    assert risk.tolist() == [True, False, False, False, False]


def test_true_fans_are_on_their_rhythm_now() -> None:
    orders = np.array([6, 6, 3, 2])
    since = np.array([20.0, 60.0, 100.0, 5.0])
    usual = np.array([30.0, 30.0, 600.0, 30.0])
    fans = cadence.true_fans(orders, since, usual, min_orders=3)
    # monthly and on time | monthly but overdue | every 600 days (the issue's "fan" in
    # lapsed-90) | two orders
    assert fans.tolist() == [True, False, False, False]


def test_likely_size_takes_bands_while_they_order_at_twice_the_average() -> None:
    assert cadence.chance_threshold(0.2) == pytest.approx(0.4)
    assert cadence.chance_threshold(0.6) == pytest.approx(0.8)  # halfway to certain
    # 1,000 customers: bands of 25 (1% is 10, fewer than 25), at most 100 members.
    ranked = np.zeros(300, dtype=bool)
    ranked[:50] = True
    ranked[50:60] = True  # the third band: 10 of 25 = 40%, just enough
    ranked[75:80] = True  # the fourth: 20%, not enough
    assert cadence.likely_size(ranked, 1000, 0.2) == 75
    assert cadence.likely_size(np.ones(300, dtype=bool), 1000, 0.2) == 100
    assert cadence.likely_size(np.zeros(300, dtype=bool), 1000, 0.2) == 0


def test_auc_is_the_share_of_correctly_ordered_pairs() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 60).astype(np.float64)  # plenty of ties
    positive = rng.random(60) < 0.3
    pairs = [
        1.0 if p > n else 0.5 if p == n else 0.0
        for p, n in itertools.product(scores[positive], scores[~positive])
    ]
    assert backtest.auc(scores, positive) == pytest.approx(np.mean(pairs))


def test_horizon_is_90_days_or_half_the_history() -> None:
    assert backtest.horizon_for(400) == 90
    assert backtest.horizon_for(120) == 60
    assert backtest.horizon_for(56) == 28
    assert backtest.horizon_for(55) is None


def test_backtest_on_the_cdnow_sample(cdnow: backtest.OrderHistory) -> None:
    bt = backtest.run(cdnow, AS_OF)
    assert bt.enough and bt.horizon == 90
    assert bt.calibration_day == day_number(dt.date(1997, 7, 3))
    assert bt.customers == 2357  # the whole cohort had ordered by then
    # The store average, counted here straight from the orders.
    ds = cdnow_dataset()
    window = (ds.order_day > bt.calibration_day) & (ds.order_day <= AS_OF)
    assert bt.ordered == len(np.unique(ds.order_customer[window]))
    assert [c.name for c in bt.candidates] == ["bgnbd", "mbgnbd", "rhythm"]
    assert all(c.refused is None for c in bt.candidates)
    best = max(c.top_average for c in bt.candidates)
    assert bt.candidate(bt.chosen).top_average == best  # type: ignore[union-attr]
    # Every candidate finds real signal: its top ordered at well over the store average.
    for c in bt.candidates:
        assert c.top_share > 2 * bt.store_average and c.auc > 0.6
    assert bt.likely_size > 0
    assert bt.likely_ordered >= cadence.chance_threshold(bt.store_average)
    assert bt.text.startswith(
        f"Of the {bt.likely_size:,} customers we would have called likely to buy on 3 July "
        f"1997, {bt.likely_ordered:.0%} ordered within 90 days; store average "
        f"{bt.store_average:.0%}."
    )


def test_the_at_risk_rule_is_measured_against_peers_on_their_rhythm(
    cdnow: backtest.OrderHistory,
) -> None:
    bt = backtest.run(cdnow, AS_OF)
    # Counted here from the rule itself, at the calibration day.
    rhythm = cdnow.rhythm(bt.calibration_day)
    has = rhythm.has_orders
    since = rhythm.days_since_last[has].astype(np.float64)
    usual = rhythm.usual_interval[has]
    spend = rhythm.spend[has]
    risk = cadence.at_risk(rhythm.orders[has], since, usual, spend, float(np.median(spend)))
    ordered = cdnow.ordered_between(bt.calibration_day, AS_OF)[has]
    assert bt.at_risk_size == int(risk.sum()) > 0
    assert bt.at_risk_ordered == pytest.approx(ordered[risk].mean())
    # Overdue customers order less often than their peers who are on their rhythm: the
    # rule finds customers slipping away.
    assert bt.at_risk_ordered < bt.at_risk_peers_ordered
    said = " ".join(backtest.english(k, p) for k, p in bt.messages("at-risk"))
    assert said == (
        f"Customers we would have called at risk on 3 July 1997: {bt.at_risk_size}. "
        f"{bt.at_risk_ordered:.0%} of them ordered within 90 days, against "
        f"{bt.at_risk_peers_ordered:.0%} of the repeat customers who had spent as much and "
        f"were on their rhythm; store average {bt.store_average:.0%}."
    )


def test_the_backtest_round_trips_through_json(cdnow: backtest.OrderHistory) -> None:
    for bt in (
        backtest.run(cdnow, AS_OF),
        backtest.run(history([(c, 100 + c % 40, 20.0) for c in range(200)], 200), 140),
    ):
        stored = json.loads(json.dumps(bt.to_dict(), allow_nan=False))
        again = backtest.Backtest.from_dict(stored)
        assert again.to_dict() == bt.to_dict()
        assert again.text == bt.text and again.ranked() == bt.ranked()


def test_young_or_small_shops_get_not_enough_history_instead_of_numbers() -> None:
    young = history([(c, 100 + c % 40, 20.0) for c in range(200)], customers=200)
    bt = backtest.run(young, 140)
    assert not bt.enough
    assert bt.text == (
        "not enough history yet: the backtest needs 56 days of orders, this store has 40"
    )
    assert bt.messages("at-risk") == [("short_history", {"history_days": 40, "needed_days": 56})]
    small = history([(c, day, 20.0) for c in range(30) for day in (0, 200, 380)], customers=30)
    bt = backtest.run(small, 400)  # calibrated on day 310, 7 November 1970
    assert not bt.enough and bt.customers == 0 and bt.ranked() == []
    assert bt.text == (
        "not enough history yet: the backtest needs 50 customers on 7 November 1970 and 10 "
        "of them ordering in the next 90 days; this store had 30 and 30"
    )
    # No repeat customers: nobody ever orders again, so there is nothing to be right about.
    once = history([(c, c * 2, 20.0) for c in range(300)], customers=300)
    bt = backtest.run(once, 600)
    assert not bt.enough and bt.text.endswith("this store had 256 and 0")  # days 0 to 510


@pytest.mark.parametrize("repeaters", [0, 1])
def test_models_step_aside_with_reasons_when_there_is_nothing_to_fit(repeaters: int) -> None:
    # 300 one-order customers at the calibration day (plus 0 or 1 who ordered twice); 40 of
    # them order again inside the window.
    orders = [(c, c, 20.0) for c in range(300)]
    orders += [(c, 301, 20.0) for c in range(repeaters)]
    orders += [(c, 450 + c % 30, 25.0) for c in range(100, 140)]
    bt = backtest.run(history(orders, customers=300), 500)
    assert bt.enough and bt.horizon == 90
    for name in backtest.MODELS:
        refused = bt.candidate(name).refused  # type: ignore[union-attr]
        assert refused == (
            f"too few customers to fit (300 with orders, {repeaters} of them repeat; needs "
            f"{clv.MIN_CUSTOMERS} and {clv.MIN_REPEAT_CUSTOMERS})"
        )
    assert bt.chosen == backtest.RHYTHM
    assert bt.text.endswith("Ranked by order rhythm, the best of 3 ways tried.")


def orders_csv(path: Path, orders: list[tuple[str, dt.date, float]]) -> Path:
    """An orders export with just the columns ``analyze`` needs."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["Name", "Email", "Created at", "Total", "Lineitem quantity", "Lineitem name"]
        )
        for n, (email, day, total) in enumerate(orders):
            writer.writerow([f"#{n + 1}", email, f"{day} 12:00:00 +0000", f"{total:.2f}", 1, "Mug"])
    return path


def analyze(
    path: Path, as_of: dt.date, capsys: pytest.CaptureFixture[str]
) -> tuple[dict[str, Any], str]:
    """``shopify-app analyze`` as JSON and as text."""
    assert main(["analyze", str(path), "--as-of", as_of.isoformat(), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert main(["analyze", str(path), "--as-of", as_of.isoformat()]) == 0
    return report, capsys.readouterr().out


TODAY = dt.date(2025, 6, 30)


def test_analyze_on_a_three_customer_shop_says_not_enough_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ago = [TODAY - dt.timedelta(days=d) for d in (200, 100, 30, 4, 3)]
    a, b, c = "a@x.io", "b@x.io", "c@x.io"
    orders = [(a, ago[0], 20.0), (a, ago[2], 20.0), (b, ago[3], 35.0), (c, ago[1], 50.0)]
    path = orders_csv(tmp_path / "tiny.csv", [*orders, (c, ago[4], 50.0)])
    report, text = analyze(path, TODAY, capsys)
    assert report["model"]["status"] == "fallback" and report["model"]["ranking"] is None
    assert not report["backtest"]["enough"]
    assert report["backtest"]["likely_to_buy"] == (
        "not enough history yet: the backtest needs 50 customers on 1 April 2025 and 10 of them "
        "ordering in the next 90 days; this store had 2 and 2"
    )
    assert report["segments"]["likely-to-buy"]["count"] == 0
    assert report["segments"]["at-risk"]["count"] == 0
    assert report["metrics"]["headline"]["clv_predicted_12m"] is None
    assert f"Model: fallback — No predictions: {report['backtest']['likely_to_buy']}." in text
    assert "likely active" not in text and "BG/NBD" not in text


def test_analyze_on_a_shop_without_repeat_customers_predicts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = [(f"c{i}@x.io", TODAY - dt.timedelta(days=2 * i), 30.0) for i in range(300)]
    report, text = analyze(orders_csv(tmp_path / "once.csv", orders), TODAY, capsys)
    assert report["backtest"]["likely_to_buy"].endswith("this store had 255 and 0")
    assert report["segments"]["likely-to-buy"]["count"] == 0
    assert report["model"]["bgnbd"]["r"] is None and report["model"]["mbgnbd"]["r"] is None
    assert "No predictions: not enough history yet" in text


def test_analyze_on_a_constant_spend_shop_uses_the_average_order_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 300 customers ordering every 20 to 80 days, every order 25.00.
    rng = np.random.default_rng(11)
    orders = []
    for i in range(300):
        start, gap = int(rng.integers(60, 500)), int(rng.integers(20, 80))
        orders += [
            (f"c{i}@x.io", TODAY - dt.timedelta(days=start - k * gap), 25.0)
            for k in range(int(rng.integers(1, 10)))
            if start - k * gap >= 0
        ]
    report, text = analyze(orders_csv(tmp_path / "flat.csv", orders), TODAY, capsys)
    model = report["model"]
    assert report["backtest"]["enough"] and model["status"] == "fitted"
    assert model["gamma_gamma"]["p"] is None
    assert (
        "order values from each customer's average (Gamma-Gamma: repeat orders all have "
        "(almost) the same value)" in model["note"]
    )
    assert report["metrics"]["headline"]["clv_predicted_12m"] > 0
    assert "Gamma-Gamma: p=" not in text
    likely = report["backtest"]["likely_to_buy"]
    assert likely.startswith("Of the ") or likely.startswith("On ")
    assert f"Likely to buy, checked on this store's history: {likely}" in text
    assert f"At risk, checked the same way: {report['backtest']['at_risk']}" in text
