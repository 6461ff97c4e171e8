"""Scale and shape numbers of an ESD that need no fit.

The names shared with WeightWatcher carry WeightWatcher's definitions (its
``apply_norm_metrics``, 0.7.x: the eigenvalues there are σ² of W itself, not σ²/N), so
published HTSR results and a WeightWatcher run compare one to one:
  lambda_max        = σmax²                 = N·λmax
  log_norm          = log10 ‖W‖_F²          = log10 Σσ²
  log_spectral_norm = log10 σmax²
  alpha_weighted    = α · log_spectral_norm (formed by the pipeline: it needs the fit)
Their width-normalised variants, in the units of the ESD λ of X = WᵀW/N (comparable
across widths with the same entry variance), have their own names:
  log_norm_per_n          = log10 (‖W‖_F² / N)
  log_spectral_norm_per_n = log10 λmax
  alpha_weighted_per_n    = α · log_spectral_norm_per_n
The two differ by log10 N (α·log10 N for the weighted one), enough to change sign and
order across layers of different width. Scale free:
  stable_rank       = Σλ / λmax                 (1 … M)
  entropy           = −Σ p log p / log M, p = λ/Σλ   (0: one direction, 1: flat spectrum)
For a conv kernel N is that of one kernel-position slice (WeightWatcher's conv scaling
options are not reproduced).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NormMetrics:
    lambda_max: float
    log_norm: float
    log_spectral_norm: float
    log_norm_per_n: float
    log_spectral_norm_per_n: float
    stable_rank: float
    entropy: float


def norm_metrics(evals: np.ndarray, n: int) -> NormMetrics:
    """Norms of a non-zero ESD (ascending or not) of N×M matrices (N ≥ M). Tiny negative
    round-off counts as 0."""
    lam = np.clip(np.asarray(evals, dtype=np.float64), 0.0, None)
    lambda_max = float(lam.max())
    total = float(lam.sum())
    p = lam[lam > 0] / total
    entropy = float(-(p * np.log(p)).sum() / np.log(lam.size)) if lam.size > 1 else 0.0
    return NormMetrics(
        lambda_max=n * lambda_max,
        log_norm=float(np.log10(n * total)),
        log_spectral_norm=float(np.log10(n * lambda_max)),
        log_norm_per_n=float(np.log10(total)),
        log_spectral_norm_per_n=float(np.log10(lambda_max)),
        stable_rank=total / lambda_max,
        entropy=entropy,
    )
