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

The two-stage solver is run as its three steps — ``?sytrd_sy2sb`` (to a band of
`TWO_STAGE_BAND` sub-diagonals), ``?sytrd_sb2st`` (band to tridiagonal), ``?sterf`` —
called through the Fortran interface, because ``?syevd_2stage`` fixes the band at
LAPACK's own choice (32 here) and the band is what decides its speed: the first step
does matrix-matrix work on panels of that width. Best of three, single-threaded, on
4096² Gram matrices: band 32 → 64, float64 4.44 → 3.89 s, float32 2.39 → 2.06 s
(at 3072: 2.00 → 1.85 s and 1.11 → 1.05 s; a band of 96 was slower than 64, 128 slower
still, its second step growing). Where those symbols are missing or disagree with numpy
on a test matrix, ``?syevd_2stage`` runs instead.

Every solver reads the C-ordered lower triangle (LAPACK's "U" of the column-major
array it sees), the one `weightscope.linalg.gram.gram_matrix` fills.

The Gram product's BLAS ``?syrk`` (`blas_syrk`) is called the same way, through cblas, so
that it can add into the Gram matrix in place. The solvers are reached through the
LAPACKE C interface of the loaded OpenBLAS (numpy's wheel bundles one; scipy's another). The integer width is read off the symbol's name (the
wheels' ``…64_`` builds take 64-bit integers); a library without a known symbol, or whose
answer on a small test matrix disagrees with ``numpy.linalg.eigvalsh``, is not used, and
`weightscope.linalg.spectrum` falls back to numpy.
"""

from __future__ import annotations

import ctypes
import math
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
# Per build of OpenBLAS, its symbol name patterns ({name}: the routine with its precision
# letter, e.g. dsyevd) in a C interface and in Fortran, and the C integer type it uses;
# 64-bit builds first, so that numpy's library is chosen whether or not scipy's (32-bit)
# is loaded too, and answers do not depend on what else was imported.
_BUILDS = (
    ("scipy_{interface}_{name}64_", "scipy_{name}_64_", ctypes.c_int64),
    ("{interface}_{name}64_", "{name}_64_", ctypes.c_int64),
    ("scipy_{interface}_{name}", "scipy_{name}_", ctypes.c_int32),
    ("{interface}_{name}", "{name}_", ctypes.c_int32),
)
_C_FLOATS = {np.dtype(np.float32): ("s", ctypes.c_float), np.dtype(np.float64): ("d", ctypes.c_double)}

Solver = Callable[[np.ndarray], np.ndarray]


def lapacke_symbols(name: str, interface: str = "LAPACKE") -> list[tuple[str, type]]:
    """The symbols of routine ``name`` (e.g. "dsytrf") in C ``interface`` (LAPACKE, or
    cblas for a BLAS routine) to try, in order, each with the C integer type of its build."""
    return [(pattern.format(interface=interface, name=name), c_int) for pattern, _, c_int in _BUILDS]


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
        # The C array read as column-major is its transpose: "U" is the C lower triangle.
        info = function(_COLUMN_MAJOR, b"N", b"U", n, gram.ctypes.data_as(pointer), n, values.ctypes.data_as(pointer))
        if info != 0:
            raise np.linalg.LinAlgError(f"LAPACK {symbol} failed (info={info})")
        return values

    return solve


#: Sub-diagonals of the band the two-stage reduction goes through (module docstring).
TWO_STAGE_BAND = 64


def _fortran(name: str) -> tuple[Any, type] | None:
    """Fortran LAPACK routine ``name`` (e.g. "dsterf") of the loaded library and its C
    integer type, or None."""
    for _, pattern, c_int in _BUILDS:
        function = lapack_function(pattern.format(name=name))
        if function is not None:
            function.restype = None
            return function, c_int
    return None


def _address(array: np.ndarray) -> ctypes.c_void_p:
    """An array's data pointer as a C pointer argument (a bare int would pass as a C int)."""
    return ctypes.c_void_p(array.ctypes.data)


def _workspace(size: np.floating) -> int:
    """A workspace size LAPACK returned in a float array, rounded up: float32 holds
    integers exactly only to 2^24, and a size rounded down is refused."""
    return max(int(math.ceil(float(size) * (1 + 2.0**-20))), 1)


