"""Eigenvalues of the correlation matrix X = WᵀW/N of a weight matrix.

Why the Gram matrix and a symmetric eigensolver rather than an SVD: only the eigenvalues
are needed, and `eigvalsh` of the M×M Gram matrix costs a fraction of a full SVD of W.
The price is squaring the condition number: eigenvalues below ~eps·λmax are noise. That
is harmless for the tail fit (it lives at the top of the spectrum) and the rank check
works with an explicit tolerance anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from .errors import WeightscopeError

EIG_DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class SpectrumOptions:
    """How eigenvalues are computed: precision of the Gram matrix and solver."""

    dtype: str = "float64"

    def __post_init__(self) -> None:
        if self.dtype not in EIG_DTYPES:
            raise WeightscopeError(f"eigenvalue dtype must be one of {', '.join(EIG_DTYPES)}, got {self.dtype!r}")


def oriented(matrix: np.ndarray) -> np.ndarray:
    """Return W or Wᵀ so that rows N ≥ columns M (a view, no copy)."""
    return matrix if matrix.shape[0] >= matrix.shape[1] else matrix.T


#: Rows of W converted to the solver's dtype at a time while the Gram matrix accumulates:
#: a float64 copy of a whole 11008×4096 matrix would cost 360 MB; a block costs ≤ 64 MB.
GRAM_BLOCK_BYTES = 64 * 2**20


def gram_matrix(matrix: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """X = WᵀW/N in ``dtype`` (N ≥ M after orienting), accumulated over row blocks so the
    only full-size buffer is the M×M result, whatever the stored dtype of W."""
    w = oriented(matrix)
    n, m = w.shape
    rows = max(1, GRAM_BLOCK_BYTES // (m * np.dtype(dtype).itemsize))
    gram = np.zeros((m, m), dtype=dtype)
    for start in range(0, n, rows):
        block = np.asarray(w[start : start + rows], dtype=dtype)
        gram += block.T @ block
    gram /= n
    return gram


def gram_eigenvalues(matrix: np.ndarray, options: SpectrumOptions = SpectrumOptions()) -> np.ndarray:
    """Ascending eigenvalues of X = WᵀW/N for one 2-D matrix (M values, M = smaller side)."""
    gram = gram_matrix(matrix, options.dtype)
    return scipy.linalg.eigvalsh(gram, overwrite_a=True, check_finite=False, driver="evd")


def esd(matrices: list[np.ndarray], options: SpectrumOptions = SpectrumOptions()) -> np.ndarray:
    """The ESD of a layer: eigenvalues of each matrix pooled and sorted ascending.

    A plain linear layer is one matrix; a conv kernel is one matrix per kernel position,
    pooled into one ESD (each slice is a linear map between channels).
    """
    parts = [gram_eigenvalues(m, options) for m in matrices]
    evals = parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts))
    return evals
