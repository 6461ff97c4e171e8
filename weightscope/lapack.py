"""LAPACK's two-stage symmetric eigensolver (``?syevd_2stage``), which scipy does not wrap.

Why: eigenvalues of a large Gram matrix are weightscope's dominant cost, and nearly all
of it is the reduction to tridiagonal form. The classic reduction (``?sytrd``, behind
``scipy.linalg.eigvalsh``) is half matrix-vector work and runs at memory speed; the
two-stage one goes to a band matrix with matrix-matrix work first. Measured single-
threaded here on a 4096×4096 Gram matrix: float32 3.9 s → 3.0 s, float64 6.3 s → 4.2 s,
same eigenvalues (≤ 3e-6·λmax in float32, ≤ 8e-15·λmax in float64). Below ~2048 the
classic path is faster (1536: 0.13 s vs 0.20 s), so `spectrum` only calls this above
`TWO_STAGE_MIN_SIZE`. LAPACK offers the two-stage solver for eigenvalues only, which is
exactly weightscope's case.

The routine is reached through the LAPACKE C interface of the OpenBLAS that the numpy
and scipy wheels bundle. The integer width is read off the symbol's name (the wheels'
``…64_`` builds take 64-bit integers); a library without a known symbol, or whose
answer on a small test matrix disagrees with ``scipy.linalg.eigvalsh``, is not used.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import cache

import numpy as np

from .blas import loaded_blas_libraries

#: Smallest matrix for which the two-stage solver beats the classic one here.
TWO_STAGE_MIN_SIZE = 2048

_COLUMN_MAJOR = 102
# Symbol name patterns ({} is s or d) and the C integer type each build uses.
_SYMBOLS = (
    ("scipy_LAPACKE_{}syevd_2stage64_", ctypes.c_int64),
    ("LAPACKE_{}syevd_2stage64_", ctypes.c_int64),
    ("scipy_LAPACKE_{}syevd_2stage", ctypes.c_int32),
    ("LAPACKE_{}syevd_2stage", ctypes.c_int32),
)
_C_FLOATS = {np.dtype(np.float32): ("s", ctypes.c_float), np.dtype(np.float64): ("d", ctypes.c_double)}

Solver = Callable[[np.ndarray], np.ndarray]


def _bind(prefix: str, c_float: type, symbol_pattern: str, c_int: type) -> Solver | None:
    for path in loaded_blas_libraries():
        try:
            function = getattr(ctypes.CDLL(path), symbol_pattern.format(prefix), None)
        except OSError:
            continue
        if function is None:
            continue
        pointer = ctypes.POINTER(c_float)
        function.restype = c_int
        function.argtypes = [ctypes.c_int, ctypes.c_char, ctypes.c_char, c_int, pointer, c_int, pointer]

        def solve(gram: np.ndarray, function=function, pointer=pointer) -> np.ndarray:
            """Ascending eigenvalues of a C-contiguous symmetric matrix; destroys it."""
            n = gram.shape[0]
            values = np.empty(n, dtype=gram.dtype)
            # Symmetric, so reading the C array as column-major is the same matrix.
            info = function(_COLUMN_MAJOR, b"N", b"L", n, gram.ctypes.data_as(pointer), n, values.ctypes.data_as(pointer))
            if info != 0:
                raise np.linalg.LinAlgError(f"LAPACK ?syevd_2stage failed (info={info})")
            return values

        return solve
    return None


@cache
def two_stage_solver(dtype: np.dtype) -> Solver | None:
    """The two-stage eigenvalue solver for float32 or float64, or None where unavailable."""
    import scipy.linalg

    prefix, c_float = _C_FLOATS[np.dtype(dtype)]
    for pattern, c_int in _SYMBOLS:
        solve = _bind(prefix, c_float, pattern, c_int)
        if solve is None:
            continue
        probe = np.random.default_rng(0).standard_normal((64, 64)).astype(dtype)
        probe = probe @ probe.T
        expected = scipy.linalg.eigvalsh(probe)
        try:
            got = solve(np.ascontiguousarray(probe))
        except np.linalg.LinAlgError:
            continue
        if np.allclose(got, expected, rtol=0, atol=1e3 * np.finfo(dtype).eps * expected[-1]):
            return solve
    return None
