"""How many of the largest values a fitted power-law tail cannot explain.

One sequential test serves two checks: dragon kings (eigenvalues beyond the fitted ESD
tail) and the outsized entries behind a correlation trap (entries beyond the entries'
own tail). Testing from the top and stopping at the first value the tail explains keeps
the chance of a false first find at the test's level.
"""

from __future__ import annotations

import numpy as np

#: The standard deviation of a Gaussian from its median absolute deviation, σ = 1.4826·MAD:
#: the robust sigma of trap entries and of the gate's alpha outliers.
MAD_TO_SIGMA = 1.4826


def count_outliers(top: np.ndarray, xmin: float, alpha: float, num_tail: int, level: float) -> int:
    """How many of the largest values ``top`` (descending) a power-law tail (alpha, xmin)
    of ``num_tail`` values cannot explain, tested sequentially from the top.

    Under p(x) ∝ x^(−α), x ≥ xmin, survival S(x) = (x/xmin)^(1−α), the largest of the
    num_tail − j + 1 values left after removing the j − 1 found so far reaches top[j]
    with probability p_j = 1 − (1 − S)^(num_tail − j + 1); counting stops at the first
    p_j ≥ ``level``, so without any outsized value a false one turns up with probability
    ``level`` at most.
    """
    survival = (top / xmin) ** (1.0 - alpha)
    remaining = num_tail - np.arange(len(top))
    p_values = -np.expm1(remaining * np.log1p(-np.minimum(survival, 1.0)))
    explained = np.flatnonzero(p_values >= level)
    return int(explained[0]) if len(explained) else len(top)
