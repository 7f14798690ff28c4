"""The BG/NBD and Gamma-Gamma maths: fitting reproduces the published CDNOW estimates; predictions match the formulas
computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import special

from cohorta.clv import model

DATA = Path(__file__).parent / "data" / "cdnow_summary.csv"


@pytest.fixture(scope="module")
def cdnow() -> dict[str, np.ndarray]:
    table = np.genfromtxt(DATA, delimiter=",", names=True)
    return {name: np.asarray(table[name], dtype=np.float64) for name in ("x", "t_x", "T", "zbar")}


@pytest.fixture(scope="module")
def fitted(cdnow: dict[str, np.ndarray]) -> model.Fitted:
    return model.fit_with_scipy(cdnow["x"], cdnow["t_x"], cdnow["T"], cdnow["x"], cdnow["zbar"])


# Published: Fader, Hardie & Lee (2005), table 1 / section 5; Fader & Hardie (2013), the Gamma-Gamma note.
# Tolerance: one unit in the last published digit.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "v": 15.44}


def test_cdnow_data_is_the_published_sample(cdnow: dict[str, np.ndarray]) -> None:
    assert len(cdnow["x"]) == 2357
    assert int(np.count_nonzero(cdnow["x"] > 0)) == 946


def test_fit_reproduces_the_published_cdnow_parameters(fitted: model.Fitted) -> None:
    for name, value in PUBLISHED_BGNBD.items():
        assert getattr(fitted.purchases, name) == pytest.approx(value, abs=0.001), name
    for name, value in PUBLISHED_GAMMA_GAMMA.items():
        assert getattr(fitted.spend, name) == pytest.approx(value, abs=0.01), name
    assert fitted.purchases_log_likelihood == pytest.approx(-9582.4, abs=0.1)


def test_expected_purchases_of_the_papers_example_customer(fitted: model.Fitted) -> None:
    # FHL 2005, section 5: a customer with x = 2, t_x = 30.43, T = 38.86 is expected to make 1.226 purchases in the
    # next 39 weeks.
    one = np.array([1.0])
    expected = model.expected_purchases(fitted.purchases, 39.0, 2 * one, 30.43 * one, 38.86 * one)
    assert expected[0] == pytest.approx(1.226, abs=0.001)


def test_expected_purchases_by_hand() -> None:
    # r = 1, alpha = 1, a = 2, b = 3; a customer with one purchase (x = 0) a week ago (T = 1); next week (t = 1).
    # E = (a+b-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^r * 2F1(r, b; a+b-1; z)], z = t/(alpha+T+t) = 1/3, and
    # 2F1(1, 3; 4; z) = sum_n 3 z^n / (n+3) = 3 z^-3 (-ln(1-z) - z - z^2/2).
    z = 1 / 3
    series = 3 * z**-3 * (-math.log(1 - z) - z - z**2 / 2)
    by_hand = 4 * (1 - (2 / 3) * series)
    assert by_hand == pytest.approx(0.41954, abs=1e-5)
    params = model.BgNbd(r=1.0, alpha=1.0, a=2.0, b=3.0)
    computed = model.expected_purchases(params, 1.0, np.array([0.0]), np.array([0.0]), np.array([1.0]))
    assert computed[0] == pytest.approx(by_hand, rel=1e-12)


def direct_expected_purchases(
    p: model.BgNbd, t: float, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
) -> np.ndarray:
    """FHL (2005) equation 10 as printed (no Euler transformation)."""
    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + big_t + t))
    head = (a + b + x - 1) / (a - 1) * (1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp)
    return head / (1 + (x > 0) * a / (b + x - 1) * ((alpha + big_t) / (alpha + t_x)) ** (r + x))


def test_euler_form_equals_the_printed_formula_and_stays_finite(fitted: model.Fitted) -> None:
    x = np.array([0.0, 1, 2, 5, 20, 60])
    t_x = np.array([0.0, 3, 30.43, 12, 38, 38.5])
    big_t = np.full(6, 38.86)
    ours = model.expected_purchases(fitted.purchases, 52.0, x, t_x, big_t)
    assert ours == pytest.approx(direct_expected_purchases(fitted.purchases, 52.0, x, t_x, big_t), rel=1e-9)
    heavy = model.expected_purchases(fitted.purchases, 52.0, np.array([2000.0, 2000]), np.array([100.0, 10]),
                                     np.array([100.0, 100]))  # fmt: skip
    assert np.all(np.isfinite(heavy)) and heavy[0] > 500 and heavy[1] == pytest.approx(0.0, abs=1e-9)


def test_probability_alive() -> None:
    params = model.BgNbd(r=1.0, alpha=1.0, a=2.0, b=3.0)
    # x = 1, t_x = 1, T = 3: 1 / (1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)) = 1 / (1 + (2/3) 2^2) = 3/11
    alive = model.probability_alive(params, np.array([0.0, 1.0]), np.array([0.0, 1.0]), np.array([3.0, 3.0]))
    assert alive == pytest.approx([1.0, 3 / 11])


def test_expected_spend_by_hand() -> None:
    params = model.GammaGamma(p=6.0, q=4.0, v=15.0)
    # x = 2 transactions averaging 20: p (v + x m) / (p x + q - 1) = 6 (15 + 40) / 15 = 22; none: v p / (q - 1) = 30.
    assert model.expected_spend(params, np.array([2.0, 0.0]), np.array([20.0, 0.0])) == pytest.approx([22.0, 30.0])


def test_fit_refuses_too_little_data() -> None:
    with pytest.raises(model.FitError):
        model.fit_bgnbd(np.zeros(5), np.zeros(5), np.ones(5))
    with pytest.raises(model.FitError):
        model.fit_gamma_gamma(np.array([1.0, 0.0]), np.array([10.0, 0.0]))


def test_pymc_marketing_map_with_flat_priors_agrees(cdnow: dict[str, np.ndarray], fitted: model.Fitted) -> None:
    """The optional extra: pymc-marketing's MAP with flat priors finds the same maximum (skipped without [clv])."""
    pytest.importorskip("pymc_marketing")
    theirs = model.fit_with_pymc_marketing(cdnow["x"], cdnow["t_x"], cdnow["T"], cdnow["x"], cdnow["zbar"])
    for name in PUBLISHED_BGNBD:
        assert getattr(theirs.purchases, name) == pytest.approx(getattr(fitted.purchases, name), rel=1e-3), name
    for name in PUBLISHED_GAMMA_GAMMA:
        assert getattr(theirs.spend, name) == pytest.approx(getattr(fitted.spend, name), rel=1e-3), name
    assert theirs.library.startswith("pymc-marketing")
