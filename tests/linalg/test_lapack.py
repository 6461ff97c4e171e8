"""The LAPACK eigensolvers called directly: what they read and that the banded two-stage
path (`TWO_STAGE_BAND`) is the one taken where OpenBLAS is loaded."""

import numpy as np
import pytest

from weightscope.linalg._blas import loaded_blas_libraries
from weightscope.linalg._lapack import ROUTINES, TWO_STAGE, TWO_STAGE_BAND, lapack_solver
from weightscope.linalg.gram import gram_matrix
from weightscope.linalg.spectrum import symmetric_eigenvalues


@pytest.mark.parametrize("routine", ROUTINES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_solvers_read_the_lower_triangle_only(dtype, routine):
    solve = lapack_solver(np.dtype(dtype), routine)
    if solve is None:
        pytest.skip(f"this LAPACK has no ?{routine}")
    w = np.random.default_rng(5).standard_normal((500, 3 * TWO_STAGE_BAND + 17)).astype(dtype)
    gram = w.T @ w
    expected = np.linalg.eigvalsh(gram.astype(np.float64))
    lower = np.tril(gram)
    lower[np.triu_indices_from(lower, 1)] = np.nan  # anything read from here spoils every value
    got = solve(lower)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=0, atol=50 * np.finfo(dtype).eps * expected[-1])


def test_the_two_stage_solver_is_the_banded_one_under_openblas():
    if not any("openblas" in path for path in loaded_blas_libraries()):
        pytest.skip("not OpenBLAS")
    for dtype in (np.float32, np.float64):
        assert lapack_solver(np.dtype(dtype), TWO_STAGE).__qualname__.startswith("_banded_two_stage")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_an_unmirrored_gram_matrix_solves_like_the_full_one(dtype):
    w = np.random.default_rng(6).standard_normal((300, 200)).astype(np.float32)
    half = gram_matrix(w, dtype, full=False)
    full = gram_matrix(w, dtype)
    np.testing.assert_array_equal(np.tril(half), np.tril(full))
    np.testing.assert_array_equal(full, full.T)
    np.testing.assert_array_equal(symmetric_eigenvalues(half), symmetric_eigenvalues(full))
