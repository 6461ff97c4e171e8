"""A layer's spectra under a `Plan`: from the spectrum cache when possible, else solved,
with the "auto" precision policy.

Precision "auto" (the default) solves in float32, about half the time of float64 on
CPU, and reports at float64's rank tolerance. Float32 eigenvalues are accurate to
≤ 0.052·M·eps₃₂·λmax (measured, M = 384…4096, i.i.d. and heavy-tailed spectra; the
top ones to ~2e-5 relative, so alphas agree with float64 to ~1e-5), but the rank check's
float32 floor is M·eps₃₂·λmax, 20× coarser: spiky, healthy layers would read as
rank-collapsed. So the rank check is given float64's tolerance, and a layer is re-solved
in float64 whenever float32's error (taken as `FLOAT32_ERROR`·M·eps₃₂·λmax, 5× the worst
measured) could put any eigenvalue on the other side of the zero tolerance: the
numerical rank and rank_loss under "auto" are then float64's, not just the verdict.
"""

from __future__ import annotations

import numpy as np

from weightscope.checkpoint.layers import LayerSpec
from weightscope.execution.cache import SpectrumCache
from weightscope.execution.plan import Plan
from weightscope.linalg.rank import zero_tolerance
from weightscope.linalg.spectrum import (
    EIG_DTYPES,
    SpectrumOptions,
    esd,
    fixed_dtype,
    solver_floor,
)
from weightscope.options import AnalysisOptions
from weightscope.stats.randmat import RandomizedESD, randomized_esd

#: Bound on a float32 eigenvalue's error, relative to λmax, in units of M·eps₃₂ (5× the
#: largest error measured; see the module docstring).
FLOAT32_ERROR = 0.25


def _float32_unsettled(
    evals: np.ndarray, spec: LayerSpec, matrices: list[np.ndarray], options: AnalysisOptions
) -> bool:
    """Whether float32 eigenvalues, moved by up to their error bound, could land on both
    sides of the zero tolerance at float64's precision: then the numerical rank (not just
    the collapse verdict) could differ from float64's, so the layer is re-solved."""
    m = min(matrices[0].shape)
    lambda_max = float(evals[-1])
    error = FLOAT32_ERROR * solver_floor(m, "float32") * lambda_max
    tolerance = zero_tolerance(
        matrices,
        lambda_max,
        spec.info.value_dtype,
        "float64",
        options.thresholds.rank_noise_factor,
        lowest=float(evals[0]),
    )
    return bool(np.any(np.abs(evals.astype(np.float64) - tolerance) <= error))


def _cached(cache: SpectrumCache | None, key: str | None, size: int) -> dict[str, np.ndarray] | None:
    """A cache entry whose eigenvalues could be a solver's: the expected count, finite,
    ascending, and none below float32's rounding floor under zero (a spectrum of WᵀW/N
    is never negative); else None and the entry is removed. An entry edited out of order
    would change the fit and the verdict."""
    if cache is None or key is None:
        return None
    stored = cache.load(key)
    if stored is None:
        return None
    evals = stored.get("evals")
    if (
        evals is None
        or evals.shape != (size,)
        or evals.dtype.name not in EIG_DTYPES
        or not np.all(np.isfinite(evals))
        or np.any(np.diff(evals) < 0)
        or (size and evals[0] < -solver_floor(size, "float32") * max(float(evals[-1]), 0.0))
    ):
        cache.discard(key)
        return None
    return stored


def layer_esd(
    spec: LayerSpec, matrices: list[np.ndarray], options: AnalysisOptions, plan: Plan
) -> tuple[np.ndarray, SpectrumOptions]:
    """The layer's ESD, from the cache when possible, and the spectrum options the checks
    should judge it by."""
    m = min(matrices[0].shape)
    cache = plan.cache
    key = cache.key(spec.info, "esd", precision=options.eig_dtype) if cache else None
    # What the checks are told: "auto" is judged at float64's tolerance (module docstring).
    reported = SpectrumOptions(fixed_dtype(options.eig_dtype), plan.device)
    stored = _cached(cache, key, m * len(matrices))
    if stored is not None:
        return stored["evals"], reported
    first = "float32" if options.eig_dtype == "auto" else options.eig_dtype
    evals = esd(matrices, SpectrumOptions(first, plan.device))
    if (
        options.eig_dtype == "auto"
        and evals.size
        and evals[-1] > 0
        and _float32_unsettled(evals, spec, matrices, options)
    ):
        with plan.float64_stage:  # one layer at a time, in the room the plan keeps for it
            evals = esd(matrices, reported)
    if cache is not None and key is not None and np.all(np.isfinite(evals)):
        cache.store(key, {"evals": evals})
    return evals, reported


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
