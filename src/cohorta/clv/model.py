"""The BG/NBD purchase model and the Gamma-Gamma spend model: likelihoods, fitting and closed-form predictions.

Pure numpy/scipy, no database. Notation of Fader, Hardie & Lee (2005), "Counting your customers the easy way: an
alternative to the Pareto/NBD model", Marketing Science 24(2), and Fader & Hardie (2013), "The Gamma-Gamma model of
monetary value":

- ``x``: repeat purchases (purchases after the first), ``t_x``: time of the last purchase and ``T``: time of the end of
  the calibration period (now), both from the first purchase, in weeks.
- BG/NBD: while alive, a customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha); after each purchase
  they drop out with probability p ~ Beta(a, b).
- Gamma-Gamma: the values of one customer's transactions are Gamma(p, nu), nu ~ Gamma(q, v) across customers;
  independent of the purchase process.

Maximum likelihood (scipy.optimize over the logarithms of the parameters) is the maximum a posteriori estimate with
flat priors: pymc-marketing's ``method="map"`` with ``HalfFlat`` priors maximises the same function
(see ``fit_with_pymc_marketing`` and docs/design.md).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

FloatArray = npt.NDArray[np.float64]
DAYS_PER_WEEK = 7.0


class FitError(ValueError):
    """The data cannot support a fit (too few customers or repeat buyers) or the optimiser did not converge."""


@dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    v: float


@dataclass(frozen=True)
class Fitted:
    purchases: BgNbd
    spend: GammaGamma
    purchases_log_likelihood: float
    spend_log_likelihood: float
    method: str
    library: str

    def params(self) -> dict[str, dict[str, float]]:
        return {"bgnbd": asdict(self.purchases), "gamma_gamma": asdict(self.spend)}


# --- likelihoods --------------------------------------------------------------------------------------------------


def bgnbd_log_likelihood(params: BgNbd, x: FloatArray, t_x: FloatArray, big_t: FloatArray) -> FloatArray:
    """Each customer's log-likelihood (FHL 2005, equation 6), summed in log space so heavy buyers do not overflow."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    common += special.betaln(a, b + x) - special.betaln(a, b)
    still_alive = -(r + x) * np.log(alpha + big_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        dropped = np.log(a) - np.log(b + x - 1) - (r + x) * np.log(alpha + t_x)
    dropped = np.where(x > 0, dropped, -np.inf)
    return np.asarray(common + np.logaddexp(still_alive, dropped), dtype=np.float64)


def gamma_gamma_log_likelihood(params: GammaGamma, x: FloatArray, mean: FloatArray) -> FloatArray:
    """Each customer's log-likelihood of the mean ``mean`` of ``x`` transaction values (Fader & Hardie 2013)."""
    p, q, v = params.p, params.q, params.v
    px = p * x
    return np.asarray(
        special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q) + q * np.log(v)
        + (px - 1) * np.log(mean) + px * np.log(x) - (px + q) * np.log(x * mean + v),
        dtype=np.float64,
    )  # fmt: skip


# Bounds of the search, on the logarithm of each parameter. A fit at an upper bound means the data show no
# heterogeneity in that process (every customer's spend drawn from one distribution, or one dropout probability for
# all): the likelihood keeps rising towards a limit where the prediction is the population's, which the bounded fit
# approaches while keeping the closed forms finite. BG/NBD's a and b stop at e^5 (about 148): beyond it the
# hypergeometric term of the expected purchases leaves floating point for recent customers. ``at_bounds`` names
# the parameters that ended at a bound; the stored model's data lists them.
WIDE = (-10.0, 10.0)
BGNBD_BOUNDS = {"r": WIDE, "alpha": WIDE, "a": (-10.0, 5.0), "b": (-10.0, 5.0)}
GAMMA_GAMMA_BOUNDS = {"p": WIDE, "q": WIDE, "v": (-10.0, 20.0)}


