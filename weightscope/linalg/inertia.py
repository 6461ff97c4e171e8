"""How many eigenvalues of a symmetric matrix lie below a shift, without computing them.

Sylvester's law of inertia: G − τI = L D Lᵀ with L unit lower triangular and D block
diagonal (1×1 and 2×2 blocks, Bunch–Kaufman pivoting, LAPACK ``dsytrf``) has as many
negative eigenvalues as D, i.e. as G has eigenvalues below τ. The factorisation costs
n³/3 flops and no eigenvectors, a sixth of the tridiagonal reduction that dominates an
eigensolve (single-threaded at 2048²: LDLᵀ 1.41 s, float64 eigensolve 5.59 s, float32
2.99 s, thread CPU time on a loaded 2-core VM), and it is backward
stable, so the count agrees with the one a float64 eigensolver's eigenvalues give except
for an eigenvalue within float64's rounding (~n·eps₆₄·‖G‖) of τ.

Used by the "auto" precision policy: float32 eigenvalues for everything else, and the
exact float64 count of eigenvalues above each rank threshold where float32's error band
around it holds eigenvalues (`weightscope.linalg.rank.EigenCounts`,
`weightscope.analysis.spectra`).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import cache

import numpy as np

from weightscope.linalg._blas import blas_threads
from weightscope.linalg._lapack import _COLUMN_MAJOR, lapack_function, lapacke_symbols
from weightscope.linalg.gram import mirror_lower

#: (matrix, shift) → count of eigenvalues below the shift; destroys the matrix.
Counter = Callable[[np.ndarray, float], int]


def negative_pivots(diagonal: np.ndarray, subdiagonal: np.ndarray, pivots: np.ndarray) -> int:
    """Negative eigenvalues of the block-diagonal D of a Bunch–Kaufman factorisation
    (LAPACK ``?sytrf`` with uplo "L", 1-based pivots), from D's diagonal, its subdiagonal
    (D[k+1, k], length n − 1) and the pivot vector: a 2×2 block starts where ``pivots``
    is negative and equal to the next entry."""
    n = len(pivots)
    diagonal = np.asarray(diagonal, dtype=np.float64)
    off = np.zeros(n)
    off[:-1] = subdiagonal
    starts = np.zeros(n, dtype=bool)
    starts[:-1] = (pivots[:-1] < 0) & (pivots[:-1] == pivots[1:])
    # Blocks are disjoint: a start is never the second row of an earlier block.
    for k in np.flatnonzero(starts):
        if k > 0 and starts[k - 1]:
            starts[k] = False
    seconds = np.zeros(n, dtype=bool)
    seconds[1:] = starts[:-1]
    singles = ~(starts | seconds)
    count = int(np.count_nonzero(diagonal[singles] < 0))
    a, c, b = diagonal[starts], diagonal[np.flatnonzero(starts) + 1], off[starts]
    determinant = a * c - b * b
    # A 2×2 block with a negative determinant has one negative eigenvalue; with a positive
    # one, two when its trace is negative, none otherwise.
    count += int(np.count_nonzero(determinant < 0))
    count += 2 * int(np.count_nonzero((determinant > 0) & (a + c < 0)))
    return count


def _bind(symbol: str, c_int: type) -> Counter | None:
    # The same symbol search as the eigensolvers (`weightscope.linalg._lapack`).
    function = lapack_function(symbol)
    if function is None:
        return None
    double = ctypes.POINTER(ctypes.c_double)
    function.restype = c_int
    function.argtypes = [ctypes.c_int, ctypes.c_char, c_int, double, c_int, ctypes.POINTER(c_int)]
    index = np.dtype(np.int64 if c_int is ctypes.c_int64 else np.int32)

    def count(matrix: np.ndarray, shift: float, function=function, double=double, c_int=c_int, index=index) -> int:
        n = matrix.shape[0]
        matrix[np.diag_indices(n)] -= shift
        pivots = np.empty(n, dtype=index)
        info = function(
            _COLUMN_MAJOR, b"L", n, matrix.ctypes.data_as(double), n, pivots.ctypes.data_as(ctypes.POINTER(c_int))
        )
        if info < 0:
            raise np.linalg.LinAlgError(f"LAPACK {symbol} failed (info={info})")
        # info > 0: an exactly zero pivot, i.e. an eigenvalue exactly at the shift; it
        # is not below it, and the 1×1 block reads 0 (not negative). Column-major "L"
        # on a C-ordered array is its upper triangle: D[k+1, k] sits at [k, k+1].
        return negative_pivots(np.diagonal(matrix), np.diagonal(matrix, offset=1), pivots)

    return count


@cache
def _counter() -> Counter | None:
    """The LAPACK-backed counter, checked against numpy on a small indefinite matrix."""
    probe = np.random.default_rng(0).standard_normal((64, 64))
    probe = probe @ probe.T
    values = np.linalg.eigvalsh(probe)
    shift = float(values[20] + values[21]) / 2  # 21 eigenvalues below
    for symbol, c_int in lapacke_symbols("dsytrf"):
        count = _bind(symbol, c_int)
        if count is not None and count(probe.copy(), shift) == 21:
            return count
    return None


def _restore_upper(matrix: np.ndarray, diagonal: np.ndarray) -> None:
    """Rebuild a symmetric C-ordered matrix from its strictly lower triangle and its saved
    diagonal (no M×M temporary)."""
    mirror_lower(matrix)
    matrix[np.diag_indices(matrix.shape[0])] = diagonal


def counts_below(matrix: np.ndarray, shifts: list[float]) -> list[int]:
    """Number of eigenvalues of the symmetric float64 ``matrix`` below each shift.

    ``matrix`` must be C-contiguous float64 and is overwritten. Single-threaded, like the
    eigensolvers (`weightscope.linalg.spectrum.symmetric_eigenvalues`): a threaded
    factorisation pivots the same but rounds with the thread count. Where no LAPACK
    ``dsytrf`` is loaded, numpy's eigvalsh counts instead (same count, 6× the time).

    Several shifts need no copy of the matrix: ``dsytrf`` ("L", column-major) writes only
    the C-ordered upper triangle and the diagonal, so the matrix is rebuilt from its
    untouched strictly lower triangle and the saved diagonal between two factorisations
    (O(M²) copying against the factorisation's M³/3 flops).
    """
    if matrix.dtype != np.float64 or not matrix.flags.c_contiguous:
        raise ValueError("counts_below needs a C-contiguous float64 matrix")
    if not matrix.size:
        return [0] * len(shifts)
    counter = _counter()
    with blas_threads(1):
        if counter is None:
            values = np.linalg.eigvalsh(matrix)
            return [int(np.count_nonzero(values < shift)) for shift in shifts]
        diagonal = np.diagonal(matrix).copy() if len(shifts) > 1 else None
        counts = []
        for index, shift in enumerate(shifts):
            if index:
                assert diagonal is not None
                _restore_upper(matrix, diagonal)
            counts.append(counter(matrix, shift))
        return counts
