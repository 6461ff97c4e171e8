"""A layer's spectra and numerical rank under a `Plan`: from the spectrum cache when
possible, else solved, with the "auto" precision policy.

Precision "auto" (the default) solves in float32, about half the time of float64 on
CPU, and reports at float64's rank thresholds. Float32 eigenvalues are accurate to
≤ 0.052·M·eps₃₂·λmax (measured, M = 384…4096, i.i.d. and heavy-tailed spectra; the
top ones to ~2e-5 relative, so alphas agree with float64 to ~1e-5), but the rank check's
float32 floor is M·eps₃₂·λmax, 20× coarser: spiky, healthy layers would read as
rank-collapsed. So the rank check is given float64's thresholds, and where float32's
error (taken as `FLOAT32_ERROR`·M·eps₃₂·λmax, 5× the worst measured) puts an eigenvalue
within reach of a threshold, the eigenvalues above that threshold are counted in float64
by inertia (`weightscope.linalg.rank.EigenCounts`, `weightscope.linalg.inertia`): one
float64 Gram product and an LDLᵀ per such threshold, no second eigensolve (but for a
layer whose spectrum is more than ``rank_loss_max`` zeros, `layer_esd`). The numerical
rank and rank_loss under "auto" are then float64's, not just the verdict. Where that
count would always run and cost more than a float64 solve — near-square F16/BF16 layers,
whose rank thresholds lie deep inside float32's band — the layer is solved in float64
outright (`weightscope.linalg.choices.solve_dtype`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from weightscope.checkpoint.layers import LayerSpec
from weightscope.execution.cache import SpectrumCache
from weightscope.execution.plan import Plan
from weightscope.linalg.choices import EIG_DTYPES, fixed_dtype, solve_dtype
from weightscope.linalg.rank import EigenCounts, numerical_rank
from weightscope.linalg.spectrum import (
    GramHook,
    SpectrumOptions,
    esd,
    gram_counts_below,
    solver_floor,
)
from weightscope.options import AnalysisOptions
from weightscope.stats.randmat import RandomizedESD, randomized_esd

#: Bound on a float32 eigenvalue's error, relative to λmax, in units of M·eps₃₂ (5× the
#: largest error measured; see the module docstring).
FLOAT32_ERROR = 0.25


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


def _stored_rank(stored: dict[str, np.ndarray], factor: float, size: int) -> int | None:
    """The rank an entry holds when it was counted with this noise factor, else None."""
    rank, stored_factor = stored.get("rank"), stored.get("rank_noise_factor")
    if rank is None or stored_factor is None or rank.shape != () or rank.dtype.kind != "i":
        return None
    return int(rank) if float(stored_factor) == factor and 0 <= int(rank) <= size else None


@dataclass(frozen=True)
class LayerSpectrum:
    """A layer's ESD and numerical rank, with the two precisions behind them."""

    evals: np.ndarray
    #: what the checks are told (rank tolerance, eigenvectors): under "auto", float64's
    judged: SpectrumOptions
    #: what ``evals`` were solved in: a spectrum compared with them (a trap's cleaned
    #: copy, `weightscope.checks.traps.correlation_traps`) is solved alike
    solved: SpectrumOptions
    rank: int | None


def layer_esd(
    spec: LayerSpec, matrices: list[np.ndarray], options: AnalysisOptions, plan: Plan, on_gram: GramHook | None = None
) -> LayerSpectrum:
    """The layer's ESD and numerical rank (`layer_rank`), from the cache when possible
    (one entry holds both), and the spectrum options the checks should judge it by.

    Under "auto", a layer whose rank puts more than ``rank_loss_max`` of its spectrum at
    numerical zero is solved again in float64: the fit and the MP checks see that share,
    and float32 gives only noise there (a rank-8 F32 layer of 256 read "alpha-low" on
    float32's zeros where float64 reads "unstable-alpha"). That is the one second
    eigensolve, and, after the count's, a second float64 Gram product, of "auto". A
    near-square 16-bit layer is solved in float64 outright (`solve_dtype`). ``on_gram``
    sees the Gram matrix of the first solve (`weightscope.linalg.spectrum.GramHook`); a
    cached spectrum forms none."""
    m = min(matrices[0].shape)
    cache = plan.cache
    first = SpectrumOptions(solve_dtype(options.eig_dtype, spec.info.value_dtype, spec.info.shape), plan.device)
    key = cache.key(spec.info, "esd", precision=options.eig_dtype, solved=first.dtype) if cache else None
    # What the checks are told: "auto" is judged at float64's tolerance (module docstring).
    judged = SpectrumOptions(fixed_dtype(options.eig_dtype), plan.device)
    factor = options.thresholds.rank_noise_factor
    stored = _cached(cache, key, m * len(matrices))
    if stored is not None:
        evals = stored["evals"]
        rank = _stored_rank(stored, factor, evals.size)
    else:
        evals, rank = esd(matrices, first, on_gram), None
    if rank is None:  # a fresh solve, or a cached one whose rank was counted otherwise
        rank = layer_rank(spec, matrices, evals, options, plan)
        if stored is None and first != judged and _mostly_zero(rank, evals, options):
            with plan.float64_stage:  # one layer at a time, in the room the plan keeps for it
                evals = esd(matrices, judged)
        if cache is not None and key is not None and rank is not None:  # a rank: finite eigenvalues
            cache.store(
                key, {"evals": evals, "rank": np.asarray(rank, dtype=np.int64), "rank_noise_factor": np.asarray(factor)}
            )
    return LayerSpectrum(evals, judged, judged if _mostly_zero(rank, evals, options) else first, rank)


def _mostly_zero(rank: int | None, evals: np.ndarray, options: AnalysisOptions) -> bool:
    """Whether more than ``rank_loss_max`` of the spectrum is numerical zero: then "auto"
    solves it in float64 (`layer_esd`)."""
    return rank is not None and 1 - rank / evals.size > options.thresholds.rank_loss_max


def layer_rank(
    spec: LayerSpec, matrices: list[np.ndarray], evals: np.ndarray, options: AnalysisOptions, plan: Plan
) -> int | None:
    """The layer's numerical rank (`weightscope.linalg.rank.numerical_rank`) at the
    tolerance of the precision `layer_esd` reports; None for a spectrum that is empty or
    not finite (the checks fail such a layer first).

    Under "auto" ``evals`` are float32's (but where `solve_dtype` chose float64): the
    counts float32 cannot settle are float64 inertia counts (module docstring), made in
    the plan's float64 stage, one layer at a time. The count is exact but for an
    eigenvalue within float64's own rounding of a threshold, where a float64 eigensolve
    is as undecided."""
    if not evals.size or not np.all(np.isfinite(evals)):
        return None
    counts = None
    solved = solve_dtype(options.eig_dtype, spec.info.value_dtype, spec.info.shape)
    if options.eig_dtype == "auto" and solved == "float32" and evals[-1] > 0:
        error = FLOAT32_ERROR * solver_floor(min(matrices[0].shape), "float32") * float(evals[-1])

        def exact(shifts: list[float]) -> list[int]:
            with plan.float64_stage:  # one layer at a time, in the room the plan keeps for it
                return gram_counts_below(matrices, shifts, plan.device)

        counts = EigenCounts(evals, error, exact)
    factor = options.thresholds.rank_noise_factor
    return numerical_rank(matrices, evals, spec.info.value_dtype, fixed_dtype(options.eig_dtype), factor, counts)


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
