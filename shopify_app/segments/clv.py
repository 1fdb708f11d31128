"""Buy-till-you-die models: BG/NBD (Fader, Hardie & Lee 2005), MBG/NBD (Batislam, Denizel &
Filiztekin 2007) and Gamma-Gamma (Fader & Hardie 2013).

Pareto/NBD was tried as a third candidate and left out: its likelihood needs Gauss's
hypergeometric function at parameters where scipy's takes minutes and loses its digits (a
400-customer store took 213 s and did not converge), and MBG/NBD already answers the question
Pareto/NBD would add: may a one-time buyer have left?

All are fitted by maximum likelihood over log-parameters with scipy, on the classic summary of
each customer's history: ``x`` repeat purchase occasions (same-day orders merged into one
occasion, the first occasion not counted), ``t_x`` the time of the last occasion and ``T`` the
time since the first, both measured from the first occasion, and ``m`` the mean value of the
repeat occasions. Time is in weeks (days / 7): well conditioned, and the unit the papers use.

The log-likelihoods are evaluated in log space (Hardie's note 004, section 7): the terms of each
likelihood are combined with ``logaddexp`` so customers with long histories do not underflow.
Identical summaries are collapsed to one row with a weight, which makes a fit over hundreds of
thousands of customers cost about as much as one over a few thousand.

A fit that cannot be trusted raises :class:`DegenerateFit` with the reason in plain words, and
the caller falls back (see :mod:`shopify_app.segments.backtest`). Untrustworthy means: the
optimiser did not reach a flat gradient; the log-likelihood is not finite, or is positive
where it is a log-probability; a shape parameter collapsed towards zero (``a`` in the BG/NBD
family: "nobody ever stops buying", which makes every customer look active); or a parameter
ran to the edge of its range. The one edge that is a real answer is both parameters of a pair
running off together (``a`` and ``b``, ``r`` and ``alpha``, ``p`` and ``q``): the mixing
distribution has become a spike, everyone shares one rate, and the fit stays on the edge at
that rate. Gamma-Gamma is refused outright when the
repeat spend barely varies: its parameters then run to infinity and mean nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
MAX_FIT_CUSTOMERS = 50_000  # larger shops are fitted on a fixed-seed random sample

# Every parameter is searched within [1e-6, 1e5] (weeks for time scales; Gamma-Gamma's scale
# relative to the average repeat spend). Beyond either end the likelihood is flat or the
# arithmetic loses its digits.
LOG_LOWER = math.log(1e-6)
LOG_UPPER = math.log(1e5)
# A shape below this means the mixing distribution piled up at zero (lifetimes and BTYD treat
# such fits as failures too).
MIN_SHAPE = 1e-4
# Both parameters of a pair above this: the mixing distribution is a spike (every customer has
# the same rate), a real answer rather than a runaway.
SPIKE = 1e3
# The optimiser has converged when no log-parameter moves the mean log-likelihood per customer
# by more than this per unit.
GRADIENT_TOLERANCE = 1e-4
# Repeat spend whose coefficient of variation is below this gives Gamma-Gamma nothing to fit.
MIN_SPEND_VARIATION = 0.01


class DegenerateFit(ValueError):
    """A fit that cannot be trusted; ``reason`` says why in words a merchant can read."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"{model}: {reason}")
        self.model = model
        self.reason = reason


