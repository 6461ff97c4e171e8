"""A layer's spectra under a `Plan`: from the spectrum cache when possible, else solved,
with the "auto" precision policy.

Precision "auto" (the default) solves in float32, about half the time of float64 on
CPU, and reports the rank at float64's tolerance with float64's count. Float32
eigenvalues are accurate to ≤ 0.052·M·eps₃₂·λmax (measured, M = 384…4096, i.i.d. and
heavy-tailed spectra; the top ones to ~2e-5 relative, so alphas agree with float64 to
~1e-5), but the rank check's float32 floor is M·eps₃₂·λmax, 20× coarser: spiky, healthy
layers would read as rank-collapsed. So the rank check is given float64's tolerance,
and wherever float32's error (taken as `FLOAT32_ERROR`·M·eps₃₂·λmax, 5× the worst
measured) could put an eigenvalue on the other side of it, the eigenvalues at or below
it are counted in float64 without a second eigensolve: Sylvester's inertia of
X − τI from an LDLᵀ factorisation (`weightscope.linalg.spectrum.gram_count_below`). The
numerical rank and rank_loss under "auto" are then float64's, at a float64 Gram product
plus n³/3 flops (a quarter of a float64 eigensolve's time at 4096, measured); the
eigenvalues themselves (alpha, norms) stay float32's.

The float64 stage holds more memory than the float32 one (an M×M float64 Gram matrix
and a float64 row block instead of the float32 Gram matrix), so one layer at a time
runs it (`Plan.float64_stage`), in room the scheduler keeps free for it
(`weightscope.execution.plan.float64_reserve`).
"""

from __future__ import annotations

import numpy as np

from weightscope.checkpoint.layers import LayerSpec
from weightscope.execution.cache import SpectrumCache
from weightscope.execution.plan import Plan
from weightscope.linalg.rank import ZeroCount, zero_tolerance
from weightscope.linalg.spectrum import (
    EIG_DTYPES,
    GramHook,
    SpectrumOptions,
    esd,
    fixed_dtype,
    gram_count_below,
    solver_floor,
)
from weightscope.options import AnalysisOptions
from weightscope.stats.randmat import RandomizedESD, randomized_esd

#: Bound on a float32 eigenvalue's error, relative to λmax, in units of M·eps₃₂ (5× the
#: largest error measured; see the module docstring).
FLOAT32_ERROR = 0.25


def _float32_unsettled(evals: np.ndarray, tolerance: float, m: int) -> bool:
    """Whether float32 eigenvalues, moved by up to their error bound, could land on both
    sides of the zero tolerance: then float32's count of zero eigenvalues may not be
    float64's."""
    error = FLOAT32_ERROR * solver_floor(m, "float32") * float(evals[-1])
    return bool(np.any(np.abs(evals.astype(np.float64) - tolerance) <= error))


def _zero_count(
    spec: LayerSpec, matrices: list[np.ndarray], evals: np.ndarray, options: AnalysisOptions, plan: Plan,
    stored: dict[str, np.ndarray] | None,
) -> ZeroCount:
    """Float64's count of the eigenvalues at or below the zero tolerance, for float32
    eigenvalues (module docstring); a cached count made at the same tolerance is reused."""
    tolerance = zero_tolerance(matrices, float(evals[-1]), spec.info.value_dtype, "float64", options.thresholds.rank_noise_factor)
    if evals.dtype == np.float64 or not _float32_unsettled(evals, tolerance, min(matrices[0].shape)):
        return ZeroCount(tolerance, int(np.count_nonzero(evals <= tolerance)))
    if stored is not None and "zeros" in stored and float(stored.get("zeros_at", np.nan)) == tolerance:
        return ZeroCount(tolerance, int(stored["zeros"]), counted=True)
    with plan.float64_stage:
        return ZeroCount(tolerance, gram_count_below(matrices, tolerance, plan.device), counted=True)


def _collapsed(zeros: ZeroCount, size: int, options: AnalysisOptions) -> bool:
    """Whether float64's count reads the layer as rank-collapsed (`weightscope.checks.rank_info`)."""
    return zeros.count / size > options.thresholds.rank_loss_max


def _cached(cache: SpectrumCache | None, key: str | None, size: int) -> dict[str, np.ndarray] | None:
    """A cache entry whose eigenvalues have the expected count and are finite, else None."""
    if cache is None or key is None:
        return None
    stored = cache.load(key)
    if stored is None:
        return None
    evals = stored.get("evals")
    if evals is None or evals.shape != (size,) or evals.dtype.name not in EIG_DTYPES or not np.all(np.isfinite(evals)):
        cache.discard(key)
        return None
    return stored


def layer_esd(
    spec: LayerSpec, matrices: list[np.ndarray], options: AnalysisOptions, plan: Plan, on_gram: GramHook | None = None
) -> tuple[np.ndarray, SpectrumOptions, ZeroCount | None]:
    """The layer's ESD, from the cache when possible, the spectrum options the checks
    should judge it by, and under "auto" float64's count of its zero eigenvalues.
    ``on_gram`` sees the Gram matrix when one is computed (not on a cache hit).

    A layer that count reads as rank-collapsed is solved again in float64: its many
    near-zero eigenvalues are float32 rounding, and every number fitted to them (alpha
    above all) would be float32's noise rather than float64's. Collapsed layers are
    the rare ones; every other layer is solved once.
    """
    m = min(matrices[0].shape)
    cache = plan.cache
    key = cache.key(spec.info, "esd", precision=options.eig_dtype) if cache else None
    # What the checks are told: "auto" is judged at float64's tolerance (module docstring).
    reported = SpectrumOptions(fixed_dtype(options.eig_dtype), plan.device)
    stored = _cached(cache, key, m * len(matrices))
    if stored is not None:
        evals = stored["evals"]
    else:
        first = "float32" if options.eig_dtype == "auto" else options.eig_dtype
        evals = esd(matrices, SpectrumOptions(first, plan.device), on_gram)
    zeros = None
    if options.eig_dtype == "auto" and evals.size and evals[-1] > 0 and np.all(np.isfinite(evals)):
        zeros = _zero_count(spec, matrices, evals, options, plan, stored)
        if zeros.counted and evals.dtype != np.float64 and _collapsed(zeros, evals.size, options):
            evals, zeros = esd(matrices, reported), None
    recounted = zeros is not None and zeros.counted and (stored is None or stored.get("zeros_at") != zeros.tolerance)
    if cache is not None and key is not None and np.all(np.isfinite(evals)) and (stored is None or recounted):
        arrays = {"evals": evals}
        if recounted:
            assert zeros is not None
            arrays.update(zeros=np.asarray(zeros.count), zeros_at=np.asarray(zeros.tolerance))
        cache.store(key, arrays)
    return evals, reported, zeros


def layer_randomized(
    spec: LayerSpec, matrices: list[np.ndarray], options: AnalysisOptions, spectrum: SpectrumOptions, plan: Plan
) -> RandomizedESD:
    """The layer's randomised ESD (`randmat.randomized_esd`), from the cache when possible."""
    cache = plan.cache
    key = cache.key(spec.info, "randomized", seed=options.seed) if cache else None
    stored = _cached(cache, key, min(matrices[0].shape) * len(matrices))
    if stored is not None and stored.get("variance", np.empty(0)).shape == ():
        return RandomizedESD(stored["evals"], float(stored["variance"]))
    randomized = randomized_esd(matrices, options.seed, spectrum)
    if cache is not None and key is not None:
        cache.store(key, {"evals": randomized.evals, "variance": np.asarray(randomized.variance)})
    return randomized
