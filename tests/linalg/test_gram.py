"""The Gram product's memory: what `gram_matrix` allocates is what `gram_bytes` (and with
it the scheduler's per-layer estimate) says, measured by tracemalloc (numpy reports its
buffers to it), and the product is numpy's to rounding."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from weightscope.linalg import gram as gram_module
from weightscope.linalg.gram import GRAM_BLOCK_BYTES, gram_bytes, gram_matrix


def _allocated(matrix: np.ndarray, dtype: str) -> tuple[int, np.ndarray]:
    """Peak bytes allocated while `gram_matrix` runs, and its result."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = gram_matrix(matrix, dtype)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - before, result


# (rows, columns, stored dtype, Gram dtype): several converted row blocks, a wide matrix
# (transposed view), W used in place, and float64 weights solved in float32
CASES = [
    (3000, 1600, np.float32, "float64"),
    (1600, 3000, np.float32, "float64"),
    (3000, 1600, np.float32, "float32"),
    (3000, 1600, np.float64, "float32"),
]


@pytest.mark.parametrize(("rows", "columns", "stored", "dtype"), CASES)
def test_gram_allocates_what_gram_bytes_says(rows: int, columns: int, stored: type, dtype: str) -> None:
    matrix = np.random.default_rng(0).standard_normal((rows, columns)).astype(stored)
    m = min(rows, columns)
    assert m * m * np.dtype(dtype).itemsize > GRAM_BLOCK_BYTES  # several blocks to convert or one view
    allocated, result = _allocated(matrix, dtype)
    estimate = gram_bytes(max(rows, columns), m, dtype, np.dtype(stored).name)
    # Within 1 %, both ways: an M×M temporary (numpy's ``gram += block.T @ block``) is
    # +100 % of the Gram matrix; a full-size converted copy of W +290 %.
    assert 0.99 * estimate <= allocated <= 1.01 * estimate, (allocated, estimate)
    wide = matrix.astype(np.float64)
    expected = wide.T @ wide / rows if rows >= columns else wide @ wide.T / columns
    tolerance = 1e-13 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(result, expected, rtol=0, atol=tolerance * np.abs(expected).max())
    assert np.array_equal(result, result.T)


def test_without_blas_syrk_the_temporary_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A BLAS without ?syrk falls back on numpy's product, whose M×M temporary the
    estimate then includes."""
    monkeypatch.setattr(gram_module, "blas_syrk", lambda dtype: None)
    matrix = np.random.default_rng(1).standard_normal((3000, 1024)).astype(np.float32)
    allocated, result = _allocated(matrix, "float64")
    estimate = gram_bytes(3000, 1024, "float64")
    assert 0.99 * estimate <= allocated <= 1.01 * estimate
    wide = matrix.astype(np.float64)
    np.testing.assert_allclose(result, wide.T @ wide / 3000, rtol=0, atol=1e-13 * float(np.abs(result).max()))
