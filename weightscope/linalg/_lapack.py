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

The Gram product's BLAS ``?syrk`` (`blas_syrk`) is called the same way, through cblas, so
that it can add into the Gram matrix in place. The solvers are reached through the
LAPACKE C interface of the loaded OpenBLAS (numpy's wheel bundles one; scipy's another). The integer width is read off the symbol's name (the
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
    ("scipy_{interface}_{name}64_", ctypes.c_int64),
    ("{interface}_{name}64_", ctypes.c_int64),
    ("scipy_{interface}_{name}", ctypes.c_int32),
    ("{interface}_{name}", ctypes.c_int32),
)
_C_FLOATS = {np.dtype(np.float32): ("s", ctypes.c_float), np.dtype(np.float64): ("d", ctypes.c_double)}

Solver = Callable[[np.ndarray], np.ndarray]


def lapacke_symbols(name: str, interface: str = "LAPACKE") -> list[tuple[str, type]]:
    """The symbols of routine ``name`` (e.g. "dsytrf") in C ``interface`` (LAPACKE, or
    cblas for a BLAS routine) to try, in order, each with the C integer type of its build."""
    return [(pattern.format(interface=interface, name=name), c_int) for pattern, c_int in _SYMBOLS]


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


# cblas's enumerations (plain C ints in every build)
_ROW_MAJOR, _LOWER, _NO_TRANSPOSE, _TRANSPOSE = 101, 122, 111, 112

#: ``accumulate(gram, block)``: gram += blockᵀ·block, lower triangle only (`blas_syrk`).
Accumulate = Callable[[np.ndarray, np.ndarray], None]


@cache
def blas_syrk(dtype: np.dtype) -> Accumulate | None:
    """BLAS ``?syrk`` for float32 or float64, as ``accumulate(gram, block)``: adds blockᵀ·block
    (block K×M, any strides) into the lower triangle of the C-contiguous M×M ``gram``, in
    place; None where the loaded BLAS lacks it or answers a small test otherwise than numpy.

    Why: ``gram += block.T @ block`` makes the product as a second M×M matrix before
    adding it (numpy's own matmul calls ?syrk for ``a.T @ a``, into a new array), 128 MB
    at M = 4096 in float64; ?syrk with β = 1 adds into the Gram matrix itself, at the
    same half-of-a-product cost."""
    prefix, c_float = _C_FLOATS[np.dtype(dtype)]
    probe = np.random.default_rng(0).standard_normal((50, 40)).astype(dtype)
    expected = np.tril(2 * (probe.T @ probe))
    for symbol, c_int in lapacke_symbols(prefix + "syrk", "cblas"):
        function = lapack_function(symbol)
        if function is None:
            continue
        function.restype = None
        function.argtypes = [ctypes.c_int] * 3 + [c_int, c_int, c_float, ctypes.c_void_p, c_int, c_float]
        function.argtypes += [ctypes.c_void_p, c_int]

        def accumulate(gram: np.ndarray, block: np.ndarray, function: Any = function) -> None:
            k, m = block.shape
            if not k or not m:
                return
            item = block.itemsize
            # A row-major K×M block is Aᵀ·A ("transpose"); a column-major one is the
            # row-major M×K matrix B = Aᵀ, whose B·Bᵀ is the same product.
            if block.strides[1] == item and block.strides[0] >= m * item and block.strides[0] % item == 0:
                trans, lda = _TRANSPOSE, block.strides[0] // item
            elif block.strides[0] == item and block.strides[1] >= k * item and block.strides[1] % item == 0:
                trans, lda = _NO_TRANSPOSE, block.strides[1] // item
            else:
                block = np.ascontiguousarray(block)
                trans, lda = _TRANSPOSE, m
            if not gram.flags.c_contiguous or gram.shape != (m, m) or gram.dtype != block.dtype:
                raise ValueError(f"?syrk needs a C-contiguous {m}×{m} {block.dtype} Gram matrix")
            function(_ROW_MAJOR, _LOWER, trans, m, k, 1.0, block.ctypes.data, lda, 1.0, gram.ctypes.data, m)

        got = np.zeros((40, 40), dtype=dtype)
        accumulate(got, probe)
        accumulate(got, np.asfortranarray(probe))
        if np.allclose(np.tril(got), expected, rtol=0, atol=1e3 * np.finfo(dtype).eps * float(expected.max())):
            return accumulate
    return None
