"""Which eigenvalues of X = WᵀW/N are numerically zero: the rank tolerance.

The precision policy (`weightscope.analysis.spectra`) and the rank-collapse check
(`weightscope.checks.rank_info`) both read the tolerance from here, so it is a numerics
question answered below both: it depends on the stored dtype, the shape and the
eigensolver's floor, never on a verdict.
"""

from __future__ import annotations

import numpy as np

from weightscope.errors import WeightscopeError
from weightscope.linalg.gram import layer_shape
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


def zero_tolerance(matrices: list[np.ndarray], lambda_max: float, stored_dtype: str, eig_dtype: str,
                   noise_factor: float) -> float:
    """The eigenvalue of X = WᵀW/N at or below which a layer's eigenvalue is numerically zero.

    - F32/F64 weights: `numpy.linalg.matrix_rank`'s convention, the one users know: a
      singular value is zero below σmax·max(N, M)·eps of the stored dtype, i.e.
      λ ≤ λmax·(max(N, M)·eps)². A rank-20 product plus noise 2e-5 of its entry scale is
      rank 20 here, as matrix_rank says.
    - Coarser dtypes (F16, BF16, FP8), where max(N, M)·eps exceeds 1 and that convention
      calls everything zero: the floor of the rounding noise itself. Rounding to nearest
      adds to each entry an error uniform in ±ulp/2, of variance ulp²/12, so the stored
      matrix is W + E with E's entry variance v = mean(ulp(wᵢⱼ)²)/12, computed from the
      stored values (`rounding_noise_variance`). E's singular values reach at most
      √v·(√N + √M) (its Marchenko–Pastur edge), i.e. λ = v·(1 + 1/√Q)² in X's units; a
      direction of W below that edge cannot be told from rounding. The floor sits 30–40×
      below the old λmax·u² bound (measured: scripts/measure_rank_floor.py), so
      full-rank layers with condition numbers 1e3 (BF16) and 1e4 (F16) keep their rank,
      and unlike a bound relative to λmax it does not move when a few spikes grow.
      The top eigenvalue of the rounding noise of a rank-20 product reaches up to 1.22×
      that edge (heteroscedastic noise plus Tracy–Widom fluctuation; 8 seeds × 3 shapes
      per dtype), so the tolerance is ``noise_factor`` (`Thresholds.rank_noise_factor`,
      default 1.5) × the edge.
    - Never below the eigensolver's own floor M·eps·λmax (`solver_floor`), where computed
      eigenvalues stop meaning anything.

    For a pooled conv ESD the tolerance is that of one kernel slice (all share a shape).
    """
    bits = PRECISION_BITS.get(stored_dtype)
    if bits is None:
        raise WeightscopeError(f"unknown stored dtype {stored_dtype!r} (expected one of {', '.join(PRECISION_BITS)})")
    n, m = layer_shape(matrices)
    floor = solver_floor(m, eig_dtype) * lambda_max
    if stored_dtype in _MATRIX_RANK_DTYPES:
        eps = 2.0 ** (1 - bits)
        return max(lambda_max * (n * eps) ** 2, floor)
    edge = rounding_noise_variance(matrices, bits) * (1.0 + np.sqrt(m / n)) ** 2
    return max(noise_factor * edge, floor)


#: Entries whose rounding error is summed at a time by `rounding_noise_variance`.
_ULP_CHUNK = 1 << 20


def rounding_noise_variance(matrices: list[np.ndarray], bits: int) -> float:
    """Mean variance ulp(w)²/12 of the error that rounding each stored value w to a float
    of ``bits`` significand bits made (the values are the stored ones, so the rounding
    already happened; its error is what this measures). ulp(w) = 2^(e − bits) for
    |w| ∈ [2^(e−1), 2^e); a zero contributes nothing. Summed in float64 over chunks."""
    total, count = 0.0, 0
    for matrix in matrices:
        flat = np.ravel(matrix)
        for start in range(0, len(flat), _ULP_CHUNK):
            _, exponent = np.frexp(flat[start : start + _ULP_CHUNK].astype(np.float64))
            ulp = np.ldexp(1.0, exponent - bits)
            ulp[flat[start : start + _ULP_CHUNK] == 0] = 0.0
            total += float(np.sum(ulp * ulp))
        count += flat.size
    return total / 12.0 / count if count else 0.0
