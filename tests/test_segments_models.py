"""The purchase models reproduce published CDNOW parameters (within 1%) and refuse fits that
cannot be trusted, each refusal with a reason."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from shopify_app.segments import clv
from shopify_app.segments.dataset import (
    Dataset,
    DatasetBuilder,
    compute_features,
    day_number,
    product_key_for_title,
)

CDNOW = Path(__file__).parent / "fixtures" / "CDNOW_sample.txt"
CALIBRATION_END = dt.date(1997, 9, 30)  # end of week 39


def cdnow_dataset() -> Dataset:
    """The CDNOW sample (2,357 customers, January 1997 to June 1998) as the engine's dataset."""
    builder = DatasetBuilder()
    for n, line in enumerate(CDNOW.read_text().splitlines()):
        cid, _, ymd, cds, amount = line.split()
        index = builder.add_customer(int(cid))
        day = day_number(dt.date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:])))
        order = builder.add_order(index, n + 1, day, float(amount))
        # The units too: the sample's eight $0 orders of one CD are purchases.
        builder.add_line(order, product_key_for_title("CD"), "CD", int(cds))
    return builder.build()


def cdnow_features():  # type: ignore[no-untyped-def]
    """The CDNOW sample through the engine's own dataset path (same-day orders merged)."""
    ds = cdnow_dataset().upto(CALIBRATION_END)
    return compute_features(ds, CALIBRATION_END)


@pytest.fixture(scope="module")
def features():  # type: ignore[no-untyped-def]
    return cdnow_features()


def close(value: float, published: float) -> bool:
    return abs(value - published) <= 0.01 * abs(published)


def test_bgnbd_reproduces_fader_hardie_lee(features) -> None:  # type: ignore[no-untyped-def]
    x, t_x, T = features.bgnbd_inputs()
    assert len(x) == 2357
    params = clv.fit_bgnbd(x, t_x, T)
    assert close(params.r, 0.243)
    assert close(params.alpha, 4.414)
    assert close(params.a, 0.793)
    assert close(params.b, 2.426)
    assert close(params.log_likelihood, -9582.4)
    assert params.time_unit == "week"


def test_gamma_gamma_reproduces_fader_hardie(features) -> None:  # type: ignore[no-untyped-def]
    x, _, _ = features.bgnbd_inputs()
    m = features.repeat_value[features.has_orders]
    assert int((x > 0).sum()) == 946
    params = clv.fit_gamma_gamma(x, m)
    assert close(params.p, 6.25)
    assert close(params.q, 3.74)
    assert close(params.gamma, 15.44)


def test_mbgnbd_reproduces_btydplus(features) -> None:  # type: ignore[no-untyped-def]
    # BTYDplus (Platzer) on the same 2,357 customers: r 0.525, alpha 6.183, a 0.891, b 1.614.
    x, t_x, T = features.bgnbd_inputs()
    params = clv.fit_mbgnbd(x, t_x, T)
    assert close(params.r, 0.525)
    assert close(params.alpha, 6.183)
    assert close(params.a, 0.891)
    assert close(params.b, 1.614)
    # Its log-likelihood is BG/NBD's neighbour (one more way to drop out, same data).
    assert abs(params.log_likelihood - -9582.4) < 5
    # Hardie's worked customer again: lifetimes checks MBG/NBD against 1.226 within 0.05.
    value = clv.expected_purchases(
        params, 39, np.array([2.0]), np.array([30.43]), np.array([38.86])
    )
    assert value[0] == pytest.approx(1.226, abs=0.05)


def test_mbgnbd_lets_one_time_buyers_go_quiet() -> None:
    params = clv.MbgNbdParams(0.525, 6.183, 0.891, 1.614, 0.0)
    alive = clv.p_alive(params, np.zeros(2), np.zeros(2), np.array([2.0, 60.0]))
    assert 0 < alive[1] < alive[0] < 1  # BG/NBD would say 1.0 for both
    bg = clv.BgNbdParams(0.243, 4.414, 0.793, 2.426, 0.0)
    assert list(clv.p_alive(bg, np.zeros(2), np.zeros(2), np.array([2.0, 60.0]))) == [1.0, 1.0]


def regular_store() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """400 customers each ordering at a fixed gap: no spread in how soon anyone drops out."""
    rng = np.random.default_rng(5)
    x, t_x, T = [], [], []
    for _ in range(400):
        start, n, gap = (
            int(rng.integers(200, 700)),
            int(rng.integers(1, 8)),
            int(rng.integers(10, 60)),
        )
        days = sorted({max(start - k * gap, 0) for k in range(n)}, reverse=True)
        x.append(len(days) - 1)
        t_x.append((days[0] - days[-1]) / 7)
        T.append(days[0] / 7)
    return np.array(x, float), np.array(t_x), np.array(T)


def test_a_ridge_to_one_shared_dropout_rate_is_an_answer_not_a_failure() -> None:
    # Under scipy 1.17 the unbounded search ran off along a -> inf, b -> inf and stopped on
    # NaN. Bounded, it stops at the edge where everyone drops out with the same probability.
    x, t_x, T = regular_store()
    params = clv.fit_bgnbd(x, t_x, T)
    assert params.a >= clv.SPIKE and params.b >= clv.SPIKE
    assert 0.05 < params.a / (params.a + params.b) < 0.95
    expected = clv.expected_purchases(params, 90 / 7, x, t_x, T)
    assert np.all(np.isfinite(expected)) and expected.max() > 0.5
    # Nudging the spike's width changes nothing that matters: the edge is a limit, not noise.
    wider = clv.BgNbdParams(params.r, params.alpha, params.a / 10, params.b / 10, 0.0)
    assert clv.expected_purchases(wider, 90 / 7, x, t_x, T) == pytest.approx(expected, rel=0.05)