def _banded_two_stage(dtype: np.dtype) -> Solver | None:
    """The two-stage solver in its three steps with a band of `TWO_STAGE_BAND` (module
    docstring), or None where the Fortran routines are not all found in one build."""
    prefix, _ = _C_FLOATS[np.dtype(dtype)]
    to_band, to_tridiagonal, solve_tridiagonal = (
        _fortran(prefix + name) for name in ("sytrd_sy2sb", "sytrd_sb2st", "sterf")
    )
    if to_band is None or to_tridiagonal is None or solve_tridiagonal is None:
        return None
    (sy2sb, c_int), (sb2st, c_int_2), (sterf, c_int_3) = to_band, to_tridiagonal, solve_tridiagonal
    if not c_int == c_int_2 == c_int_3:
        return None
    one = ctypes.c_size_t(1)  # gfortran's hidden length of each one-letter argument

    def ref(value: int) -> Any:
        return ctypes.byref(c_int(value))

    def solve(gram: np.ndarray) -> np.ndarray:
        """Ascending eigenvalues of a C-contiguous symmetric matrix (its lower triangle
        read); destroys it."""
        n, kd, info = gram.shape[0], TWO_STAGE_BAND, c_int(0)
        if not n:
            return np.zeros(0, dtype=dtype)
        ab = np.zeros((n, kd + 1), dtype=dtype)  # column-major (kd+1)×n
        tau, query = np.zeros(n, dtype=dtype), np.zeros(2, dtype=dtype)
        args = (b"U", ref(n), ref(kd), _address(gram), ref(n), _address(ab), ref(kd + 1), _address(tau))
        sy2sb(*args, _address(query), ref(-1), ctypes.byref(info), one)
        work = np.zeros(_workspace(query[0]), dtype=dtype)
        sy2sb(*args, _address(work), ref(work.size), ctypes.byref(info), one)
        if info.value != 0:
            raise np.linalg.LinAlgError(f"LAPACK {prefix}sytrd_sy2sb failed (info={info.value})")
        diagonal, off = np.zeros(n, dtype=dtype), np.zeros(max(n, 1), dtype=dtype)
        band = (b"N", b"N", b"U", ref(n), ref(kd), _address(ab), ref(kd + 1), _address(diagonal), _address(off))
        sb2st(*band, _address(query), ref(-1), _address(query[1:]), ref(-1), ctypes.byref(info), one, one, one)
        householder, work = np.zeros(_workspace(query[0]), dtype=dtype), np.zeros(_workspace(query[1]), dtype=dtype)
        sb2st(
            *band,
            _address(householder),
            ref(householder.size),
            _address(work),
            ref(work.size),
            ctypes.byref(info),
            one,
            one,
            one,
        )
        if info.value != 0:
            raise np.linalg.LinAlgError(f"LAPACK {prefix}sytrd_sb2st failed (info={info.value})")
        sterf(ref(n), _address(diagonal), _address(off), ctypes.byref(info))
        if info.value != 0:
            raise np.linalg.LinAlgError(f"LAPACK {prefix}sterf failed (info={info.value})")
        return diagonal

    return solve


def _agrees(solve: Solver, dtype: np.dtype, size: int = 64) -> bool:
    """Whether ``solve`` gives numpy's eigenvalues on a seeded test matrix (to rounding)."""
    probe = np.random.default_rng(0).standard_normal((size, size)).astype(dtype)
    probe = probe @ probe.T
    expected = np.linalg.eigvalsh(probe)
    try:
        got = solve(np.tril(probe))  # the lower triangle is all a solver may read
    except np.linalg.LinAlgError:
        return False
    return bool(np.allclose(got, expected, rtol=0, atol=1e3 * np.finfo(dtype).eps * expected[-1]))


@cache
def lapack_solver(dtype: np.dtype, routine: str) -> Solver | None:
    """``routine`` (one of `ROUTINES`) for float32 or float64, or None where unavailable."""
    prefix, c_float = _C_FLOATS[np.dtype(dtype)]
    if routine == TWO_STAGE:
        banded = _banded_two_stage(np.dtype(dtype))
        if banded is not None and _agrees(banded, np.dtype(dtype), 2 * TWO_STAGE_BAND + 3):
            return banded
    for symbol, c_int in lapacke_symbols(prefix + routine):
        solve = _bind(symbol, c_float, c_int)
        if solve is not None and _agrees(solve, np.dtype(dtype)):
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
