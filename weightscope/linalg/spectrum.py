"""Eigenvalues of the correlation matrix X = WᵀW/N of a weight matrix.

Why the Gram matrix and a symmetric eigensolver rather than an SVD: only the eigenvalues
are needed, and `eigvalsh` of the M×M Gram matrix costs a fraction of a full SVD of W.
The price is squaring the condition number: eigenvalues below ~M·eps·λmax are noise
(`solver_floor`). That is harmless for the tail fit (it lives at the top of the
spectrum); the rank check works with explicit thresholds, and the pipeline's "auto"
precision counts the eigenvalues above a threshold in float64 (`gram_counts_below`)
where float32's error could decide them.

Backends: "cpu" is numpy/LAPACK (the Gram product by row blocks, then the classic or
the two-stage LAPACK eigensolver by size, see `weightscope.linalg._lapack`); any other device
("cuda", "cuda:1") runs the same two steps in torch (`weightscope.linalg.device`), imported only
then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from weightscope.errors import WeightscopeError
from weightscope.linalg._blas import blas_threads
from weightscope.linalg._lapack import (
    CLASSIC,
    TWO_STAGE,
    TWO_STAGE_MIN_SIZE,
    lapack_solver,
)
from weightscope.linalg.choices import EIG_DTYPES
from weightscope.linalg.gram import gram_matrix
from weightscope.linalg.inertia import counts_below


@dataclass(frozen=True)
class SpectrumOptions:
    """How eigenvalues are computed: the dtype of the Gram matrix and solver, and where."""

    dtype: str = "float64"
    #: "cpu" (numpy/LAPACK) or a torch device such as "cuda" or "cuda:1"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.dtype not in EIG_DTYPES:
            raise WeightscopeError(f"eigenvalue dtype must be one of {', '.join(EIG_DTYPES)}, got {self.dtype!r}")


def solver_floor(m: int, dtype: str) -> float:
    """Relative size (times λmax) below which eigenvalues of an M×M Gram matrix computed in
    ``dtype`` carry no information: M·eps, numpy's matrix_rank convention."""
    return m * float(np.finfo(dtype).eps)


