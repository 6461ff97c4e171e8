"""Which eigenvalues of X = WᵀW/N are numerically zero: the rank tolerance, and the count.

The precision policy (`weightscope.analysis.spectra`) and the rank-collapse check
(`weightscope.checks.rank.rank_info`) both read the tolerance from here, so it is a numerics
question answered below both: it depends on the stored dtype, the shape, the stored
values' rounding and the eigensolver's floor, never on a verdict.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from weightscope.errors import WeightscopeError
from weightscope.linalg.gram import ELEMENTWISE_BLOCK_BYTES, layer_shape, oriented, row_blocks
from weightscope.linalg.spectrum import solver_floor

#: Significand precision p (mantissa bits + 1) of each stored float dtype (safetensors
#: names); its unit roundoff is u = 2^−p.
PRECISION_BITS = {
    "F64": 53,
    "F32": 24,
    "F16": 11,
    "BF16": 8,
    "F8_E4M3": 4,
    "F8_E5M2": 3,
}

#: Stored dtypes judged by numpy.linalg.matrix_rank's convention; coarser ones by the
#: rounding-noise floor of their stored values (see `zero_tolerance`).
_MATRIX_RANK_DTYPES = ("F64", "F32")


def _bits(stored_dtype: str) -> int:
    bits = PRECISION_BITS.get(stored_dtype)
    if bits is None:
        raise WeightscopeError(f"unknown stored dtype {stored_dtype!r} (expected one of {', '.join(PRECISION_BITS)})")
    return bits


def zero_tolerance(
    matrices: list[np.ndarray],
    lambda_max: float,
    stored_dtype: str,
    eig_dtype: str,
    noise_factor: float,
) -> float:
    """The eigenvalue of X = WᵀW/N at or below which a layer's eigenvalue is numerically zero.

    - F32/F64 weights: `numpy.linalg.matrix_rank`'s convention, the one users know: a
      singular value is zero below σmax·max(N, M)·eps of the stored dtype, i.e.
      λ ≤ λmax·(max(N, M)·eps)². A rank-20 product plus noise 2e-5 of its entry scale is
      rank 20 here, as matrix_rank says. For F64 that floor (~1e-26·λmax) lies far under
      what any Gram eigensolver resolves; `numerical_rank` then counts on W's singular
      values, as matrix_rank does.
    - Coarser dtypes (F16, BF16, FP8), where max(N, M)·eps exceeds 1 and that convention
      calls everything zero: the floor of the rounding noise itself, ``noise_factor``
      (`Thresholds.rank_noise_factor`, 1.5) × the top eigenvalue of EᵀE/N for the
      rounding error E of the stored values (`rounding_noise_levels`). The error is
      heteroscedastic — each entry's is uniform in ±ulp(w)/2, and ulp follows |w| — so
      the edge is the stored matrix's own, not that of noise with the mean variance: on a
      rank-1…5 BF16 product the mean-variance edge √v(√N + √M) sat 2–4× under the true
      one and the rounding noise read as rank 5–23 (scripts/measure_rank_floor.py); at
      rank 20 it is within 1.25×, on full-rank layers within 3 %.
    - Never below the eigensolver's own floor M·eps·λmax (`solver_floor`), where computed
      eigenvalues stop meaning anything.

    For a pooled conv ESD the tolerance is that of one kernel slice (the largest edge of
    them).
    """
    bits = _bits(stored_dtype)
    n, m = layer_shape(matrices)
    floor = solver_floor(m, eig_dtype) * lambda_max
    if stored_dtype in _MATRIX_RANK_DTYPES:
        eps = 2.0 ** (1 - bits)
        return max(lambda_max * (n * eps) ** 2, floor)
    return max(noise_factor * float(rounding_noise_levels(matrices, bits)[0]), floor)


#: Power-iteration steps and block size of `rounding_noise_levels`: 12 steps of a block of
#: 6 reach the top singular value of a 4096 × 1024 noise matrix within 2.5 % (measured
#: against a full SVD), inside the factor-1.5 margin, at a few % of the layer's eigensolve.
_POWER_STEPS = 12
_POWER_BLOCK = 6
#: Top noise levels `numerical_rank` uses in Weyl's inequality (the block's best-converged).
_WEYL_TERMS = 4


def rounding_noise_levels(matrices: list[np.ndarray], bits: int, above: float | None = None) -> np.ndarray:
    """Top eigenvalues of EᵀE/N (descending, at most `_WEYL_TERMS`) for the rounding error E
    of a layer's stored values (elementwise the largest over its matrices), measured on a
    seeded draw of that error.

    Rounding to nearest leaves each stored value w off by an error uniform in ±ulp(w)/2,
    ulp(w) = 2^(e − bits) for |w| ∈ [2^(e−1), 2^e) (0 for w = 0); the values are the
    stored ones, so only the error's size is known, and a fresh draw of it has the same
    spectrum. Its top singular values are found by block power iteration. The
    Bandeira–van Handel bound (√max row sum + √max column sum of the variances)² lies
    above the top one (measured 1.4–2.8× above, rank 1 to full); when ``above`` is given
    and the bound is under it, the bound alone is returned without a draw — every
    eigenvalue above ``above`` is then above the noise as well.
    """
    levels = np.zeros(1)
    for index, matrix in enumerate(matrices):
        w = oriented(matrix)
        n = w.shape[0]
        row_variance, column_variance = np.zeros(n), np.zeros(w.shape[1])
        for start, block in row_blocks(w, np.float32, ELEMENTWISE_BLOCK_BYTES):
            square = np.square(_ulp(block, bits)) / np.float32(12.0)
            row_variance[start : start + len(block)] = square.sum(axis=1, dtype=np.float64)
            column_variance += square.sum(axis=0, dtype=np.float64)
        bound = (np.sqrt(row_variance.max()) + np.sqrt(column_variance.max())) ** 2 / n
        if above is not None and bound < above:
            levels = _elementwise_max(levels, np.array([bound]))
            continue
        rng = np.random.default_rng(index)
        noise = rng.random(w.shape, dtype=np.float32)
        for start, block in row_blocks(w, np.float32, ELEMENTWISE_BLOCK_BYTES):
            rows = noise[start : start + len(block)]
            rows -= np.float32(0.5)
            rows *= _ulp(block, bits)
        block = rng.standard_normal((w.shape[1], min(_POWER_BLOCK, w.shape[1]))).astype(np.float32)
        for _ in range(_POWER_STEPS):
            block, _ = np.linalg.qr(noise.T @ (noise @ block))
        top = np.linalg.svd((noise @ block).astype(np.float64), compute_uv=False)[:_WEYL_TERMS]
        levels = _elementwise_max(levels, top * top / n)
    return levels


#: The exponent field of a float32 (its bits with sign and mantissa cleared).
_FLOAT32_EXPONENT = np.uint32(0x7F800000)


def _ulp(w: np.ndarray, bits: int) -> np.ndarray:
    """ulp(w) = 2^(e − bits) for |w| ∈ [2^(e−1), 2^e), 0 for w = 0, in float32.

    Read off the float32 bits: with its sign and mantissa cleared, a normal w becomes
    2^(e−1), and one exact multiplication by 2^(1 − bits) makes it the ulp. 55× faster
    than frexp/ldexp (0.038 s against 2.08 s on an 11008×4096 matrix here), which cost
    3.5 s of a Llama block's 44 s. The few subnormal w (exponent field 0) take frexp."""
    w = np.asarray(w, dtype=np.float32)
    ulp = np.bitwise_and(w.view(np.uint32), _FLOAT32_EXPONENT).view(np.float32)
    ulp *= np.float32(2.0 ** (1 - bits))
    subnormal = (ulp == 0) & (w != 0)
    if subnormal.any():
        _, exponent = np.frexp(w[subnormal])
        ulp[subnormal] = np.ldexp(np.float32(1.0), exponent - bits)
    return ulp


