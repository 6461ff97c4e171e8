"""Scale and shape numbers of an ESD that need no fit.

All are computed from the eigenvalues λ of X = WᵀW/N, so a matrix and its transpose, or
the same layer in a wider model with the same entry variance, give comparable numbers:
  lambda_max        = λmax                      (= σmax(W)²/N)
  log_norm          = log10 Σλ                  (= log10 ‖W‖_F² / N)
  log_spectral_norm = log10 λmax
  stable_rank       = Σλ / λmax                 (scale free, 1 … M)
  entropy           = −Σ p log p / log M, p = λ/Σλ   (0: one direction, 1: flat spectrum)
alpha_weighted = α · log10 λmax needs the fit and is formed by the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NormMetrics:
    lambda_max: float
    log_norm: float
    log_spectral_norm: float
    stable_rank: float
    entropy: float


def norm_metrics(evals: np.ndarray) -> NormMetrics:
    """Norms of a non-zero ESD (ascending or not). Tiny negative round-off counts as 0."""
    lam = np.clip(np.asarray(evals, dtype=np.float64), 0.0, None)
    lambda_max = float(lam.max())
    total = float(lam.sum())
    p = lam[lam > 0] / total
    entropy = float(-(p * np.log(p)).sum() / np.log(lam.size)) if lam.size > 1 else 0.0
    return NormMetrics(
        lambda_max=lambda_max,
        log_norm=float(np.log10(total)),
        log_spectral_norm=float(np.log10(lambda_max)),
        stable_rank=total / lambda_max,
        entropy=entropy,
    )
