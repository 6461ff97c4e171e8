"""Power-law tail fit of an ESD (Clauset, Shalizi & Newman 2009), vectorised.

STUB: being written; the interface below is the seam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PowerLawFit:
    """Result of fitting p(λ) ∝ λ^(−alpha) for λ ≥ xmin.

    ``status`` is "ok" or "failed"; a failed fit has a ``reason`` and every number None —
    never a sentinel alpha.
    """

    status: str
    reason: str | None = None
    alpha: float | None = None
    xmin: float | None = None
    xmax: float | None = None
    D: float | None = None
    sigma: float | None = None
    num_tail: int | None = None


def fit_power_law(evals: np.ndarray, *, min_tail: int = 10) -> PowerLawFit:
    raise NotImplementedError
