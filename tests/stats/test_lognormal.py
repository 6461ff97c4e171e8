"""weightscope.stats.lognormal: the normal tail functions against scipy.special, and the Newton
fit against a tightly converged scipy.optimize reference on shallow and deep truncations,
power laws and eigenvalue tails."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats

from weightscope.stats.fit import fit_power_law
from weightscope.stats.lognormal import (
    fit_truncated_lognormal,
    inverse_mills_ratio,
    normal_log_sf,
)

MINILM = Path(__file__).parents[1] / "data" / "minilm_evals.npz"

# z from −30 to 1e4: the erfc branches, both sides of the switch to the continued
# fraction at 4, and far beyond where 1 − Φ(z) underflows (z ≈ 38).
Z_GRID = np.concatenate(
    [
        np.linspace(-30.0, 40.0, 7001),
        np.geomspace(40.0, 1e4, 500),
        np.nextafter([-1.0, -1.0, 4.0, 4.0], [-2.0, 0.0, 3.0, 5.0]),
    ]
)


def test_normal_log_sf_matches_log_ndtr():
    ours = np.array([normal_log_sf(float(z)) for z in Z_GRID])
    np.testing.assert_allclose(ours, scipy.special.log_ndtr(-Z_GRID), rtol=1e-12, atol=0)


def test_inverse_mills_ratio_matches_erfcx():
    """Reference: φ(z)/(1 − Φ(z)) = 1/(√(π/2)·erfcx(z/√2)), which does not cancel far out
    (exp(−z²/2 − log_ndtr(−z)) would lose ~z²·eps there)."""
    ours = np.array([inverse_mills_ratio(float(z)) for z in Z_GRID])
    reference = 1.0 / (math.sqrt(math.pi / 2) * scipy.special.erfcx(Z_GRID / math.sqrt(2)))
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=0)


# --- the fit ------------------------------------------------------------------------------


def reference_loglik(tail: np.ndarray, xmin: float, mu: float, sigma: float) -> float:
    """Σ ln p(x) of the lognormal (mu, sigma) truncated to x ≥ xmin, through scipy."""
    z = (np.log(tail) - mu) / sigma
    truncation = scipy.special.log_ndtr(-(math.log(xmin) - mu) / sigma)
    return float(np.sum(-np.log(tail) - math.log(sigma) - 0.5 * math.log(2 * math.pi) - 0.5 * z * z - truncation))


def reference_fit(tail: np.ndarray, xmin: float) -> tuple[float, float]:
    """(mu, sigma) from L-BFGS-B on (mu, ln sigma), polished by Nelder–Mead at tight
    tolerances: the reference the Newton fit has to match or beat."""
    logs = np.log(tail)

    def negative(params: np.ndarray) -> float:
        return -reference_loglik(tail, xmin, params[0], math.exp(params[1]))

    start = np.array([np.mean(logs), math.log(max(np.std(logs), 1e-3))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coarse = scipy.optimize.minimize(negative, start, method="L-BFGS-B", options={"maxiter": 2000})
        fine = scipy.optimize.minimize(
            negative,
            coarse.x,
            method="Nelder-Mead",
            options={"xatol": 1e-12, "fatol": 1e-13, "maxiter": 20000, "maxfev": 40000},
        )
    best = min((coarse, fine), key=lambda result: result.fun)
    return float(best.x[0]), float(math.exp(best.x[1]))


def interior(tail: np.ndarray, xmin: float) -> bool:
    """Whether the best truncated lognormal is off the power-law edge (see versus_lognormal)."""
    u = np.log(tail / xmin)
    return bool(np.mean(u * u) < 2 * np.mean(u) ** 2)


def truncated_lognormal_sample(rng: np.random.Generator, n: int, cut: float, sigma: float, xmin: float) -> np.ndarray:
    """n draws of a lognormal cut ``cut`` of its sigmas above its median, at x = xmin."""
    excess = scipy.stats.truncnorm.rvs(cut, np.inf, size=n, random_state=rng) - cut
    return xmin * np.exp(sigma * excess)


def minilm_tails():
    with np.load(MINILM) as data:
        for name in data.files:
            evals = np.sort(data[name])
            fit = fit_power_law(evals)
            yield name, evals[evals >= fit.xmin], float(fit.xmin)


def tails():
    """(label, tail, xmin, whether mu and sigma are well determined)."""
    rng = np.random.default_rng(7)
    sample = rng.lognormal(0.0, 1.0, 3000)
    for xmin in (0.2, 1.0, 3.0, 10.0):
        yield f"lognormal cut at {xmin}", sample[sample >= xmin], xmin, True
    for cut in (-2.0, 0.0, 2.0, 6.0, 15.0, 40.0):  # shallow to deep: the mode far below xmin
        yield f"truncated {cut} sigmas", truncated_lognormal_sample(rng, 800, cut, 0.7, 2.0), 2.0, cut < 10
    kept = 0
    while kept < 6:  # power laws whose best lognormal is (barely) interior
        n = int(rng.integers(100, 2000))
        pareto = (1.0 - rng.random(n)) ** (-1.0 / rng.uniform(0.5, 3.0))
        if interior(pareto, 1.0):
            kept += 1
            yield f"pareto {kept}", pareto, 1.0, False
    g = rng.standard_normal((600, 300))
    mp = np.linalg.eigvalsh(g.T @ g / 600)
    for quantile in (0.5, 0.8, 0.95):
        xmin = float(np.quantile(mp, quantile))
        yield f"MP tail from q={quantile}", mp[mp >= xmin], xmin, True
    for name, tail, xmin in minilm_tails():
        yield f"MiniLM {name}", tail, xmin, False


TAILS = [case for case in tails() if interior(case[1], case[2])]


def test_the_cases_cover_shallow_and_deep_truncation():
    labels = " ".join(case[0] for case in TAILS)
    for kind in ("lognormal", "truncated", "pareto", "MP", "MiniLM"):
        assert kind in labels
    cuts = [math.log(case[2]) - fit_truncated_lognormal(case[1], case[2]).mu for case in TAILS]
    sigmas = [fit_truncated_lognormal(case[1], case[2]).sigma for case in TAILS]
    standardized = [cut / sigma for cut, sigma in zip(cuts, sigmas)]
    assert min(standardized) < -2 and max(standardized) > 20


@pytest.mark.parametrize(("label", "tail", "xmin", "determined"), TAILS, ids=[case[0] for case in TAILS])
def test_fit_is_the_maximum_likelihood(label, tail, xmin, determined):
    """The Newton fit is the exact MLE: never worse than the reference beyond 1e-9·|ℓ|
    (it is usually better), and where the likelihood is not flat along a ridge (deep
    truncations trade mu against sigma), the same mu and sigma."""
    fit = fit_truncated_lognormal(tail, xmin)
    ours = float(np.sum(fit.loglik(tail)))
    mu, sigma = reference_fit(tail, xmin)
    reference = reference_loglik(tail, xmin, mu, sigma)
    assert ours >= reference - 1e-9 * abs(reference)
    # The x-space density is the same function as scipy's at the fitted parameters.
    assert ours == pytest.approx(reference_loglik(tail, xmin, fit.mu, fit.sigma), rel=1e-11)
    if determined:
        assert fit.mu == pytest.approx(mu, rel=1e-5, abs=1e-5)
        assert fit.sigma == pytest.approx(sigma, rel=1e-5)


def test_fit_near_the_power_law_edge_stays_at_its_value():
    """A tail whose best lognormal sits within rounding of the c = 0 edge (mean(u²) just
    below 2·mean(u)²): the fit reaches the power law's log-likelihood, to rounding."""
    u = np.sort(np.random.default_rng(1).exponential(0.7, 500))
    rest, rest_sq, n = u[:-1].sum(), (u[:-1] ** 2).sum(), len(u)
    k = 2 * (1 - 1e-9) / n  # choose the top value so that mean(u²) = 2(1 − 1e-9)·mean(u)²
    top = (k * rest + math.sqrt((k * rest) ** 2 - (1 - k) * (rest_sq - k * rest * rest))) / (1 - k)
    x = np.exp(np.append(u[:-1], top))
    assert interior(x, 1.0)
    alpha = 1 + n / np.sum(np.log(x))
    power_law = np.sum(np.log(alpha - 1) - alpha * np.log(x))
    ours = np.sum(fit_truncated_lognormal(x, 1.0).loglik(x))
    assert ours == pytest.approx(power_law, rel=1e-12)