def symmetric_eigenvalues(gram: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues of a symmetric matrix, which is overwritten; only its lower
    triangle (C order) is read.

    LAPACK's classic ``?syevd`` below `TWO_STAGE_MIN_SIZE`, the two-stage solver above it
    (1.3–1.5× faster at 4096), both called directly (`weightscope.linalg._lapack`); numpy's
    eigvalsh where the loaded LAPACK offers neither.

    Always single-threaded: a threaded tridiagonal reduction rounds differently with
    each thread count (1e-5·λmax apart in float32), which would make reports depend on
    the machine, and it collapses when other processes hold the cores
    (`weightscope.linalg._blas`). Parallelism comes from solving several layers at once instead.
    """
    preferred = TWO_STAGE if gram.shape[0] >= TWO_STAGE_MIN_SIZE else CLASSIC
    solve = lapack_solver(gram.dtype, preferred) or lapack_solver(gram.dtype, CLASSIC)
    with blas_threads(1):
        if solve is not None:
            return solve(np.ascontiguousarray(gram))
        return np.linalg.eigvalsh(gram)


#: Largest |w| solved unscaled is 2^SAFE_EXPONENT, smallest 2^-SAFE_EXPONENT. Trained
#: weights sit far inside (1e-3…1e2), so their spectra are computed exactly as before.
SAFE_EXPONENT = 20


def power_of_two_exponent(matrix: np.ndarray) -> int:
    """k such that 2^k·W has its largest |w| in [1, 2), or 0 when W is already in the safe
    range (or is zero, or not finite: those fail elsewhere).

    Alpha, D and every verdict are scale-invariant, but float32 is not: W scaled by 1e-30
    squares to ~1e-60 (zero in float32, "all-zero matrix"), and by 1e30 to ~1e60 (inf, a
    LAPACK failure). Scaling by a power of two (`numpy.ldexp`) is exact, subnormals
    included, so the eigenvalues of 2^k·W, divided by 4^k in float64, are those of W to
    the solver's precision. Finding the range costs a max and a min pass over W, no copy.
    """
    if not matrix.size:
        return 0
    largest = max(abs(float(matrix.max())), abs(float(matrix.min())))
    if not np.isfinite(largest) or largest == 0.0:
        return 0
    exponent = int(np.frexp(largest)[1]) - 1  # largest = m·2^exponent, 1 ≤ m < 2
    return 0 if -SAFE_EXPONENT <= exponent <= SAFE_EXPONENT else -exponent


def _constant_spectrum(matrix: np.ndarray) -> np.ndarray | None:
    """The ascending eigenvalues of X = WᵀW/N for a constant W, in closed form: c²·M once
    and M − 1 zeros; None for any other W (two passes, no copy; a NaN is never constant:
    non-finite matrices fail before any solve)."""
    if not matrix.size:
        return None
    first = float(matrix.flat[0])
    if not float(matrix.min()) == first == float(matrix.max()):
        return None
    evals = np.zeros(min(matrix.shape), dtype=np.float64)
    evals[-1] = first * first * evals.size
    return evals


#: Sees a matrix's Gram matrix X = WᵀW/N (C-ordered, its lower triangle holding X, in
#: the solver's dtype) before the eigensolver overwrites it: for a caller that needs WᵀW
#: too (`weightscope.analysis.model_measures`) and should not form it a second time.
GramHook = Callable[[np.ndarray], None]


def gram_eigenvalues(
    matrix: np.ndarray, options: SpectrumOptions = SpectrumOptions(), on_gram: GramHook | None = None
) -> np.ndarray:
    """Ascending eigenvalues of X = WᵀW/N for one 2-D matrix (M values, M = smaller side).

    Any finite W is solved: one whose entries would under- or overflow the Gram matrix is
    scaled by a power of two first (`power_of_two_exponent`) and its eigenvalues come back in
    float64, scaled back. A constant W (all-zero included) is not solved: X = c²·11ᵀ has
    the one eigenvalue c²·M and M − 1 zeros, in closed form. That is what an npz
    compression bomb decodes to (an 8192² zero matrix from 441 bytes): the solve would
    cost a minute and ~0.5 GB for a spectrum known in advance.

    ``on_gram`` sees the Gram matrix where one is formed here, on the CPU and unscaled.
    """
    constant = _constant_spectrum(matrix)
    if constant is not None:
        return constant
    exponent = power_of_two_exponent(matrix)
    if exponent:
        evals = gram_eigenvalues(np.ldexp(matrix, exponent), options)
        return np.ldexp(evals.astype(np.float64), -2 * exponent)
    if options.device != "cpu":
        from weightscope.linalg.device import torch_gram_eigenvalues

        return torch_gram_eigenvalues(matrix, options.dtype, options.device)
    gram = gram_matrix(matrix, options.dtype, full=False)
    if on_gram is not None:
        on_gram(gram)
    return symmetric_eigenvalues(gram)


def gram_counts_below(matrices: list[np.ndarray], shifts: list[float], device: str = "cpu") -> list[int]:
    """How many eigenvalues of the layer's X = WᵀW/N (all its matrices) lie below each
    shift, counted in float64 without computing them (`weightscope.linalg.inertia`): the
    counts a float64 `esd` gives, at one float64 Gram product per matrix plus n³/3 flops
    per shift. Scaled like `gram_eigenvalues` (the shifts by the same power of four); a
    constant matrix is counted on its closed-form spectrum, as it is solved."""
    totals = [0] * len(shifts)
    for matrix in matrices:
        constant = _constant_spectrum(matrix)
        if constant is not None:
            totals = [
                total + int(np.count_nonzero(constant < shift)) for total, shift in zip(totals, shifts, strict=True)
            ]
            continue
        exponent = power_of_two_exponent(matrix)
        if exponent:
            matrix = np.ldexp(matrix, exponent)
        scaled = [float(np.ldexp(shift, 2 * exponent)) for shift in shifts]
        if device != "cpu":
            from weightscope.linalg.device import torch_gram_counts_below

            counts = torch_gram_counts_below(matrix, scaled, device)
        else:
            counts = counts_below(gram_matrix(matrix, "float64"), scaled)
        totals = [total + count for total, count in zip(totals, counts, strict=True)]
    return totals


def esd(
    matrices: list[np.ndarray], options: SpectrumOptions = SpectrumOptions(), on_gram: GramHook | None = None
) -> np.ndarray:
    """The ESD of a layer: eigenvalues of each matrix pooled and sorted ascending.

    A plain linear layer is one matrix; a conv kernel is one matrix per kernel position,
    pooled into one ESD (each slice is a linear map between channels).
    """
    parts = [gram_eigenvalues(m, options, on_gram) for m in matrices]
    evals = parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts))
    return evals