def _maximise(
    negative: Callable[[FloatArray], float], start: FloatArray, bounds: list[tuple[float, float]], what: str
) -> tuple[FloatArray, float]:
    """Minimise over log-parameters within the bounds: L-BFGS-B from ``start``; Nelder-Mead from there when it
    stops short, then L-BFGS-B again to polish."""
    tight = {"maxiter": 5_000, "ftol": 1e-15, "gtol": 1e-9}
    best = optimize.minimize(negative, start, method="L-BFGS-B", bounds=bounds, options=tight)
    if not best.success:
        simplex = optimize.minimize(negative, best.x, method="Nelder-Mead", bounds=bounds,
                                    options={"maxiter": 4_000, "xatol": 1e-8, "fatol": 1e-8})  # fmt: skip
        polished = optimize.minimize(negative, simplex.x, method="L-BFGS-B", bounds=bounds, options=tight)
        best = min((best, simplex, polished), key=lambda result: float(result.fun))
    if not np.all(np.isfinite(best.x)) or not np.isfinite(best.fun) or best.fun >= 1e300:
        raise FitError(f"the {what} fit did not converge")
    return np.exp(best.x), -float(best.fun)


def at_bounds(values: dict[str, float], bounds: dict[str, tuple[float, float]]) -> list[str]:
    """The parameters that ended at a search bound."""
    return [name for name, value in values.items() if min(abs(np.log(value) - edge) for edge in bounds[name]) < 1e-3]


def fit_bgnbd(x: FloatArray, t_x: FloatArray, big_t: FloatArray) -> tuple[BgNbd, float]:
    """Maximum-likelihood BG/NBD parameters and the total log-likelihood."""
    x, t_x, big_t = (np.asarray(v, dtype=np.float64) for v in (x, t_x, big_t))
    if len(x) < 10 or int(np.count_nonzero(x > 0)) < 3:
        raise FitError("fitting needs at least 10 customers with a purchase, 3 of them with a repeat purchase")
    scale = float(np.mean(big_t)) or 1.0  # start alpha at the typical observation length

    def negative(log_params: FloatArray) -> float:
        r, alpha, a, b = np.exp(log_params)
        value = -float(np.sum(bgnbd_log_likelihood(BgNbd(r, alpha, a, b), x, t_x, big_t)))
        return value if np.isfinite(value) else 1e300

    start = np.log([1.0, scale, 1.0, 1.0])
    values, log_likelihood = _maximise(negative, start, list(BGNBD_BOUNDS.values()), "BG/NBD")
    return BgNbd(*map(float, values)), log_likelihood


def fit_gamma_gamma(x: FloatArray, mean: FloatArray) -> tuple[GammaGamma, float]:
    """Maximum-likelihood Gamma-Gamma parameters from customers with at least one transaction value (x > 0)."""
    x, mean = np.asarray(x, dtype=np.float64), np.asarray(mean, dtype=np.float64)
    keep = (x > 0) & (mean > 0)
    x, mean = x[keep], mean[keep]
    if len(x) < 3:
        raise FitError("the spend model needs at least 3 customers with a repeat purchase")
    typical = float(np.mean(mean))

    def negative(log_params: FloatArray) -> float:
        p, q, v = np.exp(log_params)
        value = -float(np.sum(gamma_gamma_log_likelihood(GammaGamma(p, q, v), x, mean)))
        return value if np.isfinite(value) else 1e300

    start = np.log([1.0, 2.0, typical])
    values, log_likelihood = _maximise(negative, start, list(GAMMA_GAMMA_BOUNDS.values()), "Gamma-Gamma")
    return GammaGamma(*map(float, values)), log_likelihood


# --- predictions --------------------------------------------------------------------------------------------------


def expected_purchases(params: BgNbd, t: float, x: FloatArray, t_x: FloatArray, big_t: FloatArray) -> FloatArray:
    """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` (FHL 2005, equation 10).

    The Gaussian hypergeometric term is taken through Euler's transformation,
    (1 - z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z) = (1 - z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), z = t / (alpha+T+t),
    so that neither factor overflows for customers with hundreds of purchases."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, big_t = (np.asarray(v, dtype=np.float64) for v in (x, t_x, big_t))
    z = t / (alpha + big_t + t)
    tail = (1.0 - z) ** (a - 1.0) * special.hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)
    alive_part = (a + b + x - 1.0) / (a - 1.0) * (1.0 - tail)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        log_odds = np.log(a) - np.log(b + x - 1.0) + (r + x) * (np.log(alpha + big_t) - np.log(alpha + t_x))
        dropped = np.where(x > 0, np.exp(np.minimum(log_odds, 700.0)), 0.0)
    return np.asarray(alive_part / (1.0 + dropped), dtype=np.float64)


def probability_alive(params: BgNbd, x: FloatArray, t_x: FloatArray, big_t: FloatArray) -> FloatArray:
    """P(alive | x, t_x, T) (FHL 2005, appendix): 1 for customers with no repeat purchase."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        log_odds = np.log(a) - np.log(b + x - 1.0) + (r + x) * (np.log(alpha + big_t) - np.log(alpha + t_x))
        dropped = np.where(x > 0, np.exp(np.minimum(log_odds, 700.0)), 0.0)
    return np.asarray(1.0 / (1.0 + dropped), dtype=np.float64)


