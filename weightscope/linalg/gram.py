"""Orienting W and its Gram matrix X = WᵀW/N: the one step both spectrum backends share.

A leaf, so that the numpy backend (`spectrum`) and the torch backend (`device`) both
build on it without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def oriented(matrix: np.ndarray) -> np.ndarray:
    """Return W or Wᵀ so that rows N ≥ columns M (a view, no copy)."""
    return matrix if matrix.shape[0] >= matrix.shape[1] else matrix.T


def layer_shape(matrices: list[np.ndarray]) -> tuple[int, int]:
    """(N, M) of a layer's matrices, N ≥ M (all of a layer's matrices share a shape)."""
    n, m = oriented(matrices[0]).shape
    return int(n), int(m)


#: Rows of W converted to the solver's dtype at a time while the Gram matrix accumulates:
#: a float64 copy of a whole 11008×4096 matrix would cost 360 MB; a block costs ≤ 64 MB.
GRAM_BLOCK_BYTES = 64 * 2**20


def gram_matrix(matrix: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """X = WᵀW/N in ``dtype`` (N ≥ M after orienting), accumulated over row blocks so the
    only full-size buffer is the M×M result, whatever the stored dtype of W."""
    w = oriented(matrix)
    n, m = w.shape
    gram = np.zeros((m, m), dtype=dtype)
    for _, block in row_blocks(w, dtype):
        gram += block.T @ block
    gram /= n
    return gram


#: Rows of W converted at a time by the element-wise passes (rank noise, channel norms):
#: each makes a few temporaries of its block, so a smaller block than the Gram product's.
ELEMENTWISE_BLOCK_BYTES = 8 * 2**20


def row_blocks(
    matrix: np.ndarray, dtype: str | type = "float64", block_bytes: int = GRAM_BLOCK_BYTES
) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows of ``matrix`` converted to ``dtype``), ``block_bytes`` at a time:
    what every whole-matrix pass over W in a wide dtype walks, so that none of them holds
    a full-size copy. A block already in ``dtype`` is a view of ``matrix``: read-only."""
    rows = max(1, block_bytes // (max(matrix.shape[1], 1) * np.dtype(dtype).itemsize))
    for start in range(0, matrix.shape[0], rows):
        yield start, np.asarray(matrix[start : start + rows], dtype=dtype)
