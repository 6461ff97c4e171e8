"""Exact tail of the one-sided Kolmogorov–Smirnov (Smirnov) statistic, in numpy.

Why not ``scipy.special.smirnov``: importing any scipy submodule costs ~0.25 s of every
run's start-up, and the default analysis needs nothing else from scipy.special.

The Birnbaum–Tingey formula gives, for n samples and 0 < d < 1,

    P(D⁺ₙ ≥ d) = d · Σ_{j=0}^{⌊n(1−d)⌋} C(n, j) · (1 − d − j/n)^(n−j) · (d + j/n)^(j−1),

a sum of positive terms, so it is evaluated in log space without cancellation. Two things
keep the logs accurate to a few ulps for n in the tens of thousands: nd is split exactly
into an integer and fractions, so 1 − d − j/n never loses digits to subtraction; and
log C(n, j) comes from cumulative sums of logs split into a coarse part, summed exactly,
and a small remainder, so the rounding of partial sums near n·ln n does not accumulate.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from weightscope.errors import WeightscopeError

# log k is split into a multiple of this grid (its running sums stay exact in float64 while
# they are below 2^(53 − 20), i.e. up to n ≈ 4·10⁸) and a remainder below half of it.
_LOG_GRID = 2.0**-20


def smirnov_sf(n: int, distance: float) -> float:
    """P(D⁺ₙ ≥ distance): the exact survival function of the one-sided KS statistic."""
    n, distance = int(n), float(distance)
    if n < 1:
        raise WeightscopeError(f"the KS distribution needs n ≥ 1 samples, got {n}")
    if math.isnan(distance):
        return math.nan
    if distance <= 0.0:
        return 1.0
    if distance >= 1.0:
        return 0.0
    whole, above, below = _split_product(n, distance)
    j = np.arange(n - whole, dtype=np.int64)  # every j < n(1 − d): the terms that are not 0
    lower = ((n - whole - 1 - j) + below) / n  # 1 − d − j/n
    upper = ((whole + j) + above) / n  # d + j/n
    log_terms = _log_binomials(n)[j] + (n - j) * np.log(lower) + (j - 1) * np.log(upper)
    peak = float(np.max(log_terms))
    total = float(np.sum(np.exp(log_terms - peak)))
    return min(1.0, math.exp(math.log(distance) + peak) * total)


def _split_product(n: int, distance: float) -> tuple[int, float, float]:
    """(k, n·d − k, k + 1 − n·d) for k = ⌊n·d⌋, from the exact binary value of d.

    Both fractions are rounded once from exact rationals, so neither is lost to
    cancellation (and the second stays > 0 even when the first rounds up to 1).
    """
    product = Fraction(distance) * n
    whole = math.floor(product)
    return whole, float(product - whole), float(whole + 1 - product)


def _log_binomials(n: int) -> np.ndarray:
    """log C(n, j) for j = 0 … n, to a few ulps of the largest term.

    The exact log k is rounded to a grid (``_LOG_GRID``); grid parts add up without
    rounding error and the remainders are small, so ln k! = coarse + fine is accurate to
    about one ulp of its final value — and log C(n, j) = ln n! − ln j! − ln (n−j)! is
    formed from the coarse and fine parts separately, so the large coarse sums cancel
    exactly instead of leaving the rounding of numbers near n·ln n behind.
    """
    logs = np.log(np.arange(1, n + 1, dtype=np.float64))
    coarse_logs = np.round(logs / _LOG_GRID) * _LOG_GRID
    coarse = np.concatenate([[0.0], np.cumsum(coarse_logs)])
    fine = np.concatenate([[0.0], np.cumsum(logs - coarse_logs)])
    return (coarse[n] - coarse - coarse[::-1]) + (fine[n] - fine - fine[::-1])