@dataclass(frozen=True)
class _BetaGeometricParams:
    """Parameters of the BG/NBD family: purchase rates Gamma(``r``, ``alpha``), dropout Beta(``a``,
    ``b``); ``time_unit`` is the unit ``alpha`` is expressed in."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    time_unit: str = "week"

    # 0: a customer can drop out only after a repeat purchase (BG/NBD); 1: also right after the
    # first one (MBG/NBD), so a one-time buyer's chance of being active falls with time.
    shift = 0

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
    def from_dict(cls, data: dict[str, Any]) -> Any:
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
class BgNbdParams(_BetaGeometricParams):
    """Fitted BG/NBD parameters."""


@dataclass(frozen=True)
class MbgNbdParams(_BetaGeometricParams):
    """Fitted MBG/NBD parameters (same meaning as BG/NBD's)."""

    shift = 1


CountParams = BgNbdParams | MbgNbdParams


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


# ---------------------------------------------------------------- fitting and its checks

Objective = Callable[[FloatArray], tuple[float, FloatArray]]

# What an objective returns where the likelihood is not finite: the line search backs off.
_INVALID = 1e300


def _projected_gradient(grad: FloatArray, point: FloatArray) -> float:
    """The largest gradient component that could still move ``point`` inside the bounds."""
    at_lower = (point <= LOG_LOWER + 1e-9) & (grad > 0)
    at_upper = (point >= LOG_UPPER - 1e-9) & (grad < 0)
    free = np.where(at_lower | at_upper, 0.0, grad)
    return float(np.max(np.abs(free))) if np.all(np.isfinite(free)) else math.inf


def _minimize(model: str, objective: Objective, start: FloatArray) -> tuple[FloatArray, float]:
    """Minimise ``objective`` (mean negative log-likelihood and its gradient over the
    log-parameters) within the bounds; returns the point and the value there.

    Convergence is judged by the projected gradient, not by the optimiser's status: a line
    search that cannot improve the last digit reports failure at a perfectly good optimum,
    and an optimiser that strayed onto a non-finite value can report success. L-BFGS-B goes
    first (a few dozen evaluations); a fresh restart and then a bounded Nelder-Mead polish
    only when the gradient says it is not there yet. Raises :class:`DegenerateFit` when no
    stage gets there.
    """
    bounds = [(LOG_LOWER, LOG_UPPER)] * len(start)
    options = {"ftol": 1e-14, "gtol": 1e-10, "maxiter": 2000}
    point = np.clip(start, LOG_LOWER, LOG_UPPER)
    # Probes near a bound can under- or overflow; the objective then returns a huge value
    # and the step is rejected, so numpy's warnings are only noise.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        for stage in ("quasi-newton", "restart", "simplex"):
            if stage == "simplex":
                result = minimize(
                    lambda v: objective(v)[0],
                    point,
                    method="Nelder-Mead",
                    bounds=bounds,
                    options={"maxiter": 8000, "fatol": 1e-14, "xatol": 1e-10},
                )
            else:
                result = minimize(
                    objective, point, method="L-BFGS-B", jac=True, bounds=bounds, options=options
                )
            if np.all(np.isfinite(result.x)):
                point = np.asarray(result.x, dtype=np.float64)
            value, grad = objective(point)
            if value >= _INVALID:
                break  # nowhere a number: nothing for a later stage to polish
            if _projected_gradient(grad, point) <= GRADIENT_TOLERANCE:
                return point, value
    raise DegenerateFit(model, "the fit did not converge")


def _check(model: str, values: dict[str, float], pairs: list[tuple[str, str]]) -> None:
    """Refuse parameters at the edge of their range unless their pair ran off together."""
    for name, value in values.items():
        if not math.isfinite(value):
            raise DegenerateFit(model, f"the fit did not converge ({name} is not a number)")
    spikes = {n for pair in pairs if all(values[n] >= SPIKE for n in pair) for n in pair}
    for name, value in values.items():
        log_value = math.log(value)
        near_edge = log_value <= LOG_LOWER + 0.01 or log_value >= LOG_UPPER - 0.01
        if near_edge and name not in spikes:
            raise DegenerateFit(
                model,
                f"{name} = {value:.3g} ran to the edge of its range: the order history cannot "
                "pin the model down",
            )


# ---------------------------------------------------------------- the BG/NBD family


def bgnbd_log_likelihood(
    params: tuple[float, float, float, float],
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    weights: FloatArray | None = None,
    shift: int = 0,
) -> float:
    """Total BG/NBD (``shift=1``: MBG/NBD) log-likelihood of the data under ``(r, alpha, a, b)``."""
    r, alpha, a, b = params
    w = np.ones_like(x) if weights is None else weights
    return float(np.sum(w * _bg_ll_terms(r, alpha, a, b, x, t_x, T, shift)))


def _bg_parts(
    r: float,
    alpha: float,
    a: float,
    b: float,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    shift: int,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The likelihood as ``head + logaddexp(still_active, dropped)`` per customer.

    ``dropped`` (dropped out right after the last purchase) exists in BG/NBD only after a
    repeat purchase, in MBG/NBD for everyone.
    """
    head = (
        gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        + gammaln(a + b) + gammaln(b + x + shift) - gammaln(b) - gammaln(a + b + x + shift)
    )  # fmt: skip
    still_active = -(r + x) * np.log(alpha + T)
    # max() keeps BG/NBD's b + x - 1 positive where the term is masked out anyway.
    dropped = np.log(a) - np.log(b + np.maximum(x, 1 - shift) - 1 + shift)
    dropped = np.where((x > 0) | (shift > 0), dropped - (r + x) * np.log(alpha + t_x), -np.inf)
    return head, still_active, dropped


def _bg_ll_terms(
    r: float,
    alpha: float,
    a: float,
    b: float,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    shift: int,
) -> FloatArray:
    head, still_active, dropped = _bg_parts(r, alpha, a, b, x, t_x, T, shift)
    return np.asarray(head + np.logaddexp(still_active, dropped), dtype=np.float64)


def _fit_beta_geometric(
    model: str, shift: int, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> tuple[float, float, float, float, float]:
    (ux, utx, uT), w = _collapse(
        np.asarray(x, np.float64), np.asarray(t_x, np.float64), np.asarray(T, np.float64)
    )
    total = w.sum()
    base = np.maximum(ux, 1 - shift) - 1 + shift  # b + base: the dropout term's denominator

    def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
        # The log-likelihood and its analytic gradient (with respect to the log-parameters):
        # a quarter of the evaluations finite differences would need.
        r, alpha, a, b = np.exp(log_params)
        head, a3, a4 = _bg_parts(r, alpha, a, b, ux, utx, uT, shift)
        mix = np.logaddexp(a3, a4)
        value = -float(np.sum(w * (head + mix))) / total
        if not math.isfinite(value):
            return _INVALID, np.zeros(4)
        w3 = np.exp(a3 - mix)
        w4 = np.exp(a4 - mix)
        log_aT = np.log(alpha + uT)
        log_atx = np.log(alpha + utx)
        d_r = digamma(r + ux) - digamma(r) + np.log(alpha) - w3 * log_aT - w4 * log_atx
        d_alpha = r / alpha - (r + ux) * (w3 / (alpha + uT) + w4 / (alpha + utx))
        d_a = digamma(a + b) - digamma(a + b + ux + shift) + w4 / a
        d_b = (
            digamma(a + b) + digamma(b + ux + shift) - digamma(b) - digamma(a + b + ux + shift)
            - w4 / (b + base)
        )  # fmt: skip
        grad = np.array([np.sum(w * d) for d in (d_r, d_alpha, d_a, d_b)]) * np.array(
            [r, alpha, a, b]
        )
        return value, -grad / total

    scale = max(float(np.mean(uT)), 1e-3)
    point, value = _minimize(model, objective, np.log(np.array([1.0, scale, 1.0, 1.0])))
    r, alpha, a, b = (float(v) for v in np.exp(point))
    # Without a repeat purchase a customer's likelihood is a probability: above 1 means the
    # arithmetic broke down.
    no_repeat = _bg_ll_terms(r, alpha, a, b, ux[ux == 0], utx[ux == 0], uT[ux == 0], shift)
    if len(no_repeat) and float(np.max(no_repeat)) > 1e-9:
        raise DegenerateFit(model, "the log-likelihood is not a valid probability")
    if r < MIN_SHAPE:
        raise DegenerateFit(model, f"purchase rates collapsed to zero (r = {r:.2g})")
    if a < MIN_SHAPE or a / (a + b) < MIN_SHAPE:
        raise DegenerateFit(
            model,
            f"the model says almost nobody ever stops buying (a = {a:.2g}, b = {b:.3g}), "
            "so every customer would look active",
        )
    if b < MIN_SHAPE or b / (a + b) < MIN_SHAPE:
        raise DegenerateFit(
            model,
            f"the model says almost everyone stops buying after each order (a = {a:.3g}, "
            f"b = {b:.2g}), so nobody would look active",
        )
    _check(model, {"r": r, "alpha": alpha, "a": a, "b": b}, [("r", "alpha"), ("a", "b")])
    return r, alpha, a, b, -value * total


def fit_bgnbd(
    x: FloatArray, t_x: FloatArray, T: FloatArray, time_unit: str = "week"
) -> BgNbdParams:
    """Maximum-likelihood BG/NBD fit; raises :class:`DegenerateFit` when it cannot be trusted."""
    r, alpha, a, b, ll = _fit_beta_geometric("BG/NBD", 0, x, t_x, T)
    return BgNbdParams(r=r, alpha=alpha, a=a, b=b, log_likelihood=ll, time_unit=time_unit)


def fit_mbgnbd(
    x: FloatArray, t_x: FloatArray, T: FloatArray, time_unit: str = "week"
) -> MbgNbdParams:
    """Maximum-likelihood MBG/NBD fit; raises :class:`DegenerateFit` when it cannot be trusted.

    Unlike BG/NBD, a customer may drop out right after the first purchase, so one-time
    buyers who have been silent a long time are not all "certainly active".
    """
    r, alpha, a, b, ll = _fit_beta_geometric("MBG/NBD", 1, x, t_x, T)
    return MbgNbdParams(r=r, alpha=alpha, a=a, b=b, log_likelihood=ll, time_unit=time_unit)


def _beta_geometric_p_alive(
    params: _BetaGeometricParams, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    r, alpha, a, b, shift = params.r, params.alpha, params.a, params.b, params.shift
    log_ratio = (
        np.log(a)
        - np.log(b + np.maximum(x, 1 - shift) - 1 + shift)
        + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    )
    odds = np.where((x > 0) | (shift > 0), np.exp(np.minimum(log_ratio, 700.0)), 0.0)
    return np.asarray(1.0 / (1.0 + odds), dtype=np.float64)


def _beta_geometric_expected(
    params: _BetaGeometricParams, t: float, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    r, alpha, b, shift = params.r, params.alpha, params.b, params.shift
    # The formula has a removable singularity at a = 1; the value is continuous through it.
    a = params.a if abs(params.a - 1) > 1e-7 else 1 + 1e-7
    z = t / (alpha + T + t)
    hyp = hyp2f1(r + x, b + x + shift, a + b + x - 1 + shift, z)
    first = (a + b + x - 1 + shift) / (a - 1)
    bracket = 1.0 - np.power((alpha + T) / (alpha + T + t), r + x) * hyp
    # p_alive = 1 / (1 + odds), so dividing by (1 + odds) is multiplying by p_alive.
    value = first * bracket * _beta_geometric_p_alive(params, x, t_x, T)
    return np.asarray(np.where(np.isfinite(value) & (value >= 0), value, 0.0), dtype=np.float64)


# ---------------------------------------------------------------- one entry point per question


def p_alive(params: CountParams, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    """Probability each customer is still active at ``T``."""
    return _beta_geometric_p_alive(params, np.asarray(x, np.float64), t_x, T)


def expected_purchases(
    params: CountParams, t: float, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    """Expected purchase occasions in the next ``t`` time units, given each history."""
    return _beta_geometric_expected(params, t, np.asarray(x, np.float64), t_x, T)


# ---------------------------------------------------------------- Gamma-Gamma


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
    """Maximum-likelihood Gamma-Gamma fit on repeat customers (``x > 0``, ``m > 0``).

    Raises :class:`DegenerateFit` when there is too little to learn from (fewer than two
    repeat customers, or repeat spend that barely varies: the caller uses the average order
    value instead) or the fit cannot be trusted. The fit runs on spend divided by its average,
    so the parameter bounds mean the same in every currency.
    """
    model = "Gamma-Gamma"
    x = np.asarray(x, np.float64)
    m = np.asarray(m, np.float64)
    keep = (x > 0) & (m > 0) & np.isfinite(m)
    if int(keep.sum()) < 2:
        raise DegenerateFit(model, "fewer than two repeat customers with spend to learn from")
    unit = float(np.mean(m[keep]))
    if float(np.std(m[keep])) < MIN_SPEND_VARIATION * unit:
        raise DegenerateFit(model, "repeat orders all have (almost) the same value")
    (ux, um), w = _collapse(x[keep], m[keep] / unit)
    total = w.sum()

    log_m = np.log(um)
    log_x = np.log(ux)

    def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
        p, q, g = np.exp(log_params)
        value = -float(np.sum(w * _gg_ll_terms(p, q, g, ux, um))) / total
        if not math.isfinite(value):
            return _INVALID, np.zeros(3)
        px = p * ux
        log_xmg = np.log(ux * um + g)
        d_p = ux * (digamma(px + q) - digamma(px) + log_m + log_x - log_xmg)
        d_q = digamma(px + q) - digamma(q) + np.log(g) - log_xmg
        d_g = q / g - (px + q) / (ux * um + g)
        grad = np.array([np.sum(w * d) for d in (d_p, d_q, d_g)]) * np.array([p, q, g])
        return value, -grad / total

    point, value = _minimize(model, objective, np.zeros(3))
    p, q, g = (float(v) for v in np.exp(point))
    _check(model, {"p": p, "q": q, "gamma": g}, [("p", "q")])
    if q <= 1:
        raise DegenerateFit(model, f"the average order value is undefined (q = {q:.3g} <= 1)")
    # Back in the shop's currency: the density of m scales by 1 / unit.
    ll = -value * total - total * math.log(unit)
    return GammaGammaParams(p=p, q=q, gamma=g * unit, log_likelihood=ll)


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
