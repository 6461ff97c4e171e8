"""WeightWatcher's Marchenko–Pastur columns and distance from random, by its definitions.

weightscope's own bulk (`weightscope.stats.randmat.MPBulk`: a quantile-regressed σ², an
edge with a Tracy–Widom margin) and its own distance from random (a KS distance to the
shuffled ESD) are what its verdicts are calibrated on. Published HTSR results quote
WeightWatcher's ``bulk_max``, ``num_spikes``, ``mp_softrank`` and ``rand_distance``
instead, which are other numbers (on all-MiniLM-L6-v2 the bulk edges differ by a median
43 %), so these columns reproduce WeightWatcher 0.7.7 step by step (``mp_fit``,
``fit_density_with_range``, ``resid_mp``, ``apply_random_esd``) and carry its names;
``scripts/compare_weightwatcher.py`` checks them against it.

WeightWatcher's MP fit: the ESD is rescaled to mean 1; a linear-kernel density estimate
(bandwidth 0.1) is taken on 1000 points of [0, λmax + 0.5] (of √λ when Q = 1, against the
quarter-circle law), points of density ≤ 0.01 are dropped, and σ minimises the squared
difference between the MP density and the estimate over a grid of σ (0.05 to 2 times
√(λmax/(1 + 1/√Q)²) in steps of 0.01 of it), polished by Nelder–Mead. The estimate does
not depend on σ, so it is computed once, exactly, from prefix sums (WeightWatcher refits
scikit-learn's ``KernelDensity`` at every σ): ~5 ms a layer instead of seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: WeightWatcher's kernel bandwidth (on the ESD rescaled to mean 1), grid size, and the
#: density below which grid points are left out of the residual.
BANDWIDTH = 0.1
GRID_POINTS = 1000
DENSITY_FLOOR = 0.01
#: Residual of every grid point when σ puts the MP support off the density's peak.
_PENALTY = 1000.0


@dataclass(frozen=True)
class WWColumns:
    """WeightWatcher's MP-fit columns and distance from random of one layer (None: not
    computed: an empty spectrum, or ``rand_distance`` without a shuffled copy).

    ``bulk_max`` is the MP edge (σ_mp(1 + 1/√Q))² with WeightWatcher's fitted σ_mp, in σ²
    of W like ``lambda_max``; ``num_spikes`` counts eigenvalues above that edge plus √TW,
    TW = Q^(−1/2) bulk_max^(2/3) M^(−2/3) on the mean-1 scale (WeightWatcher's margin);
    ``mp_softrank`` = bulk_max/λmax (not capped); ``rand_distance`` is `jensen_shannon_distance`.
    """

    bulk_max: float | None = None
    num_spikes: int | None = None
    mp_softrank: float | None = None
    rand_distance: float | None = None


def ww_columns(evals: np.ndarray, n: int, m: int, randomized: np.ndarray | None = None) -> WWColumns:
    """The columns of an ascending ESD of X = WᵀW/N (N×M matrices) and, when given, the
    ascending ESD of its shuffled copy."""
    distance = (
        jensen_shannon_distance(evals, randomized) if randomized is not None and len(randomized) == len(evals) else None
    )
    fitted = ww_mp_fit(evals, n, m)
    if fitted is None:
        return WWColumns(rand_distance=distance)
    bulk_max, num_spikes, mp_softrank = fitted
    return WWColumns(bulk_max * n, num_spikes, mp_softrank, distance)


def linear_kde(samples: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    """Density of ``samples`` at ``grid`` with the linear kernel: Σ (1 − |g − x|/h)₊ / (n h),
    scikit-learn's ``KernelDensity(kernel="linear")``, in O((n + grid) log n)."""
    x = np.sort(np.asarray(samples, dtype=np.float64))
    sums = np.concatenate(([0.0], np.cumsum(x)))
    low = np.searchsorted(x, grid - bandwidth, side="right")
    mid = np.searchsorted(x, grid, side="right")
    high = np.searchsorted(x, grid + bandwidth, side="left")
    left, left_sum = mid - low, sums[mid] - sums[low]  # samples in (g − h, g]
    right, right_sum = high - mid, sums[high] - sums[mid]  # samples in (g, g + h)
    total = left - (grid * left - left_sum) / bandwidth + right - (right_sum - grid * right) / bandwidth
    return total / (x.size * bandwidth)


def _residuals(sigmas: np.ndarray, grid: np.ndarray, density: np.ndarray, q: float) -> np.ndarray:
    """WeightWatcher's ``resid_mp`` (sum of squares) at each σ, on the kept grid points.

    A σ whose MP support misses the density's peak (or overruns the grid) scores the
    penalty without computing the density; WeightWatcher's ``nan_to_num`` only ever meets
    NaN here (outside the support, and 0·∞ at λ = 0), so NaN → 0 is the same map."""
    s = np.asarray(sigmas, dtype=np.float64).ravel()
    out = np.full(s.size, _PENALTY**2 * grid.size)
    live = np.ones(s.size, dtype=bool)
    if q != 1.0:
        a, b = (s * (1.0 - np.sqrt(1.0 / q))) ** 2, (s * (1.0 + np.sqrt(1.0 / q))) ** 2
        peak = grid[np.argmax(density)]
        live = ~((b < peak) | (b > grid.max()) | (a > peak))
    if not live.any():
        return out
    t = s[live, None]
    with np.errstate(all="ignore"):
        if q == 1.0:
            model = (1.0 / (np.pi * t * t)) * np.sqrt(4.0 - grid**2)
        else:
            low, high = a[live, None], b[live, None]
            model = (1.0 / (2.0 * np.pi * t * t * grid * (1.0 / q))) * np.sqrt((high - grid) * (grid - low))
    out[live] = np.sum((np.where(np.isnan(model), 0.0, model) - density) ** 2, axis=1)
    return out


class _OutOfCalls(Exception):
    """The polish's evaluation budget is spent (SciPy's ``_MaxFuncCallError``)."""


def _nelder_mead(func: Callable[[float], float], x0: float, xatol: float = 1e-4, fatol: float = 1e-4) -> float:
    """SciPy's ``optimize.fmin`` in one dimension (``optimize.brute``'s polish), step for
    step: simplex (x0, 1.05·x0), reflection 1, expansion 2, contractions and shrink by ½,
    at most 200 evaluations and 200 iterations. With two vertices SciPy's "reflect and
    keep" branch (f(reflected) < the second-worst vertex, i.e. the best) is never taken."""
    calls = 0

    def value(x: float) -> float:
        nonlocal calls
        if calls >= 200:
            raise _OutOfCalls
        calls += 1
        return float(func(x))

    sim = [x0, 1.05 * x0 if x0 != 0 else 0.00025]
    fsim = [value(sim[0]), value(sim[1])]
    if fsim[1] < fsim[0]:
        sim, fsim = sim[::-1], fsim[::-1]
    iterations = 1
    while calls < 200 and iterations < 200:
        if abs(sim[1] - sim[0]) <= xatol and abs(fsim[0] - fsim[1]) <= fatol:
            break
        best, worst = sim
        try:
            reflected = 2.0 * best - worst
            f_reflected = value(reflected)
            if f_reflected < fsim[0]:
                expanded = 3.0 * best - 2.0 * worst
                f_expanded = value(expanded)
                sim[1], fsim[1] = (expanded, f_expanded) if f_expanded < f_reflected else (reflected, f_reflected)
            else:
                outside = f_reflected < fsim[1]
                point = 1.5 * best - 0.5 * worst if outside else 0.5 * best + 0.5 * worst
                f_point = value(point)
                if (f_point <= f_reflected) if outside else (f_point < fsim[1]):
                    sim[1], fsim[1] = point, f_point
                else:
                    sim[1] = best + 0.5 * (worst - best)
                    fsim[1] = value(sim[1])
            iterations += 1
        except _OutOfCalls:
            pass
        if fsim[1] < fsim[0]:
            sim, fsim = sim[::-1], fsim[::-1]
    return sim[0]


def ww_mp_fit(evals: np.ndarray, n: int, m: int) -> tuple[float, int, float] | None:
    """WeightWatcher's MP fit of an ascending ESD of N×M matrices: (bulk_max in the ESD's
    units, num_spikes, mp_softrank), or None for an empty or all-zero ESD."""
    evals = np.asarray(evals, dtype=np.float64)
    total = float(np.sum(evals))
    if evals.size == 0 or not total > 0:
        return None
    q = n / m
    scale = evals.size / total  # WeightWatcher's Wscale², which makes the mean eigenvalue 1
    rescaled = evals * scale
    # WeightWatcher fits singular values of a square matrix (σ ≥ 0 from its SVD); an
    # eigensolver's zero can come out as −1e-10, whose square root is NaN, and one NaN in
    # the kernel density turned a MiniLM layer's bulk_max 330× too small (333 "spikes").
    to_fit = np.sqrt(np.maximum(rescaled, 0.0)) if q == 1.0 else rescaled
    grid = np.linspace(0.0, float(np.max(to_fit)) + 0.5, GRID_POINTS)
    density = linear_kde(to_fit, grid, BANDWIDTH)
    kept = density > DENSITY_FLOOR
    grid, density = grid[kept], density[kept]
    lambda_max = float(np.max(rescaled))
    unit = np.sqrt(lambda_max / (1.0 + 1.0 / np.sqrt(q)) ** 2)
    sigmas = np.mgrid[slice(0.05 * unit, 2.0 * unit, 0.01 * unit)]
    start = float(sigmas[np.argmin(_residuals(sigmas, grid, density, q))])
    sigma = _nelder_mead(lambda s: _residuals(np.array([s]), grid, density, q)[0], start)
    bulk_max = (sigma * (1.0 + 1.0 / np.sqrt(q))) ** 2
    tracy_widom = bulk_max ** (2.0 / 3.0) * m ** (-2.0 / 3.0) / np.sqrt(q)
    spikes = int(np.count_nonzero(rescaled > bulk_max + np.sqrt(tracy_widom)))
    return float(bulk_max / scale), spikes, float(bulk_max / lambda_max)


def jensen_shannon_distance(evals: np.ndarray, randomized: np.ndarray) -> float:
    """WeightWatcher's ``rand_distance``: the Jensen–Shannon distance (natural log) between
    the ascending ESD and the ascending ESD of the shuffled matrix, each read as one
    probability vector (eigenvalue i over their sum), as WeightWatcher passes them to
    ``scipy.stats.entropy``. It compares the two sorted spectra index by index, so it is
    not a distance between eigenvalue distributions (`checks` uses a KS distance for that)."""
    # σ² are never negative; an eigensolver's −1e-9 would make a log of a negative mean
    p = np.clip(np.asarray(evals, dtype=np.float64), 0.0, None)
    r = np.clip(np.asarray(randomized, dtype=np.float64), 0.0, None)
    p, r = p / np.sum(p), r / np.sum(r)
    middle = 0.5 * (p + r)
    with np.errstate(divide="ignore", invalid="ignore"):
        divergence = 0.5 * (
            np.sum(np.where(p > 0, p * np.log(p / middle), 0.0)) + np.sum(np.where(r > 0, r * np.log(r / middle), 0.0))
        )
    return float(np.sqrt(max(divergence, 0.0)))
