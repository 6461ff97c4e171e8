"""Synthetic matrices and checkpoints with known spectra, shared by the tests."""

from __future__ import annotations

import numpy as np


def gaussian(rows: int, cols: int, seed: int) -> np.ndarray:
    """i.i.d. N(0, 1) entries: a Marchenko–Pastur spectrum, no power-law tail."""
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)


def planted_power_law(rows: int, cols: int, alpha: float, seed: int) -> np.ndarray:
    """W = U diag(s) Vᵀ whose ESD (s²/N) is a Pareto sample with density exponent ``alpha``."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((rows, cols)))
    v, _ = np.linalg.qr(rng.standard_normal((cols, cols)))
    evals = (1.0 - rng.random(cols)) ** (-1.0 / (alpha - 1.0))  # Pareto(xmin=1, alpha)
    return ((u * np.sqrt(evals * rows)) @ v.T).astype(np.float32)