def expected_spend(params: GammaGamma, x: FloatArray, mean: FloatArray) -> FloatArray:
    """E[Z | x, mean]: a customer's expected transaction value, a weighted average of the population mean
    v p / (q - 1) and their own mean of ``x`` transactions (x = 0: the population mean)."""
    p, q, v = params.p, params.q, params.v
    x, mean = np.asarray(x, dtype=np.float64), np.asarray(mean, dtype=np.float64)
    own = np.where(x > 0, mean, 0.0)
    return np.asarray(p * (v + x * own) / (p * x + q - 1.0), dtype=np.float64)


# --- pymc-marketing (optional extra) ------------------------------------------------------------------------------

PYMC_EXTRA = "clv"


class MissingExtra(RuntimeError):
    """pymc-marketing is asked for but not installed."""

    def __init__(self) -> None:
        super().__init__(
            "fitting with pymc-marketing needs the optional extra: pip install 'cohorta[clv]' "
            "(or fit with the built-in engine, 'scipy')"
        )


def pymc_marketing_version() -> str | None:
    try:
        return importlib.metadata.version("pymc-marketing")
    except importlib.metadata.PackageNotFoundError:
        return None


def fit_with_pymc_marketing(
    x: FloatArray, t_x: FloatArray, big_t: FloatArray, spend_x: FloatArray, spend_mean: FloatArray
) -> Fitted:
    """The same fit with pymc-marketing: maximum a posteriori (``method="map"``) with flat (HalfFlat) priors."""
    if pymc_marketing_version() is None:
        raise MissingExtra()
    import pandas as pd
    from pymc_extras.prior import Prior
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    ids = np.arange(len(x))
    data = pd.DataFrame({"customer_id": ids, "frequency": x, "recency": t_x, "T": big_t})
    flat = {name: Prior("HalfFlat") for name in ("r", "alpha", "a", "b")}
    purchases = BetaGeoModel(data=data, model_config=flat)
    purchases.fit(method="map", progressbar=False)
    fitted = purchases.fit_result  # the MAP point (fit_summary would round it to 3 decimals)
    keep = (np.asarray(spend_x) > 0) & (np.asarray(spend_mean) > 0)
    spend_data = pd.DataFrame({"customer_id": np.arange(int(keep.sum())), "frequency": np.asarray(spend_x)[keep],
                               "monetary_value": np.asarray(spend_mean)[keep]})  # fmt: skip
    spend = GammaGammaModel(data=spend_data, model_config={n: Prior("HalfFlat") for n in ("p", "q", "v")})
    spend.fit(method="map", progressbar=False)
    spent = spend.fit_result
    bgnbd = BgNbd(*(float(fitted[name].values.item()) for name in ("r", "alpha", "a", "b")))
    gamma_gamma = GammaGamma(*(float(spent[name].values.item()) for name in ("p", "q", "v")))
    return Fitted(
        purchases=bgnbd,
        spend=gamma_gamma,
        purchases_log_likelihood=float(np.sum(bgnbd_log_likelihood(bgnbd, x, t_x, big_t))),
        spend_log_likelihood=float(np.sum(gamma_gamma_log_likelihood(gamma_gamma, spend_x[keep], spend_mean[keep]))),
        method="map-flat-priors",
        library=f"pymc-marketing {pymc_marketing_version()}",
    )


def fit_with_scipy(
    x: FloatArray, t_x: FloatArray, big_t: FloatArray, spend_x: FloatArray, spend_mean: FloatArray
) -> Fitted:
    purchases, purchases_ll = fit_bgnbd(x, t_x, big_t)
    spend, spend_ll = fit_gamma_gamma(spend_x, spend_mean)
    return Fitted(purchases=purchases, spend=spend, purchases_log_likelihood=purchases_ll,
                  spend_log_likelihood=spend_ll, method="maximum-likelihood",
                  library=f"scipy {importlib.metadata.version('scipy')}")  # fmt: skip


ENGINES: dict[str, Callable[..., Fitted]] = {"scipy": fit_with_scipy, "pymc-marketing": fit_with_pymc_marketing}


def fit(engine: str, **data: Any) -> Fitted:
    return ENGINES[engine](**data)
