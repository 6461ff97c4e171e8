"""The KS test of a *fitted* power-law tail: the two-sided distance and its critical values.

Why not the textbook KS critical value (≈ 1.36/√n at 5 %): it holds for a fully specified
law. Here alpha is fitted to the same tail and xmin is chosen to minimise D (Clauset,
Shalizi & Newman 2009), both of which shrink D — the Lilliefors problem. Against the
textbook value the test's real size on true power laws was ≈ 0, and a 1000-point
lognormal tail passed it 82 % of the time.

The null distribution of the fitted-and-searched D does not depend on alpha (λ → λ^c maps
one power law onto another and leaves the candidate order, the fitted model's CDF and D
unchanged), only on the tail size n. It was simulated once by
``scripts/calibrate_fitted_ks.py`` (seeded; pure power-law samples of log-uniform size
12…4000 fitted by `weightscope.stats.fit.fit_power_law` with min_tail 10, D measured
two-sided at the chosen xmin, 60 000 fits) and is shipped as quantiles of √n·D per tail size
(`CRITICAL`); `critical_distance` interpolates them in log n and in log level.

D here is two-sided: the empirical CDF jumps at each tail value, and the distance is taken
on both sides of every jump. The fitter's own D (`PowerLawFit.D`) keeps `powerlaw`'s
convention (left limits only, which understates D by up to 1/n), because the fitter must
agree with `powerlaw` candidate for candidate; only this test uses the two-sided D.
"""

from __future__ import annotations

import numpy as np

from weightscope.errors import WeightscopeError

#: Significance levels the table holds, ascending.
LEVELS = (0.01, 0.02, 0.05, 0.1, 0.2)

#: Tail sizes (selected n_tail, bin centres in log n) of the table's rows.
TAIL_SIZES = (12, 16, 23, 32, 44, 62, 87, 121, 170, 236, 329, 458, 642, 896, 1249, 1738, 2415, 3333)

#: √n·D exceeded with probability LEVELS[j] at tail size TAIL_SIZES[i]: CRITICAL[i][j].
CRITICAL = (
    (1.044, 0.9791, 0.8829, 0.8092, 0.7247),
    (1.0786, 0.9572, 0.8638, 0.7952, 0.7154),
    (0.9686, 0.9058, 0.8205, 0.7581, 0.6827),
    (0.9166, 0.874, 0.7979, 0.7374, 0.6705),
    (0.9309, 0.8874, 0.7907, 0.7318, 0.6594),
    (0.9293, 0.8591, 0.7923, 0.7211, 0.6462),
    (0.9021, 0.841, 0.7804, 0.719, 0.65),
    (0.8989, 0.8524, 0.7734, 0.7139, 0.6513),
    (0.8918, 0.8561, 0.7852, 0.7177, 0.6503),
    (0.8858, 0.8512, 0.777, 0.7184, 0.6547),
    (0.9233, 0.8677, 0.7888, 0.724, 0.6513),
    (0.91, 0.8598, 0.7904, 0.7308, 0.6532),
    (0.9191, 0.873, 0.7852, 0.7229, 0.6488),
    (0.9153, 0.8659, 0.7954, 0.731, 0.6572),
    (0.9176, 0.8711, 0.7921, 0.7248, 0.654),
    (0.9278, 0.8604, 0.7878, 0.7364, 0.6646),
    (0.9773, 0.8984, 0.8077, 0.7416, 0.6716),
    (0.9621, 0.9045, 0.8242, 0.7584, 0.6998),
)


def two_sided_distance(tail: np.ndarray, alpha: float, xmin: float) -> float:
    """sup |F_n − F| of a tail (values ≥ xmin) against the power law (alpha, xmin), with
    the empirical CDF F_n taken on both sides of each jump."""
    values = np.sort(np.asarray(tail, dtype=np.float64))
    n = values.size
    if n == 0:
        raise WeightscopeError("the KS distance needs at least one tail value")
    model = -np.expm1((1.0 - alpha) * np.log(values / xmin))
    ranks = np.arange(1, n + 1) / n
    return float(max(np.max(ranks - model), np.max(model - (ranks - 1.0 / n))))


def critical_distance(n: int, level: float) -> float:
    """The D a fitted-and-searched power-law tail of n values exceeds with probability
    ``level`` under the null (a true power law): `CRITICAL` interpolated linearly in log n
    (clamped to the table's range, where √n·D has settled) and in log level."""
    if not LEVELS[0] <= level <= LEVELS[-1]:
        raise WeightscopeError(f"the fitted-KS table covers levels {LEVELS[0]} to {LEVELS[-1]}, got {level}")
    table = np.asarray(CRITICAL)
    per_level = [np.interp(np.log(max(n, 1)), np.log(TAIL_SIZES), table[:, j]) for j in range(len(LEVELS))]
    scaled = float(np.interp(np.log(level), np.log(LEVELS), per_level))
    return float(scaled / np.sqrt(n))
