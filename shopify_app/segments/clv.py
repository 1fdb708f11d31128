"""Buy-till-you-die models: BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma (Fader & Hardie 2013).

Both are fitted by maximum likelihood over log-parameters with scipy, on the classic summary of
each customer's history: ``x`` repeat purchase occasions (same-day orders merged into one
occasion, the first occasion not counted), ``t_x`` the time of the last occasion and ``T`` the
time since the first, both measured from the first occasion, and ``m`` the mean value of the
repeat occasions. Time is in weeks (days / 7): well conditioned, and the unit the papers use.

The BG/NBD log-likelihood is evaluated in log space (Hardie's note 004, section 7): the two
terms of the likelihood are combined with ``logaddexp`` so customers with long histories do not
underflow. Identical summaries are collapsed to one row with a weight, which makes a fit over
hundreds of thousands of customers cost about as much as one over a few thousand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import digamma, gammaln, hyp2f1

FloatArray = NDArray[np.float64]

# Below these the fitted parameters are noise: the output says the model fell back.
MIN_CUSTOMERS = 50
MIN_REPEAT_CUSTOMERS = 10
MIN_HISTORY_DAYS = 90
MAX_FIT_CUSTOMERS = 50_000  # larger shops are fitted on a fixed-seed random sample


@dataclass(frozen=True)
class BgNbdParams:
    """Fitted BG/NBD parameters; ``time_unit`` is the unit ``alpha`` is expressed in."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    time_unit: str = "week"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (also stored in the shop's cached statistics)."""
        return {
            "r": self.r,
            "alpha": self.alpha,
            "a": self.a,
            "b": self.b,
            "log_likelihood": self.log_likelihood,
            "time_unit": self.time_unit,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BgNbdParams:
        """Inverse of :meth:`to_dict`."""
        return cls(
            r=float(data["r"]),
            alpha=float(data["alpha"]),
            a=float(data["a"]),
            b=float(data["b"]),
            log_likelihood=float(data.get("log_likelihood", math.nan)),
            time_unit=str(data.get("time_unit", "week")),
        )


@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters (``gamma`` is Fader & Hardie's nu / lifetimes' ``v``)."""

    p: float
    q: float
    gamma: float
    log_likelihood: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "p": self.p,
            "q": self.q,
            "gamma": self.gamma,
            "log_likelihood": self.log_likelihood,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GammaGammaParams:
        """Inverse of :meth:`to_dict`."""
        return cls(
            p=float(data["p"]),
            q=float(data["q"]),
            gamma=float(data["gamma"]),
            log_likelihood=float(data.get("log_likelihood", math.nan)),
        )


def _collapse(*columns: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """Unique rows of the given columns and how often each occurs."""
    stacked = np.column_stack(columns)
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, i] for i in range(unique.shape[1])], counts.astype(np.float64)


def _minimize(objective: Any, start: FloatArray) -> Any:
    """L-BFGS-B with tight tolerances; Nelder-Mead polishes when it stops early.

    ``objective`` returns the value and its gradient. Quasi-Newton on the log-parameters needs
    a few dozen likelihood evaluations where a simplex needs a thousand.
    """
    options = {"ftol": 1e-13, "gtol": 1e-9, "maxiter": 1000}
    # Line-search probes can step where a parameter under- or overflows; the objective then
    # returns a huge value and the step is rejected, so numpy's warnings are only noise.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _minimize_quietly(objective, start, options)


def _minimize_quietly(objective: Any, start: FloatArray, options: dict[str, Any]) -> Any:
    result = minimize(objective, start, method="L-BFGS-B", jac=True, options=options)
    jac = getattr(result, "jac", None)
    stalled = jac is None or not np.all(np.isfinite(jac)) or float(np.max(np.abs(jac))) > 1e-4
    # A line-search stop at the optimum reports failure though the gradient is flat: polish
    # only when the gradient says we are not there.
    if not math.isfinite(float(result.fun)) or (not result.success and stalled):
        result = minimize(
            lambda v: objective(v)[0],
            result.x,
            method="Nelder-Mead",
            options={"maxiter": 4000, "fatol": 1e-12},
        )
    return result


def bgnbd_log_likelihood(
    params: tuple[float, float, float, float],
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    weights: FloatArray | None = None,
) -> float:
    """Total BG/NBD log-likelihood of the data under ``(r, alpha, a, b)``."""
    r, alpha, a, b = params
    w = np.ones_like(x) if weights is None else weights
    return float(np.sum(w * _bgnbd_ll_terms(r, alpha, a, b, x, t_x, T)))


def _bgnbd_ll_terms(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    # The second term exists only for customers with a repeat purchase; guard b + x - 1 > 0.
    a4 = np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x)
    a4 = np.where(x > 0, a4, -np.inf)
    return np.asarray(a1 + a2 + np.logaddexp(a3, a4), dtype=np.float64)


def fit_bgnbd(
    x: FloatArray, t_x: FloatArray, T: FloatArray, time_unit: str = "week"
) -> BgNbdParams:
    """Maximum-likelihood BG/NBD fit; raises ``ValueError`` when the optimiser fails."""
    (ux, utx, uT), w = _collapse(
        np.asarray(x, np.float64), np.asarray(t_x, np.float64), np.asarray(T, np.float64)
    )
    total = w.sum()

    has_repeat = ux > 0
    xm1 = np.maximum(ux, 1) - 1

    def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
        # The log-likelihood and its analytic gradient (with respect to the log-parameters):
        # a quarter of the evaluations finite differences would need.
        r, alpha, a, b = np.exp(log_params)
        a1 = gammaln(r + ux) - gammaln(r) + r * np.log(alpha)
        a2 = gammaln(a + b) + gammaln(b + ux) - gammaln(b) - gammaln(a + b + ux)
        log_aT = np.log(alpha + uT)
        log_atx = np.log(alpha + utx)
        a3 = -(r + ux) * log_aT
        a4 = np.where(has_repeat, np.log(a) - np.log(b + xm1) - (r + ux) * log_atx, -np.inf)
        mix = np.logaddexp(a3, a4)
        w3 = np.exp(a3 - mix)
        w4 = np.exp(a4 - mix)
        value = -float(np.sum(w * (a1 + a2 + mix))) / total
        if not math.isfinite(value):
            return 1e300, np.zeros(4)
        d_r = digamma(r + ux) - digamma(r) + np.log(alpha) - w3 * log_aT - w4 * log_atx
        d_alpha = r / alpha - (r + ux) * (w3 / (alpha + uT) + w4 / (alpha + utx))
        d_a = digamma(a + b) - digamma(a + b + ux) + w4 / a
        d_b = (
            digamma(a + b) + digamma(b + ux) - digamma(b) - digamma(a + b + ux)
            - w4 / (b + xm1)
        )  # fmt: skip
        grad = np.array([np.sum(w * d) for d in (d_r, d_alpha, d_a, d_b)]) * np.array(
            [r, alpha, a, b]
        )
        return value, -grad / total

    scale = max(float(np.mean(uT)), 1e-3)
    start = np.log(np.array([1.0, scale, 1.0, 1.0]))
    result = _minimize(objective, start)
    r, alpha, a, b = (float(v) for v in np.exp(result.x))
    ll = float(-float(result.fun) * total)
    if not all(math.isfinite(v) for v in (r, alpha, a, b, ll)):
        raise ValueError("BG/NBD fit did not converge")
    return BgNbdParams(r=r, alpha=alpha, a=a, b=b, log_likelihood=ll, time_unit=time_unit)


def p_alive(params: BgNbdParams, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    """Probability each customer is still active at ``T``."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x = np.asarray(x, np.float64)
    log_ratio = (
        np.log(a)
        - np.log(b + np.maximum(x, 1) - 1)
        + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    )
    odds = np.where(x > 0, np.exp(np.minimum(log_ratio, 700.0)), 0.0)
    return np.asarray(1.0 / (1.0 + odds), dtype=np.float64)


def expected_purchases(
    params: BgNbdParams, t: float, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    """Expected purchase occasions in the next ``t`` time units, given each history."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x = np.asarray(x, np.float64)
    z = t / (alpha + T + t)
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
    first = (a + b + x - 1) / (a - 1) if abs(a - 1) > 1e-9 else np.full_like(x, np.inf)
    bracket = 1.0 - np.power((alpha + T) / (alpha + T + t), r + x) * hyp
    numerator = first * bracket
    alive = p_alive(params, x, t_x, T)
    # p_alive = 1 / (1 + odds), so dividing by (1 + odds) is multiplying by p_alive.
    value = numerator * alive
    return np.asarray(np.where(np.isfinite(value) & (value >= 0), value, 0.0), dtype=np.float64)


def _gg_ll_terms(p: float, q: float, g: float, x: FloatArray, m: FloatArray) -> FloatArray:
    px = p * x
    return np.asarray(
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(g)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + g),
        dtype=np.float64,
    )


def fit_gamma_gamma(x: FloatArray, m: FloatArray) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma fit on repeat customers (``x > 0``, ``m > 0``)."""
    x = np.asarray(x, np.float64)
    m = np.asarray(m, np.float64)
    keep = (x > 0) & (m > 0)
    (ux, um), w = _collapse(x[keep], m[keep])
    if w.sum() == 0:
        raise ValueError("no repeat customers with positive spend")
    total = w.sum()

    log_m = np.log(um)
    log_x = np.log(ux)

    def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
        p, q, g = np.exp(log_params)
        value = -float(np.sum(w * _gg_ll_terms(p, q, g, ux, um))) / total
        if not math.isfinite(value):
            return 1e300, np.zeros(3)
        px = p * ux
        log_xmg = np.log(ux * um + g)
        d_p = ux * (digamma(px + q) - digamma(px) + log_m + log_x - log_xmg)
        d_q = digamma(px + q) - digamma(q) + np.log(g) - log_xmg
        d_g = q / g - (px + q) / (ux * um + g)
        grad = np.array([np.sum(w * d) for d in (d_p, d_q, d_g)]) * np.array([p, q, g])
        return value, -grad / total

    start = np.log(np.array([1.0, 1.0, max(float(np.mean(um)), 1e-3)]))
    result = _minimize(objective, start)
    p, q, g = (float(v) for v in np.exp(result.x))
    ll = float(-float(result.fun) * total)
    if not all(math.isfinite(v) for v in (p, q, g, ll)):
        raise ValueError("Gamma-Gamma fit did not converge")
    return GammaGammaParams(p=p, q=q, gamma=g, log_likelihood=ll)


def expected_order_value(
    params: GammaGammaParams, x: FloatArray, m: FloatArray, fallback: float
) -> FloatArray:
    """Expected value of a future order: the Gamma-Gamma posterior mean (``fallback`` if x = 0).

    With no repeat purchases the posterior is the population mean ``p * gamma / (q - 1)``.
    """
    p, q, g = params.p, params.q, params.gamma
    x = np.asarray(x, np.float64)
    m = np.asarray(m, np.float64)
    population = p * g / (q - 1) if q > 1 else fallback
    value = (g + x * m) * p / (p * x + q - 1)
    return np.asarray(np.where((x > 0) & np.isfinite(value), value, population), dtype=np.float64)
