"""LAPACK's symmetric eigenvalue solvers, called directly in the OpenBLAS numpy bundles.

Why not scipy.linalg.eigvalsh: importing any part of scipy costs ~0.25 s here (its
array-API layer scans numpy), a third of a whole small-model analysis, and scipy does
not wrap the faster solver below anyway. Why not numpy.linalg.eigvalsh: it timed 1.9×
slower in float32 at 4096 than the same LAPACK routine called directly.

Two routines, chosen by size (`TWO_STAGE_MIN_SIZE`): the classic ``?syevd`` and the
two-stage ``?syevd_2stage``. Nearly all the cost is the reduction to tridiagonal form;
the classic one (``?sytrd``) is half matrix-vector work and runs at memory speed, the
two-stage one goes to a band matrix with matrix-matrix work first. Measured single-
threaded here on a 4096×4096 Gram matrix: float32 3.9 s → 3.0 s, float64 6.3 s → 4.2 s,
same eigenvalues (≤ 3e-6·λmax in float32, ≤ 8e-15·λmax in float64). Below ~2048 the
classic one is faster (1536: 0.13 s vs 0.20 s).

Both are reached through the LAPACKE C interface of the loaded OpenBLAS (numpy's wheel
bundles one; scipy's another). The integer width is read off the symbol's name (the
wheels' ``…64_`` builds take 64-bit integers); a library without a known symbol, or whose
answer on a small test matrix disagrees with ``numpy.linalg.eigvalsh``, is not used, and
`weightscope.linalg.spectrum` falls back to numpy.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from weightscope.linalg._blas import loaded_blas_libraries

#: Smallest matrix for which the two-stage solver beats the classic one here.
TWO_STAGE_MIN_SIZE = 2048
#: The LAPACK routines, by name: the classic and the two-stage divide-and-conquer solver.
CLASSIC, TWO_STAGE = "syevd", "syevd_2stage"
ROUTINES = (CLASSIC, TWO_STAGE)

_COLUMN_MAJOR = 102
# Symbol name patterns ({name}: the routine with its precision letter, e.g. dsyevd) and the
# C integer type each build uses; 64-bit builds first, so that numpy's library is chosen
# whether or not scipy's (32-bit) is loaded too, and answers do not depend on what else was
# imported.
_SYMBOLS = (
    ("scipy_LAPACKE_{name}64_", ctypes.c_int64),
    ("LAPACKE_{name}64_", ctypes.c_int64),
    ("scipy_LAPACKE_{name}", ctypes.c_int32),
    ("LAPACKE_{name}", ctypes.c_int32),
)
_C_FLOATS = {np.dtype(np.float32): ("s", ctypes.c_float), np.dtype(np.float64): ("d", ctypes.c_double)}

Solver = Callable[[np.ndarray], np.ndarray]


def lapacke_symbols(name: str) -> list[tuple[str, type]]:
    """The LAPACKE symbols of routine ``name`` (e.g. "dsytrf") to try, in order, each with
    the C integer type of its build."""
    return [(pattern.format(name=name), c_int) for pattern, c_int in _SYMBOLS]


def lapack_function(symbol: str) -> Any | None:
    """``symbol`` from the first loaded BLAS/LAPACK library that exports it (None: none does)."""
    for path in loaded_blas_libraries():
        try:
            function = getattr(ctypes.CDLL(path), symbol, None)
        except OSError:
            continue
        if function is not None:
            return function
    return None


def _bind(symbol: str, c_float: type, c_int: type) -> Solver | None:
    function = lapack_function(symbol)
    if function is None:
        return None
    pointer: Any = ctypes.POINTER(c_float)
    function.restype = c_int
    function.argtypes = [ctypes.c_int, ctypes.c_char, ctypes.c_char, c_int, pointer, c_int, pointer]

    def solve(gram: np.ndarray, function=function, pointer=pointer) -> np.ndarray:
        """Ascending eigenvalues of a C-contiguous symmetric matrix; destroys it."""
        n = gram.shape[0]
        values = np.empty(n, dtype=gram.dtype)
        # Symmetric, so reading the C array as column-major is the same matrix.
        info = function(_COLUMN_MAJOR, b"N", b"L", n, gram.ctypes.data_as(pointer), n, values.ctypes.data_as(pointer))
        if info != 0:
            raise np.linalg.LinAlgError(f"LAPACK {symbol} failed (info={info})")
        return values

    return solve


@cache
def lapack_solver(dtype: np.dtype, routine: str) -> Solver | None:
    """``routine`` (one of `ROUTINES`) for float32 or float64, or None where unavailable."""
    prefix, c_float = _C_FLOATS[np.dtype(dtype)]
    probe = np.random.default_rng(0).standard_normal((64, 64)).astype(dtype)
    probe = probe @ probe.T
    expected = np.linalg.eigvalsh(probe)
    for symbol, c_int in lapacke_symbols(prefix + routine):
        solve = _bind(symbol, c_float, c_int)
        if solve is None:
            continue
        try:
            got = solve(probe.copy())
        except np.linalg.LinAlgError:
            continue
        if np.allclose(got, expected, rtol=0, atol=1e3 * np.finfo(dtype).eps * expected[-1]):
            return solve
    return None