def nobody_leaves(n: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Customers buying at Poisson rates for their whole history: nobody ever drops out."""
    rng = np.random.default_rng(1)
    T = rng.uniform(20, 80, n)
    x = rng.poisson(rng.gamma(1.0, 0.1, n) * T).astype(float)
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), 1), 0.0)  # the last of x uniform times
    return x, t_x, T


@pytest.mark.parametrize("fit", [clv.fit_bgnbd, clv.fit_mbgnbd])
def test_nobody_ever_leaving_is_refused_with_a_reason(fit) -> None:  # type: ignore[no-untyped-def]
    # The wholesale store: dropout ~0 made everyone "100% likely active".
    with pytest.raises(clv.DegenerateFit) as refused:
        fit(*nobody_leaves())
    assert "almost nobody ever stops buying" in refused.value.reason
    assert "every customer would look active" in str(refused.value)


@pytest.mark.parametrize(
    ("fit", "reason"),
    [
        (clv.fit_bgnbd, "purchase rates collapsed to zero"),
        (clv.fit_mbgnbd, "almost everyone stops buying after each order"),
    ],
)
def test_no_repeat_customers_are_refused(fit, reason: str) -> None:  # type: ignore[no-untyped-def]
    zeros = np.zeros(100)
    with pytest.raises(clv.DegenerateFit) as refused:
        fit(zeros, zeros, np.linspace(5, 50, 100))
    assert reason in refused.value.reason


def test_a_likelihood_that_is_nowhere_a_number_does_not_converge() -> None:
    with pytest.raises(clv.DegenerateFit) as refused:
        clv.fit_bgnbd(np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([np.nan, np.nan]))
    assert refused.value.reason == "the fit did not converge"
    assert refused.value.model == "BG/NBD"


def test_gamma_gamma_refuses_constant_spend_and_a_single_repeater() -> None:
    # The store where every repeat order had one value: p = 3.4e22, q = 2.4e29 before.
    with pytest.raises(clv.DegenerateFit) as refused:
        clv.fit_gamma_gamma(np.array([1.0, 2.0, 3.0, 2.0]), np.array([25.0, 25.0, 25.0, 25.05]))
    assert "the same value" in refused.value.reason
    with pytest.raises(clv.DegenerateFit) as refused:
        clv.fit_gamma_gamma(np.array([3.0, 0.0, 0.0]), np.array([40.0, 0.0, 0.0]))
    assert "fewer than two repeat customers" in refused.value.reason


def test_gamma_gamma_means_the_same_in_every_currency(features) -> None:  # type: ignore[no-untyped-def]
    x, _, _ = features.bgnbd_inputs()
    m = features.repeat_value[features.has_orders]
    dollars = clv.fit_gamma_gamma(x, m)
    won = clv.fit_gamma_gamma(x, m * 1400)
    assert won.p == pytest.approx(dollars.p, rel=1e-4)
    assert won.q == pytest.approx(dollars.q, rel=1e-4)
    assert won.gamma == pytest.approx(dollars.gamma * 1400, rel=1e-4)
    # The density of an amount 1,400 times larger is 1,400 times thinner, per customer.
    repeaters = int((x > 0).sum())
    assert won.log_likelihood == pytest.approx(
        dollars.log_likelihood - repeaters * np.log(1400), rel=1e-6
    )


def test_conditional_expectation_matches_the_paper() -> None:
    # The paper's worked example: x = 2, t_x = 30.43, T = 38.86 expects 1.226 purchases in
    # the next 39 weeks under the published parameters.
    params = clv.BgNbdParams(0.243, 4.414, 0.793, 2.426, -9582.4)
    value = clv.expected_purchases(
        params, 39, np.array([2.0]), np.array([30.43]), np.array([38.86])
    )
    assert value[0] == pytest.approx(1.226, abs=0.005)
    alive = clv.p_alive(
        params, np.array([0.0, 2.0]), np.array([0.0, 30.43]), np.array([38.86, 38.86])
    )
    assert alive[0] == 1.0  # no repeat purchase: the model cannot have seen a dropout
    assert 0 < alive[1] < 1


def test_log_likelihood_is_stable_for_long_histories() -> None:
    params = (0.243, 4.414, 0.793, 2.426)
    x = np.array([0.0, 500.0, 2000.0])
    ll = clv.bgnbd_log_likelihood(
        params, x, np.array([0.0, 5000.0, 9000.0]), np.array([10000.0] * 3)
    )
    assert np.isfinite(ll)


def test_expected_order_value_falls_back_to_population_mean() -> None:
    params = clv.GammaGammaParams(6.25, 3.74, 15.44, 0.0)
    value = clv.expected_order_value(params, np.array([0.0, 3.0]), np.array([0.0, 40.0]), 0.0)
    assert value[0] == pytest.approx(6.25 * 15.44 / 2.74)
    assert 35.0 < value[1] < value[0] or value[0] < value[1] < 40.0
