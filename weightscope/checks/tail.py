"""The fitted tail under test: dragon kings (eigenvalues beyond what the tail predicts) and
the statistics behind the reading of alpha (tail size, KS, stability, alternatives)."""

from __future__ import annotations

import numpy as np

from weightscope.checks.results import DragonKings, FitTrust
from weightscope.config import Thresholds
from weightscope.stats.fit import (
    PowerLawFit,
    candidate_alphas,
    fit_power_law,
)
from weightscope.stats.fitted_ks import critical_distance, two_sided_distance
from weightscope.stats.likelihood import (
    exponential_loglik,
    power_law_loglik,
    versus_lognormal,
    vuong,
)
from weightscope.stats.outliers import count_outliers


def dragon_kings(evals: np.ndarray, fit: PowerLawFit, thresholds: Thresholds) -> DragonKings:
    """Largest eigenvalues the fitted power-law tail cannot explain, and alpha without them.

    Test (sequential, from the top): under the fitted tail p(λ) ∝ λ^(−α), λ ≥ xmin, with
    survival S(λ) = (λ/xmin)^(1−α), the largest of the n_tail − j + 1 tail values left
    after removing the j − 1 kings already found reaches λ₍ⱼ₎ with probability
    p_j = 1 − (1 − S(λ₍ⱼ₎))^(n_tail − j + 1). λ₍ⱼ₎ is a dragon king while p_j < ``dragon_p``;
    testing stops at the first value that is not one, and at ``dragon_candidates``.
    Nothing is declared unless the very first test rejects, so on a layer without kings
    the chance of a false one is ``dragon_p`` at most. The tested fit includes the kings,
    which pulls alpha down and makes the test conservative. A random (MP) layer has a
    light, bounded tail that a fitted power law over-predicts, so it shows no kings.
    """
    num_tail = int(fit.num_tail)
    candidates = min(thresholds.dragon_candidates, num_tail - 1)
    if candidates < 1:
        return DragonKings(count=0, alpha_without=None)
    count = count_outliers(evals[::-1][:candidates], fit.xmin, fit.alpha, num_tail, thresholds.dragon_p)
    if count == 0:
        return DragonKings(count=0, alpha_without=None)
    refit = fit_power_law(evals[:-count])
    return DragonKings(count=count, alpha_without=refit.alpha if refit.status == "ok" else None)


# --- fit trust ----------------------------------------------------------------------------


def fit_trust(
    evals: np.ndarray,
    fit: PowerLawFit,
    thresholds: Thresholds,
    shuffled: np.ndarray | None = None,
    shuffled_edge: float | None = None,
) -> FitTrust:
    """The statistics behind the reading of alpha: tail size, KS, stability, alternatives.

    - tail_ok: at least ``trust_min_tail`` eigenvalues in the tail: enough for the tests
      of the exact power law below to mean something (a solid reading needs it).
    - ks_ok: the two-sided KS distance of the tail from the fitted law is at most the
      critical value of the *fitted-and-searched* statistic at ``ks_level``
      (`stats.fitted_ks`: simulated once for alpha fitted and xmin chosen to minimise D,
      the Lilliefors problem). Measured size on true power laws: 4.6–5.6 % at 5 %.
    - stable: alpha's spread as xmin moves up ``stability_window`` candidates
      (`alpha_spread`) is at most ``stability_max_se`` of its standard error
      (α − 1)/√n_tail: alpha's own noise grows with α and shrinks with the tail, so a
      fixed spread called exact power laws of 100 points unstable in 14 % at α = 4 and
      3 % at α = 2.5 (scripts/measure_readings.py).
    - vs_lognormal / vs_exponential: Vuong log-likelihood-ratio tests on the tail; an
      alternative is better when it wins with p < ``llr_p``. They run in float64 whatever
      the ESD's dtype: float32 rounding of the pointwise log-likelihoods (~1e-7 relative)
      would blur the small differences Vuong's test weighs, and the lognormal's
      comparison with the power law at rounding level.
    - with ``shuffled``, the ascending ESD of the layer's element-wise shuffled copy, and
      ``shuffled_edge``, that copy's Marchenko–Pastur edge (`checks.traps`), how the tail
      compares with the copy's (`reading_problems`): tail_above_shuffled, how many tail
      values lie above the copy's largest eigenvalue; tail_over_shuffled, the geometric
      mean of the tail's eigenvalues over the copy's at the same ranks
      (`ratio_to_shuffled`); shuffled_beyond_mp, whether the copy itself rises above its
      edge (the entries alone make a heavy spectrum: sparse or heavy-tailed entries).
    """
    tail = evals[evals >= fit.xmin].astype(np.float64)
    num_tail = int(fit.num_tail)
    ks_distance = two_sided_distance(tail, fit.alpha, fit.xmin)
    ks_critical = critical_distance(num_tail, thresholds.ks_level)
    spread = alpha_spread(evals, fit, thresholds.stability_window)
    power_law = power_law_loglik(tail, fit.alpha, fit.xmin)
    return FitTrust(
        tail_ok=num_tail >= thresholds.trust_min_tail,
        ks_ok=ks_distance <= ks_critical,
        stable=spread is not None and spread <= thresholds.stability_max_se * (fit.sigma or 0.0),
        alpha_spread=spread,
        vs_lognormal=versus_lognormal(tail, fit.xmin, power_law),
        vs_exponential=vuong(power_law, exponential_loglik(tail, fit.xmin)),
        ks_distance=ks_distance,
        ks_critical=ks_critical,
        tail_above_shuffled=int(np.count_nonzero(tail > shuffled[-1])) if shuffled is not None else None,
        tail_over_shuffled=ratio_to_shuffled(tail, shuffled) if shuffled is not None else None,
        shuffled_beyond_mp=bool(shuffled[-1] > shuffled_edge)
        if shuffled is not None and shuffled_edge is not None
        else None,
    )


def ratio_to_shuffled(tail: np.ndarray, shuffled: np.ndarray) -> float | None:
    """Geometric mean of λ₍ᵢ₎/λ'₍ᵢ₎ over the tail's ranks i (largest first; ``tail`` and
    ``shuffled`` ascending, the copy's ESD): 1 when the tail is the copy's, above 1 when it rises above it
    rank by rank. Ranks where the copy's eigenvalue is not positive are left out (None:
    none left)."""
    top = np.asarray(tail, dtype=np.float64)[::-1]
    copy = np.asarray(shuffled[::-1][: len(top)], dtype=np.float64)
    positive = (copy > 0) & (top > 0)
    if not np.any(positive):
        return None
    return float(np.exp(np.mean(np.log(top[positive] / copy[positive]))))


def alpha_spread(evals: np.ndarray, fit: PowerLawFit, window: int) -> float | None:
    """max − min of alpha over the chosen xmin and the ``window`` candidates above it
    (alphas only: `candidate_alphas`, not the KS scan).

    Only upwards: under the fitted model every tail above xmin is the same power law, so
    alpha may move there only by its noise (about (α − 1)·√(window)/n_tail, well inside
    its standard error); below xmin lie values the model does not claim, and a tail that
    rises clear of the bulk — the clearest tail there is — would read "unstable" for
    the gap beneath it (measured: 35 % of exact 500-point power laws on a body).
    """
    xmins, alphas = candidate_alphas(evals, min_tail=1)
    chosen = int(np.argmin(np.abs(xmins - fit.xmin)))
    alphas = alphas[chosen : chosen + window + 1]
    alphas = alphas[np.isfinite(alphas)]
    return float(np.max(alphas) - np.min(alphas)) if len(alphas) else None
