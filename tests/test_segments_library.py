"""Each built-in segment on small hand-made stores, edge cases included."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopify_app.segments import backtest, cadence, clv, library
from shopify_app.segments.config import CrossSellRule, LapsedTier, ShopConfig
from shopify_app.segments.dataset import (
    Dataset,
    DatasetBuilder,
    compute_features,
    day_number,
    product_key_for_title,
)
from shopify_app.segments.library import predictions, reasons
from shopify_app.segments.library.context import ShopStats
from shopify_app.segments.recompute import single_customer_dataset
from tests.messages import placeholders
from tests.test_segments_models import cdnow_dataset

AS_OF = dt.date(2025, 6, 30)


def store(orders: list[tuple[Any, ...]], **info: dict[str, Any]) -> Dataset:
    """Orders as (email, date, total, [(title, qty)], extra) tuples; info per email."""
    builder = DatasetBuilder()
    ids: dict[str, int] = {}
    for n, (email, day, total, lines, *extra) in enumerate(orders):
        cid = ids.setdefault(email, len(ids) + 1)
        fields = {"email": email, **info.get(email.split("@")[0], {})}
        index = builder.add_customer(cid, **fields)
        opts = extra[0] if extra else {}
        oi = builder.add_order(
            index, n + 1, day_number(day), total, opts.get("code", ""), opts.get("company")
        )
        for title, qty in lines:
            builder.add_line(oi, product_key_for_title(title), title, qty)
    return builder.build()


def members(ev: library.Evaluation, handle: str) -> set[str]:
    emails = ev.dataset.info["email"]
    return {str(emails[i]) for i in ev.segments[handle].members}


def reason(ev: library.Evaluation, handle: str, email: str) -> str:
    seg = ev.segments[handle]
    emails = ev.dataset.info["email"]
    for i, r in zip(seg.members, seg.reasons, strict=True):
        if emails[i] == email:
            return reasons.render(r)
    raise AssertionError(f"{email} not in {handle}")


D = dt.date


def test_business_buyers_by_units_window_company_and_colleague_domain() -> None:
    ds = store(
        [
            ("ann@hotellux.com", D(2025, 3, 3), 576.0, [("Dinner Napkins", 48)]),
            ("bob@hotellux.com", D(2025, 5, 10), 16.0, [("Tea Napkins", 2)]),
            ("cat@gmail.com", D(2025, 1, 5), 240.0, [("Tea Napkins", 35)]),
            ("cat@gmail.com", D(2025, 3, 5), 240.0, [("Tea Napkins", 35)]),
            ("cat@gmail.com", D(2025, 4, 5), 40.0, [("Tea Napkins", 5)]),
            ("dan@gmail.com", D(2023, 1, 5), 400.0, [("Tea Napkins", 50)]),
            ("dan@gmail.com", D(2025, 4, 5), 240.0, [("Tea Napkins", 30)]),
            (
                "eve@acme.com",
                D(2025, 6, 1),
                60.0,
                [("Cocktail Napkins", 10)],
                {"company": "Acme Events"},
            ),
            ("fay@gmail.com", D(2025, 6, 1), 12.0, [("Dinner Napkins", 35)]),
            ("gus@gmail.com", D(2025, 6, 2), 12.0, [("Dinner Napkins", 1)]),
        ]
    )
    ev = library.evaluate(ds, ShopConfig(), AS_OF)
    assert members(ev, "business-buyers") == {
        "ann@hotellux.com",
        "bob@hotellux.com",
        "cat@gmail.com",
        "dan@gmail.com",  # one order of 50 units, however long ago
        "eve@acme.com",
    }
    assert (
        reason(ev, "business-buyers", "ann@hotellux.com")
        == "48 units of Dinner Napkins on 3 March 2025"
    )
    assert "75 units in the last 365 days" in reason(ev, "business-buyers", "cat@gmail.com")
    assert "Acme Events" in reason(ev, "business-buyers", "eve@acme.com")
    assert "hotellux.com" in reason(ev, "business-buyers", "bob@hotellux.com")


def test_old_bulk_order_counts_but_window_units_do_not_accumulate_beyond_a_year() -> None:
    ds = store(
        [
            ("old@gmail.com", D(2023, 1, 5), 300.0, [("Tea Napkins", 30)]),
            ("old@gmail.com", D(2025, 4, 5), 300.0, [("Tea Napkins", 30)]),
            ("bulk@gmail.com", D(2022, 1, 5), 500.0, [("Tea Napkins", 40)]),
        ]
    )
    ev = library.evaluate(ds, ShopConfig(), AS_OF)
    assert members(ev, "business-buyers") == {"bulk@gmail.com"}


def test_free_mail_domains_are_not_company_signals() -> None:
    ds = store(
        [
            ("ann@gmail.com", D(2025, 3, 3), 576.0, [("Dinner Napkins", 48)]),
            ("bob@gmail.com", D(2025, 5, 10), 16.0, [("Tea Napkins", 2)]),
        ]
    )
    ev = library.evaluate(ds, ShopConfig(), AS_OF)
    assert members(ev, "business-buyers") == {"ann@gmail.com"}


def test_repeat_true_fans_one_time() -> None:
    ds = store(
        [
            ("one@gmail.com", D(2025, 5, 1), 10.0, []),
            ("two@gmail.com", D(2025, 5, 1), 10.0, []),
            ("two@gmail.com", D(2025, 6, 1), 10.0, []),
            ("fan@gmail.com", D(2025, 4, 15), 10.0, []),
            ("fan@gmail.com", D(2025, 5, 15), 10.0, []),
            ("fan@gmail.com", D(2025, 6, 14), 10.0, []),
            ("biz@gmail.com", D(2025, 4, 15), 10.0, [("Napkins", 40)]),
            ("biz@gmail.com", D(2025, 5, 15), 10.0, []),
            ("biz@gmail.com", D(2025, 6, 14), 10.0, []),
            # Steady once, silent for four months now: lapsed-90, so no longer a "fan" (the
            # issue's fans who were in lapsed-90; this one was a true fan before).
            ("old@gmail.com", D(2025, 1, 1), 10.0, []),
            ("old@gmail.com", D(2025, 2, 1), 10.0, []),
            ("old@gmail.com", D(2025, 3, 1), 10.0, []),
            # Three orders, the last a week ago, but a year and more apart: not a steady buyer.
            ("yearly@gmail.com", D(2023, 6, 1), 10.0, []),
            ("yearly@gmail.com", D(2024, 6, 15), 10.0, []),
            ("yearly@gmail.com", D(2025, 6, 23), 10.0, []),
        ]
    )
    ev = library.evaluate(ds, ShopConfig(), AS_OF)
    repeat = {
        "two@gmail.com",
        "fan@gmail.com",
        "biz@gmail.com",
        "old@gmail.com",
        "yearly@gmail.com",
    }
    assert members(ev, "repeat-customers") == repeat
    assert members(ev, "true-fans") == {"fan@gmail.com"}  # business buyers are not "fans"
    assert "old@gmail.com" in members(ev, "lapsed-tier-2")
    assert members(ev, "one-time-buyers") == {"one@gmail.com"}
    # Fewer than ten repeat customers: the usual interval counts one extra 90-day gap.
    usual = round((60 + 90) / 3)
    assert reason(ev, "true-fans", "fan@gmail.com") == (
        f"3 orders, about every {usual} days; the last on 14 June 2025"
    )


def test_as_of_ignores_later_orders() -> None:
    ds = store(
        [
            ("a@x.io", D(2025, 1, 1), 10.0, []),
            ("a@x.io", D(2025, 7, 5), 10.0, []),
            ("later@x.io", D(2025, 7, 5), 10.0, []),
        ]
    )
    ev = library.evaluate(ds, ShopConfig(), AS_OF)
    assert members(ev, "one-time-buyers") == {"a@x.io"}
    everyone = set().union(*(members(ev, h) for h in ev.segments))
    assert "later@x.io" not in everyone
    ev_later = library.evaluate(ds, ShopConfig(), D(2025, 7, 31))
    assert members(ev_later, "repeat-customers") == {"a@x.io"}


def test_lapsed_tiers_discounts_and_reminders() -> None:
    ds = store(
        [
            ("fresh@x.io", D(2025, 6, 1), 10.0, []),  # 29 days
            ("sixty@x.io", D(2025, 5, 1), 10.0, []),  # 60 days
            ("edge@x.io", D(2025, 4, 2), 10.0, []),  # 89 days
            ("ninety@x.io", D(2025, 4, 1), 10.0, []),  # 90 days
            # A regular: every ~92 days, 90 days since the last: reminder, not discount.
            ("reg@x.io", D(2024, 7, 1), 10.0, []),
            ("reg@x.io", D(2024, 10, 1), 10.0, []),
            ("reg@x.io", D(2025, 1, 1), 10.0, []),
            ("reg@x.io", D(2025, 4, 1), 10.0, []),
        ]
    )
    ev = library.evaluate(ds, ShopConfig(), AS_OF)
    assert members(ev, "lapsed-tier-1") == {"sixty@x.io", "edge@x.io"}
    assert members(ev, "lapsed-tier-2") == {"ninety@x.io", "reg@x.io"}
    assert reason(ev, "lapsed-tier-1", "sixty@x.io").endswith("suggest 10% off")
    assert reason(ev, "lapsed-tier-2", "ninety@x.io").endswith("suggest 15% off")
    assert "reminder, no discount" in reason(ev, "lapsed-tier-2", "reg@x.io")
    assert members(ev, "lapsed-reminder") == {"reg@x.io"}  # the discounts leave it out
    assert ev.segments["lapsed-tier-2"].definition.definition["discount_percent"] == 15

    # Tiers are segments by position: new days keep tier 1 and 2 and add tier 3.
    cfg = ShopConfig(lapsed_tiers=(LapsedTier(30, 5), LapsedTier(75, 10), LapsedTier(120, 20)))
    ev = library.evaluate(ds, cfg, AS_OF)
    assert set(h for h in ev.segments if h.startswith("lapsed-tier-")) == {
        "lapsed-tier-1",
        "lapsed-tier-2",
        "lapsed-tier-3",
    }
    assert members(ev, "lapsed-tier-1") == {"sixty@x.io"}
    assert members(ev, "lapsed-tier-2") == {"edge@x.io", "ninety@x.io", "reg@x.io"}
    assert ev.segments["lapsed-tier-1"].definition.definition["min_days"] == 30


def test_vip_is_top_share_by_net_spend() -> None:
    orders = [(f"c{i}@x.io", D(2025, 1, 1 + i), float(10 * (i + 1)), []) for i in range(20)]
    ds = store(orders)
    ev = library.evaluate(ds, ShopConfig(), AS_OF)
    assert members(ev, "vip") == {"c19@x.io", "c18@x.io"}
    ev = library.evaluate(ds, ShopConfig(vip_share=0.25), AS_OF)
    assert len(members(ev, "vip")) == 5


def test_cross_sell_rules_bought_any_never_any() -> None:
    ds = store(
        [
            ("a@x.io", D(2025, 1, 1), 10.0, [("Linen Dinner Napkins", 4)]),
            ("b@x.io", D(2025, 1, 1), 10.0, [("Linen Dinner Napkins", 4), ("Placemats", 4)]),
            ("c@x.io", D(2025, 1, 1), 10.0, [("Wedding Handkerchief", 1)]),
            ("d@x.io", D(2025, 1, 1), 10.0, [("Wedding Handkerchief", 1)]),
            ("d@x.io", D(2025, 2, 1), 10.0, [("Handkerchief Gift Box", 1)]),
        ]
    )
    ev = library.evaluate(ds, ShopConfig(), AS_OF)
    assert members(ev, "cross-sell-napkins-to-table-linen") == {"a@x.io"}
    assert members(ev, "cross-sell-handkerchief-gift-box") == {"c@x.io"}
    assert "Linen Dinner Napkins" in reason(ev, "cross-sell-napkins-to-table-linen", "a@x.io")
    cfg = ShopConfig(cross_sell=(CrossSellRule("mats", "Mats", ("placemat",), ("napkin",)),))
    ev = library.evaluate(ds, cfg, AS_OF)
    assert members(ev, "cross-sell-mats") == set()


def test_holiday_shoppers_milestone_and_regions() -> None:
    orders = [
        ("h@x.io", D(2024, 11, 20), 10.0, []),
        ("h@x.io", D(2024, 12, 15), 10.0, []),
        ("h@x.io", D(2025, 3, 15), 10.0, []),
        ("s@x.io", D(2024, 12, 15), 10.0, []),
        ("s@x.io", D(2025, 2, 15), 10.0, []),
        ("m@x.io", D(2025, 2, 15), 450.0, []),
    ]
    orders += [(f"ny{i}@x.io", D(2025, 3, 1), 10.0, []) for i in range(5)]
    info = {f"ny{i}": {"country_code": "US", "province_code": "NY"} for i in range(5)}
    ds = store(orders, **info)
    ev = library.evaluate(ds, ShopConfig(), AS_OF)
    assert members(ev, "holiday-shoppers") == {"h@x.io"}
    assert reason(ev, "holiday-shoppers", "h@x.io") == "2 of 3 orders in November–December"
    assert members(ev, "spend-milestone") == {"m@x.io"}
    assert "50.00 from the 500.00 reward" in reason(ev, "spend-milestone", "m@x.io")
    assert members(ev, "region-us-ny") == {f"ny{i}@x.io" for i in range(5)}
    ev = library.evaluate(ds, ShopConfig(season_months=(2,), holiday_min_share=0.5), AS_OF)
    assert members(ev, "holiday-shoppers") == {"s@x.io", "m@x.io"}


def test_rfm_groups_cover_every_customer_with_orders() -> None:
    rng = np.random.default_rng(3)
    orders = []
    for i in range(200):
        for _ in range(int(rng.integers(1, 6))):
            orders.append(
                (
                    f"c{i}@x.io",
                    AS_OF - dt.timedelta(days=int(rng.integers(0, 700))),
                    float(rng.integers(5, 300)),
                    [],
                )
            )
    ds = store(orders)
    ev = library.evaluate(ds, ShopConfig(), AS_OF)
    rfm_members = [
        set(ev.segments[h].members.tolist()) for h in ev.segments if h.startswith("rfm-")
    ]
    assert len(rfm_members) == 11
    assert sum(len(m) for m in rfm_members) == 200  # a partition
    assert ev.segments["rfm-champions"].count > 0
    assert ev.segments["rfm-lost"].count > 0


def steady_store(customers: int = 400, seed: int = 5, spend: float | None = None) -> Dataset:
    """Customers who each order every 10 to 60 days for a while, some still, some gone quiet
    (a third share company domains; order sizes vary, so some are business buyers)."""
    rng = np.random.default_rng(seed)
    orders = []
    for i in range(customers):
        start = int(rng.integers(30, 700))
        n = int(rng.integers(1, 12))
        gap = int(rng.integers(10, 60))
        for k in range(n):
            if start - k * gap < 0:
                break
            total = float(rng.integers(20, 200)) if spend is None else spend
            lines = [("Dinner Napkins", int(rng.integers(1, 40)))]
            when = AS_OF - dt.timedelta(days=start - k * gap)
            domain = f"firm{i % 7}.com" if i % 3 == 0 else "gmail.com"
            orders.append((f"c{i}@{domain}", when, total, lines))
    return store(orders)


def test_model_segments_come_from_the_checked_ranking() -> None:
    ev = library.evaluate(steady_store(), ShopConfig(), AS_OF)
    stats = ev.stats
    bt = stats.backtest
    assert bt.enough and stats.ranking == bt.chosen
    assert stats.model_status == "fitted" and stats.purchase_model in stats.models
    assert stats.model_note.startswith(
        f"Likely to buy is ranked by {backtest.LABELS[bt.chosen]}, the best of the ways tried "
        "in this shop's backtest."
    )
    likely = ev.segments["likely-to-buy"]
    risk = ev.segments["at-risk"]
    assert likely.count > 0 and risk.count > 0
    # The top of the chosen ranking, nobody silent for more than three usual intervals.
    f = ev.features
    usual = cadence.usual_interval(f.occasions, f.first_day, f.last_day, stats.typical_interval)
    since = f.days_since_last.astype(np.float64)
    scores = predictions.ranking_scores(f, stats, usual)
    inside = np.zeros(len(scores), dtype=bool)
    inside[likely.members] = True
    eligible = f.has_orders & ~cadence.silent_too_long(since, usual)
    # Sized by the backtest's share of today's customers (ties at the cutoff come along).
    assert likely.count >= min(round(bt.likely_share * stats.customers), int(eligible.sum()))
    assert not (inside & ~eligible).any()
    below = scores[eligible & ~inside]
    assert not len(below) or scores[inside].min() >= below.max()
    # At risk: repeat customers who spent well, overdue but not gone, on their own rhythm.
    at_risk = cadence.at_risk(f.occasions, since, usual, f.spend, stats.at_risk_min_spend)
    assert risk.members.tolist() == np.nonzero(at_risk)[0].tolist()
    # Reasons say the customer's own rhythm.
    first = int(likely.members[0])
    text = reasons.render(likely.reasons[0])
    assert re.fullmatch(r"orders about every \d+ days; last order on .+", text) or (
        f.occasions[first] == 1 and text.startswith("ordered once so far")
    )
    assert "likely active" not in text and "%" not in text
    assert re.fullmatch(
        r"spent [\d,.]+ over \d+ orders; usually orders about every \d+ days, the last on .+",
        reasons.render(risk.reasons[0]),
    )
    assert ev.predictions.available and np.isfinite(ev.predictions.clv_12m).all()


def test_not_enough_history_means_no_predictions() -> None:
    # A tiny shop: three customers, one of them a repeat customer who ordered 3 days ago.
    tiny = store(
        [
            ("a@x.io", D(2025, 6, 20), 10.0, []),
            ("a@x.io", D(2025, 6, 27), 10.0, []),
            ("b@x.io", D(2025, 6, 26), 30.0, []),
            ("c@x.io", D(2025, 1, 5), 30.0, []),
        ]
    )
    # No repeat customers: 300 one-order customers over two years.
    once = store([(f"c{i}@x.io", AS_OF - dt.timedelta(days=2 * i), 25.0, []) for i in range(300)])
    rules = ShopConfig(
        custom_segments=(
            {"handle": "alive", "rules": [{"field": "p_alive", "op": ">=", "value": 0}]},
            {
                "handle": "buying",
                "rules": [{"field": "expected_purchases_90d", "op": ">=", "value": 0}],
            },
        )
    )
    for ds, why in ((tiny, "few_customers"), (once, "few_customers")):
        ev = library.evaluate(ds, rules, AS_OF)
        stats = ev.stats
        assert not stats.backtest.enough and stats.backtest.why == why
        assert stats.ranking is None and stats.purchase_model is None
        assert stats.model_status == "fallback"
        assert stats.model_note == f"No predictions: {stats.backtest.note}."
        assert stats.model_note.startswith("No predictions: not enough history yet: ")
        # Empty, with the reason on the segment's page, not "100% likely active".
        for handle in ("likely-to-buy", "at-risk", "custom-alive", "custom-buying"):
            assert ev.segments[handle].count == 0, handle
        assert not ev.predictions.available and np.isnan(ev.predictions.p_alive).all()
        assert not any(
            "likely" in reasons.render(r) for seg in ev.segments.values() for r in seg.reasons
        )
    # A young shop: plenty of customers, five weeks of orders.
    young = store([(f"c{i}@x.io", AS_OF - dt.timedelta(days=i % 35), 25.0, []) for i in range(200)])
    ev = library.evaluate(young, ShopConfig(), AS_OF)
    assert ev.stats.backtest.why == "short_history" and ev.segments["likely-to-buy"].count == 0


def test_one_repeat_customer_gets_no_made_up_predictions() -> None:
    # The small store: one-time buyers from 4 days ago got P(alive) 0.02 and a customer
    # who ordered 3 days ago was "at risk". Here 130 customers over a year, one of whom ordered
    # twice, a day apart, 3 days ago.
    orders = [(f"c{i}@x.io", AS_OF - dt.timedelta(days=4 + 3 * i), 40.0, []) for i in range(130)]
    orders += [("r@x.io", AS_OF - dt.timedelta(days=4), 90.0, [])]
    orders += [("r@x.io", AS_OF - dt.timedelta(days=3), 90.0, [])]
    ev = library.evaluate(store(orders), ShopConfig(), AS_OF)
    # One customer's habit is not the shop's rhythm ...
    assert ev.stats.typical_interval == cadence.TYPICAL_INTERVAL_FALLBACK
    # ... and one customer ordering again is not enough to check predictions on.
    assert ev.stats.backtest.why == "few_customers" and ev.stats.ranking is None
    assert not ev.segments["at-risk"].count and not ev.segments["likely-to-buy"].count
    assert np.isnan(ev.predictions.p_alive).all()  # no number, rather than 0.02


def test_constant_spend_falls_back_to_each_customers_average_order_value() -> None:
    ev = library.evaluate(steady_store(spend=25.0), ShopConfig(), AS_OF)
    stats = ev.stats
    assert stats.purchase_model is not None and stats.gamma_gamma is None
    assert (
        "order values from each customer's average (Gamma-Gamma: repeat orders all have "
        "(almost) the same value)." in stats.model_note
    )
    # Twelve months of value: expected purchases at the one order value there is.
    f = ev.features
    x, t_x, T = f.bgnbd_inputs()
    params = stats.models[stats.purchase_model]
    expected = clv.expected_purchases(params, 365 / 7, x, t_x, T) * 25.0
    assert np.allclose(ev.predictions.clv_12m[f.has_orders], expected)


def test_a_model_refused_on_the_whole_history_steps_aside() -> None:
    rhythm = backtest.OrderHistory.of(steady_store()).rhythm(day_number(AS_OF))
    checked = backtest.Backtest(
        as_of=day_number(AS_OF),
        horizon=90,
        enough=True,
        candidates=(
            backtest.CandidateResult("bgnbd", 0.5, 0.6, 0.7),
            backtest.CandidateResult("rhythm", 0.5, 0.5, 0.7),
            backtest.CandidateResult("mbgnbd", 0.0, 0.0, 0.0, "the fit did not converge"),
        ),
        chosen="bgnbd",
    )
    few = cadence.Rhythm(
        rhythm.as_of,
        np.minimum(rhythm.orders, 1),  # nobody repeat: BG/NBD cannot be fitted now
        rhythm.first_day,
        rhythm.first_day,
        rhythm.recent_orders,
        rhythm.spend,
    )
    choice = predictions.choose(few, np.zeros(int(few.has_orders.sum())), checked)
    assert choice.ranking == "rhythm" and choice.purchase_model is None
    assert choice.status == "fallback"
    assert choice.note == (
        "Likely to buy is ranked by order rhythm, the best of the ways tried that fit the whole "
        "history. No purchase model can be trusted here: no expected purchases or values. "
        "The MBG/NBD model could not compete in the backtest: the fit did not converge. The "
        "BG/NBD model was refused on the whole history: too few customers to fit (400 with "
        "orders, 0 of them repeat; needs 50 and 10)."
    )


def test_likely_to_buy_holds_up_on_the_days_after() -> None:
    # CDNOW as of 1 October 1997: the segment the library produces, judged on the next 90
    # days, which no part of the evaluation saw.
    as_of = dt.date(1997, 10, 1)
    ds = cdnow_dataset()
    ev = library.evaluate(ds, ShopConfig(), as_of)
    likely = ev.segments["likely-to-buy"].members
    history = backtest.OrderHistory.of(ds)
    today = day_number(as_of)
    rhythm = history.rhythm(today)
    has = rhythm.has_orders
    since = rhythm.days_since_last.astype(np.float64)
    ordered = history.ordered_between(today, today + 90)
    assert len(likely) > 0
    assert not cadence.silent_too_long(since[likely], rhythm.usual_interval[likely]).any()
    share = ordered[likely].mean()
    assert share > 2 * ordered[has].mean()
    # At least as good as the one-line rule (orders in the last 365 days, most recent first)
    # at the same size.
    line = np.where(has, rhythm.recent_orders * 10**7 - since, -np.inf)
    top = cadence.ranked(line, since)[: len(likely)]
    assert share >= ordered[top].mean()


def test_cancelled_and_test_orders_never_reach_the_dataset() -> None:
    from pathlib import Path

    from shopify_app.sync.orders_csv import read_orders

    imported = read_orders(Path(__file__).parent / "fixtures" / "orders_export_sample.csv")
    emails = set(imported.dataset.info["email"])
    assert "grace@gmail.com" not in emails  # only a cancelled order
    assert "heidi@gmail.com" not in emails  # only a Bogus Gateway (test) order
    assert imported.skipped_cancelled == 1 and imported.skipped_test == 1


def test_incremental_evaluation_matches_the_full_one() -> None:
    ds = steady_store(300, seed=9)
    cfg = ShopConfig()
    full = library.evaluate(ds, cfg, AS_OF)
    assert full.stats.ranking is not None  # predictions were made and checked
    stats = ShopStats.from_dict(json.loads(json.dumps(full.stats.to_dict(), allow_nan=False)))
    picked = {0, 17, 123, 299}
    for handle in ("likely-to-buy", "at-risk", "true-fans", "lapsed-tier-2"):
        members_of = full.segments[handle].members.tolist()
        assert members_of, handle
        picked |= {members_of[0], members_of[-1]}
    for index in sorted(picked):
        one = library.evaluate(single_customer_dataset(ds, index), cfg, AS_OF, stats=stats)
        for handle, result in full.segments.items():
            in_full = index in set(result.members.tolist())
            assert (len(one.segments[handle].members) == 1) == in_full, handle
            if in_full:
                pos = result.members.tolist().index(index)
                assert one.segments[handle].reasons[0] == result.reasons[pos]


def test_shop_stats_round_trip_through_json() -> None:
    for ds in (steady_store(), store([("a@x.io", D(2025, 6, 1), 10.0, [])])):
        stats = library.evaluate(ds, ShopConfig(), AS_OF).stats
        stored = json.loads(json.dumps(stats.to_dict(), allow_nan=False))
        assert ShopStats.from_dict(stored).to_dict() == stats.to_dict()
    # Stats cached before the backtest existed are not read as "no predictions": the caller
    # waits for a full recompute instead.
    old = stats.to_dict()
    del old["backtest"]
    with pytest.raises(KeyError):
        ShopStats.from_dict(old)


def test_features_merge_same_day_orders() -> None:
    ds = store(
        [
            ("a@x.io", D(2025, 1, 1), 10.0, []),
            ("a@x.io", D(2025, 1, 1), 5.0, []),
            ("a@x.io", D(2025, 2, 1), 20.0, []),
        ]
    )
    f = compute_features(ds, AS_OF)
    assert f.n_orders[0] == 3 and f.occasions[0] == 2
    assert f.repeat_value[0] == 20.0


def test_reasons_are_stored_as_json_the_page_translates_and_render_says_in_english() -> None:
    # Quotes, backslashes, percent signs and non-Latin letters in merchant text survive.
    title = 'Napkins "Deluxe" 100% \\ Ωμέγα'
    cfg = ShopConfig(
        cross_sell=(CrossSellRule("napkins-to-linen", "Linen", ("Napkins",), ("Table Linen",)),)
    )
    orders = [
        ("big@x.io", AS_OF - dt.timedelta(days=40), 900.0, [(title, 48)]),
        ("big@x.io", AS_OF - dt.timedelta(days=10), 30.0, [(title, 1)]),
        ("one@x.io", AS_OF - dt.timedelta(days=100), 20.0, [("Tea Towel", 1)]),
    ]
    ev = library.evaluate(store(orders), cfg, AS_OF)
    seen = set()
    for result in ev.segments.values():
        for stored in result.reasons:
            if not stored:
                continue
            reason = reasons.Reason.parse(stored)
            assert reason is not None, stored
            assert reason.key in reasons.REASON_TEMPLATES, reason.key
            names = placeholders(reasons.REASON_TEMPLATES[reason.key])
            assert set(reason.params) == names, reason.key
            assert reasons.Reason.parse(reason.to_json()) == reason
            seen.add(reason.key)
    assert {"business.order_units", "repeat", "one_time", "cross_sell"} <= seen
    text = reason_of(ev, "business-buyers", "big@x.io")
    assert reasons.Reason.parse(text).params["product"] == title  # type: ignore[union-attr]
    expected_day = AS_OF - dt.timedelta(days=40)
    assert reasons.render(text) == (
        f"48 units of {title} on {expected_day.day} {reasons.MONTHS[expected_day.month - 1]} "
        f"{expected_day.year}"
    )
    # Plain text from before reasons were structured is shown as written.
    assert reasons.render("3 orders") == "3 orders"
    assert reasons.render(None) == ""
    assert reasons.render('{"key": "retired", "params": {"text": "old words"}}') == "old words"
    months = reasons.Reason("holiday", {"season_orders": 2, "orders": 3, "season_months": [11, 12]})
    assert reasons.render(months) == "2 of 3 orders in November–December"
    assert reasons.render(
        reasons.Reason("vip", {"spend_money": 1234.5, "share": 10, "cutoff_money": 900})
    ) == ("net spend 1,234.50 (top 10% start at 900.00)")


def reason_of(ev: library.Evaluation, handle: str, email: str) -> str:
    seg = ev.segments[handle]
    emails = ev.dataset.info["email"]
    return next(r for i, r in zip(seg.members, seg.reasons, strict=True) if emails[i] == email)


def test_prediction_messages_are_the_pages_and_every_language_has_them() -> None:
    # What the backtest says: one English source (backtest.MESSAGES), which en.json holds.
    web = Path(__file__).resolve().parents[1] / "web" / "i18n"
    english = json.loads((web / "en.json").read_text(encoding="utf-8"))
    page = {k.removeprefix("prediction."): v for k, v in english.items()}
    assert {k: page[k] for k in backtest.MESSAGES} == backtest.MESSAGES
    assert {k: page[f"candidate.{k}"] for k in backtest.LABELS} == backtest.LABELS
    keys = [k for k in english if k.startswith("prediction.")]
    for lang in ("ar", "ko", "el"):
        other = json.loads((web / f"{lang}.json").read_text(encoding="utf-8"))
        for key in keys:
            expected = placeholders(english[key])
            assert other[key] != english[key] or "/NBD" in key, (lang, key)
            assert placeholders(other[key]) == expected, (lang, key)


def test_english_reason_templates_are_the_pages_and_every_language_has_them() -> None:
    # One English source: the page's en.json holds exactly the templates render() uses.
    web = Path(__file__).resolve().parents[1] / "web" / "i18n"
    english = json.loads((web / "en.json").read_text(encoding="utf-8"))
    page = {k.removeprefix("reason."): v for k, v in english.items() if k.startswith("reason.")}
    assert page == reasons.REASON_TEMPLATES
    for lang in ("ar", "ko", "el"):
        other = json.loads((web / f"{lang}.json").read_text(encoding="utf-8"))
        for key, template in reasons.REASON_TEMPLATES.items():
            translated = other[f"reason.{key}"]
            assert translated != template or key == "rfm", (lang, key)
            expected = placeholders(template)
            assert placeholders(translated) == expected, (lang, key)


# Run in a fresh interpreter (this test session has imported everything already): imports the
# modules named in argv[1] and prints the loaded modules under the prefixes in argv[2].
IMPORT_PROBE = """
import importlib, json, sys
for name in sys.argv[1].split(","):
    importlib.import_module(name)
io = sys.argv[2].split(",")
loaded = [m for m in sys.modules if any(m == p or m.startswith(p + ".") for p in io)]
print(json.dumps(sorted(loaded)))
"""


def test_the_segments_core_imports_no_io() -> None:
    """The pure core loads no database, HTTP or job code: only loader and recompute do I/O."""
    core = [
        "shopify_app.segments.dataset",
        "shopify_app.segments.library",
        "shopify_app.segments.rfm",
        "shopify_app.segments.clv",
        "shopify_app.segments.crosssell",
        "shopify_app.segments.rules",
        "shopify_app.segments.metrics",
        "shopify_app.segments.config",
    ]
    io = ["sqlalchemy", "requests", "huey", "shopify_app.db", "shopify_app.jobs"]
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, ",".join(core), ",".join(io)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == []
