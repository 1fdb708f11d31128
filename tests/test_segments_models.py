"""BG/NBD and Gamma-Gamma reproduce the published CDNOW parameters (within 1%)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from shopify_app.segments import clv
from shopify_app.segments.dataset import DatasetBuilder, compute_features, day_number

CDNOW = Path(__file__).parent / "fixtures" / "CDNOW_sample.txt"
CALIBRATION_END = dt.date(1997, 9, 30)  # end of week 39


def cdnow_features():  # type: ignore[no-untyped-def]
    """The CDNOW sample through the engine's own dataset path (same-day orders merged)."""
    builder = DatasetBuilder()
    for n, line in enumerate(CDNOW.read_text().splitlines()):
        cid, _, ymd, _cds, amount = line.split()
        index = builder.add_customer(int(cid))
        day = day_number(dt.date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:])))
        builder.add_order(index, n + 1, day, float(amount))
    ds = builder.build().upto(CALIBRATION_END)
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
