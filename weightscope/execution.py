"""How an analysis runs: device, precision policy, cache, workers and memory budget.

None of this changes a report's numbers beyond ~1e-6 relative (the eigensolvers agree to
that), so it lives apart from `AnalysisOptions`, which a report records. `Execution` is
what a caller asks for; `plan()` turns it into a `Plan` for one checkpoint's selected
layers; `layer_esd` and `layer_randomized` compute a layer's spectra under that plan.

Precision "auto" (the default) solves in float32, about half the time of float64 on
CPU, and reports at float64's rank tolerance. Float32 eigenvalues are accurate to
≤ 0.052·M·eps₃₂·λmax (measured, M = 384…4096, i.i.d. and heavy-tailed spectra; the
top ones to ~2e-5 relative, so alphas agree with float64 to ~1e-5), but the rank check's
float32 floor is M·eps₃₂·λmax, 20× coarser: spiky, healthy layers would read as
rank-collapsed. So the rank check is given float64's tolerance, and a layer is re-solved
in float64 whenever float32's error (taken as `FLOAT32_ERROR`·M·eps₃₂·λmax, 5× the worst
measured) could move the rank verdict across its threshold: rank collapse of float32-
stored weights, whose zero eigenvalues sit in float32's noise, is then always judged on
float64 eigenvalues.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .blas import available_cores
from .cache import SpectrumCache, default_cache_dir
from .checks import rank_info
from .device import DEVICE_CHOICES, resolve_device
from .errors import WeightscopeError
from .layers import LayerSpec
from .randmat import RandomizedESD, randomized_esd
from .spectrum import EIG_DTYPES, SpectrumOptions, esd, fixed_dtype, solver_floor

if TYPE_CHECKING:
    from .pipeline import AnalysisOptions

#: Workers used on a GPU: one drives the device while the other reads and decodes.
CUDA_WORKERS = 2
#: Memory in flight, as a multiple of the largest selected tensor in float32.
BUDGET_TENSORS = 3.0
#: Bound on a float32 eigenvalue's error, relative to λmax, in units of M·eps₃₂ (5× the
#: largest error measured; see the module docstring).
FLOAT32_ERROR = 0.25


@dataclass(frozen=True)
class Execution:
    """What a caller asks of the machinery (CLI: --device, --workers, --cache-dir, --no-cache)."""

    device: str = "auto"
    #: layers analysed at once; 0 = one per core this process may use (CPU) or 2 (GPU)
    workers: int = 0
    cache: bool = True
    #: None: `weightscope.cache.default_cache_dir()`
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICE_CHOICES:
            raise WeightscopeError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {self.device!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise WeightscopeError(f"workers must be 0 (auto) or a positive integer, got {self.workers!r}")


@dataclass(frozen=True)
class Plan:
    """`Execution` resolved for one checkpoint: the concrete device, workers, BLAS threads
    for the Gram products, the memory budget of layers in flight (bytes), and the cache (or None)."""

    device: str = "cpu"
    workers: int = 1
    blas_threads: int = 1
    budget: float = math.inf
    cache: SpectrumCache | None = None


def _float_bytes(spec: LayerSpec) -> int:
    """Bytes of the decoded tensor: float32, or float64 for F64 storage."""
    return spec.info.numel * (8 if spec.info.dtype == "F64" else 4)


def working_set(spec: LayerSpec, options: AnalysisOptions) -> int:
    """Estimated peak bytes of analysing one layer: the decoded tensor and a Gram matrix,
    plus the shuffled copy and its Gram matrix when randomising, plus eigenvectors.

    Deliberately not a strict upper bound: transients (the stored bytes mapped while a
    tensor decodes, the Gram product's temporary) are covered by the budget's headroom
    rather than counted, which lets two 11008×4096 layers share a 2-core machine within
    the RSS budget. Measured peaks are in the README (Performance)."""
    m = min(spec.info.shape[:2])
    gram = m * m * (8 if options.eig_dtype == "float64" else 4)
    total = _float_bytes(spec) + gram
    if options.randomize:
        total += spec.info.numel * 4 + m * m * 4
    if options.vectors:
        total += 3 * m * m * 8
    return total


def plan(layers: list[LayerSpec], options: AnalysisOptions, execution: Execution) -> Plan:
    """Resolve an `Execution` for these layers (see `Execution` for the defaults)."""
    shapes = [(spec.info.shape[0], spec.info.shape[1]) for spec in layers]
    device = resolve_device(execution.device, shapes)
    cores = available_cores()
    workers = execution.workers or (CUDA_WORKERS if device == "cuda" else cores)
    largest = max((_float_bytes(spec) for spec in layers), default=0)
    cache = None
    if execution.cache:
        cache = SpectrumCache(execution.cache_dir or default_cache_dir())
    return Plan(
        device=device,
        workers=workers,
        # Gram products are bitwise the same with any thread count, so a lone worker may
        # thread them; several workers already fill the cores (eigensolves: always 1).
        blas_threads=cores if workers == 1 else 1,
        budget=BUDGET_TENSORS * largest,
        cache=cache,
    )


def _float32_unsettled(evals: np.ndarray, spec: LayerSpec, m: int, options: AnalysisOptions) -> bool:
    """Whether float32 eigenvalues, moved by up to their error bound, could land on both
    sides of the rank-collapse threshold at float64's tolerance."""
    error = FLOAT32_ERROR * solver_floor(m, "float32") * float(evals[-1])
    verdicts = {
        rank_info(shifted, m, spec.info.dtype, "float64", options.thresholds).collapsed
        for shifted in (evals.astype(np.float64) - error, evals.astype(np.float64) + error)
    }
    return len(verdicts) > 1


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
    if options.eig_dtype == "auto" and evals.size and evals[-1] > 0 and _float32_unsettled(evals, spec, m, options):
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
