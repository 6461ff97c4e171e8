"""Orienting W and its Gram matrix X = WᵀW/N: the one step both spectrum backends share.

A leaf (numpy and the loaded BLAS only), so that the numpy backend (`spectrum`) and the
torch backend (`device`) both build on it without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from weightscope.linalg._lapack import blas_syrk


def oriented(matrix: np.ndarray) -> np.ndarray:
    """Return W or Wᵀ so that rows N ≥ columns M (a view, no copy)."""
    return matrix if matrix.shape[0] >= matrix.shape[1] else matrix.T


def layer_shape(matrices: list[np.ndarray]) -> tuple[int, int]:
    """(N, M) of a layer's matrices, N ≥ M (all of a layer's matrices share a shape)."""
    n, m = oriented(matrices[0]).shape
    return int(n), int(m)


#: Rows of W converted to the solver's dtype at a time while the Gram matrix accumulates:
#: a float64 copy of a whole 11008×4096 matrix would cost 360 MB; a block costs ≤ 8 MB
#: (256 rows at 4096 columns; 16 and 32 MB blocks were no faster side by side here), so
#: that a float64 Llama MLP layer (308 MB with its Gram matrix) and a 4096² one (200 MB)
#: fit the scheduler's budget together (516 MB: `weightscope.execution.plan`).
GRAM_BLOCK_BYTES = 8 * 2**20


def gram_matrix(matrix: np.ndarray, dtype: str = "float64", *, full: bool = True) -> np.ndarray:
    """X = WᵀW/N in ``dtype`` (N ≥ M after orienting), accumulated over row blocks (W
    itself where it is in ``dtype`` already), so the only full-size buffer is the M×M
    result, whatever the stored dtype of W: `gram_bytes` is what it holds.

    ``full=False``: only the lower triangle (C order) is sure to hold X, all the
    eigensolvers read (`weightscope.linalg._lapack`); mirroring it cost 0.07 s of a
    4096² float64 layer's solve."""
    w = oriented(matrix)
    n, m = w.shape
    gram = np.zeros((m, m), dtype=dtype)
    accumulate = blas_syrk(gram.dtype)
    if accumulate is None:  # numpy's product, with its M×M temporary
        for _, block in _blocks(w, gram.dtype):
            gram += block.T @ block
            del block  # before the next one is converted
    else:
        for _, block in _blocks(w, gram.dtype):
            accumulate(gram, block)
            del block
        if full:
            mirror_lower(gram)
    gram /= n
    return gram


def _blocks(w: np.ndarray, dtype: np.dtype) -> Iterator[tuple[int, np.ndarray]]:
    """W in one piece where it is in ``dtype`` (a view), else converted rows at a time."""
    return row_blocks(w, dtype, w.nbytes if w.dtype == dtype else GRAM_BLOCK_BYTES)


#: Rows mirrored at a time (`mirror_lower`).
_MIRROR_ROWS = 256


def mirror_lower(matrix: np.ndarray) -> None:
    """Copy the strictly lower triangle of a square C-ordered matrix onto its upper one,
    in place, in slabs of rows, the triangle inside each slab row by row: no temporary
    (numpy proves the two parts of each copy disjoint), and the diagonal as it was."""
    n = matrix.shape[0]
    for start in range(0, n, _MIRROR_ROWS):
        stop = min(start + _MIRROR_ROWS, n)
        for row in range(start, stop - 1):
            matrix[row, row + 1 : stop] = matrix[row + 1 : stop, row]
        matrix[start:stop, stop:] = matrix[stop:, start:stop].T


def rows_within(block_bytes: int, m: int, itemsize: int) -> int:
    """Rows of M elements of ``itemsize`` bytes that fit in ``block_bytes`` (at least one)."""
    return max(1, block_bytes // (max(m, 1) * itemsize))


def gram_bytes(n: int, m: int, dtype: str, source: str = "float32") -> int:
    """Peak bytes `gram_matrix` holds for an N×M matrix (N ≥ M) decoded in ``source``: the
    M×M result and a converted row block of W (`GRAM_BLOCK_BYTES`; none where W is in
    ``dtype`` already), plus numpy's M×M product where BLAS offers no ?syrk (`blas_syrk`).

    What tracemalloc measures, to within 1 % (tests/linalg/test_gram.py); LAPACK's
    eigensolver then adds 10 MB at M = 4096 in float64 (its band and workspaces)."""
    itemsize = np.dtype(dtype).itemsize
    block = 0 if np.dtype(source) == np.dtype(dtype) else min(rows_within(GRAM_BLOCK_BYTES, m, itemsize), n) * m
    product = m * m if blas_syrk(np.dtype(dtype)) is None else 0
    return (m * m + block + product) * itemsize


#: Rows of W converted at a time by the element-wise passes (rank noise, channel norms):
#: each makes a few temporaries of its block, so a smaller block than the Gram product's.
ELEMENTWISE_BLOCK_BYTES = 8 * 2**20


def row_blocks(
    matrix: np.ndarray, dtype: str | type | np.dtype = "float64", block_bytes: int = GRAM_BLOCK_BYTES
) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows of ``matrix`` converted to ``dtype``), ``block_bytes`` at a time:
    what every whole-matrix pass over W in a wide dtype walks, so that none of them holds
    a full-size copy. A block already in ``dtype`` is a view of ``matrix``: read-only."""
    rows = rows_within(block_bytes, matrix.shape[1], np.dtype(dtype).itemsize)
    for start in range(0, matrix.shape[0], rows):
        yield start, np.asarray(matrix[start : start + rows], dtype=dtype)