def _elementwise_max(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    size = max(len(first), len(second))
    return np.maximum(np.pad(first, (0, size - len(first))), np.pad(second, (0, size - len(second))))


class EigenCounts:
    """How many of a layer's eigenvalues lie above given thresholds.

    By default the eigenvalues given are exact and counted. Eigenvalues known only to
    within ±``error`` (float32's, under the "auto" precision) are counted where no
    eigenvalue lies within ``error`` of a threshold — the count cannot differ from the
    exact one there — and by ``exact`` (counts below each of several thresholds, e.g.
    `weightscope.linalg.spectrum.gram_counts_below`: float64 inertia) where one does,
    all such thresholds in one call, so the float64 Gram matrix is formed once.
    """

    def __init__(
        self,
        evals: np.ndarray,
        error: float = 0.0,
        exact: Callable[[list[float]], list[int]] | None = None,
    ) -> None:
        self.evals = evals
        self.error = error
        self.exact = exact

    @property
    def lowest(self) -> float:
        """A lower bound on the smallest eigenvalue."""
        return float(self.evals[0]) - self.error

    def above(self, thresholds: list[float]) -> list[int]:
        counts = [int(np.count_nonzero(self.evals > threshold)) for threshold in thresholds]
        if self.exact is None or not self.error:
            return counts
        wide = self.evals.astype(np.float64)
        unsettled = [
            index
            for index, threshold in enumerate(thresholds)
            if np.searchsorted(wide, threshold - self.error, "left")
            < np.searchsorted(wide, threshold + self.error, "right")
        ]
        if unsettled:
            shifts = [thresholds[index] for index in unsettled]
            for index, below in zip(unsettled, self.exact(shifts), strict=True):
                counts[index] = len(self.evals) - below
        return counts


def numerical_rank(
    matrices: list[np.ndarray],
    evals: np.ndarray,
    stored_dtype: str,
    eig_dtype: str,
    noise_factor: float,
    counts: EigenCounts | None = None,
) -> int:
    """How many eigenvalues of the (pooled) ESD are not numerically zero.

    16- and 8-bit weights: by Weyl's inequality σ_{i+j−1}(W + E) ≤ σ_i(W) + σ_j(E), an
    eigenvalue of the stored matrix above the j-th noise level (`rounding_noise_levels`,
    × ``noise_factor``) proves one of W's, less j − 1; the rank is the best of these
    bounds over the top `_WEYL_TERMS` levels. Noise concentrated in a few large columns
    (a BF16 layer with three columns 40× the rest) has a few large levels that hide only
    as many directions: with the top level alone it read 5 % of a full-rank layer as zero.

    F32/F64 weights: the eigenvalues above `zero_tolerance` — unless the stored dtype's
    matrix_rank floor lies under the eigensolver's (F64 weights always: (max(N, M)·eps₆₄)²
    ≈ 1e-26 against M·eps₆₄ ≈ 1e-13) and some eigenvalue sits at that solver floor. Then
    the Gram matrix cannot say which of them are zero, and W's own singular values
    (float64 SVD, the cost of about one more eigensolve, only for such layers) are held
    against σmax·max(N, M)·eps, exactly as numpy.linalg.matrix_rank does: a rank-20
    product plus noise 1e-6 is full rank, as matrix_rank says (before: rank 20, collapsed,
    33 of 33 seeds).

    ``counts`` counts the eigenvalues above each threshold (default: ``evals`` counted;
    see `EigenCounts` for float32 eigenvalues with an exact float64 count). The F32/F64
    thresholds and the solver floor scale with λmax, taken from ``evals``: float32's is
    float64's to ~2e-5 relative, so an eigenvalue within that fraction of such a threshold
    could be counted otherwise than in a float64 run (none was, in the rank cases of the
    suite or the real models).
    """
    if not len(evals) or evals[-1] <= 0:
        return 0
    if counts is None:
        counts = EigenCounts(evals)
    n, m = layer_shape(matrices)
    lambda_max = float(evals[-1])
    floor = solver_floor(m, eig_dtype) * lambda_max
    if stored_dtype not in _MATRIX_RANK_DTYPES:
        # With float32 eigenvalues the draw may run where float64's would have skipped
        # it: the result is the same, since the drawn top level lies under the skipped
        # bound, which lies under every eigenvalue: j = 0 counts what the bound counts.
        levels = noise_factor * rounding_noise_levels(matrices, _bits(stored_dtype), above=counts.lowest / noise_factor)
        above = counts.above([max(float(level), floor) for level in levels])
        return max(count - j for j, count in enumerate(above))
    tolerance = zero_tolerance(matrices, lambda_max, stored_dtype, eig_dtype, noise_factor)
    count = counts.above([tolerance])[0]
    if tolerance > floor or count == len(evals):
        return count
    eps = 2.0 ** (1 - _bits(stored_dtype))
    values = [np.linalg.svd(np.asarray(matrix, dtype=np.float64), compute_uv=False) for matrix in matrices]
    sigma_max = max(float(v[0]) for v in values if len(v))
    return sum(int(np.count_nonzero(v > sigma_max * n * eps)) for v in values)
