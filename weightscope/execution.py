"""How an analysis runs: device, precision policy, cache, workers and memory budget.

None of this changes a report's numbers beyond ~1e-6 relative (the eigensolvers agree to
that), so it lives apart from `AnalysisOptions`, which a report records. `Execution` is
what a caller asks for; `plan()` turns it into a `Plan` for one checkpoint's selected
layers; `layer_esd` and `layer_randomized` compute a layer's spectra under that plan.

Precision "auto" (the default) solves in float32, about half the time of float64 on
CPU, and redoes a layer in float64 only where float32 could change its verdict: when
more than half the rank-collapse threshold of its eigenvalues lies below float32's
tolerance (the solver floor M·eps₃₂·λmax or the stored dtype's), so that the rank check
decides on float64 numbers whenever it could matter. Alphas move by < 1e-4 relative
otherwise (docs/performance.md has the measurements).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .blas import usable_cores
from .cache import SpectrumCache, default_cache_dir
from .checks import rank_info
from .device import DEVICE_CHOICES, resolve_device
from .errors import WeightscopeError
from .layers import LayerSpec
from .randmat import RandomizedESD, randomized_esd
from .spectrum import EIG_DTYPES, SpectrumOptions, esd

if TYPE_CHECKING:
    from .pipeline import AnalysisOptions

#: Workers used on a GPU: one drives the device while the other reads and decodes.
CUDA_WORKERS = 2
#: Memory in flight, as a multiple of the largest selected tensor in float32.
BUDGET_TENSORS = 3.0


@dataclass(frozen=True)
class Execution:
    """What a caller asks of the machinery (CLI: --device, --workers, --cache-dir, --no-cache)."""

    device: str = "auto"
    #: layers analysed at once; 0 = as many as there are idle cores (CPU) or 2 (GPU)
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
    plus the shuffled copy and its Gram matrix when randomising, plus eigenvectors."""
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
    cores = usable_cores()
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
    """Whether float32 eigenvalues leave the rank verdict open (see the module docstring)."""
    loss = rank_info(evals, m, spec.info.dtype, "float32", options.thresholds).rank_loss
    return loss > 0.5 * options.thresholds.rank_loss_max


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
    """The layer's ESD and the precision it was solved in, from the cache when possible."""
    m = min(matrices[0].shape)
    cache = plan.cache
    key = cache.key(spec.info, "esd", precision=options.eig_dtype) if cache else None
    stored = _cached(cache, key, m * len(matrices))
    if stored is not None:
        evals = stored["evals"]
        return evals, SpectrumOptions(evals.dtype.name, plan.device)
    first = "float32" if options.eig_dtype == "auto" else options.eig_dtype
    spectrum = SpectrumOptions(first, plan.device)
    evals = esd(matrices, spectrum)
    if options.eig_dtype == "auto" and evals.size and evals[-1] > 0 and _float32_unsettled(evals, spec, m, options):
        spectrum = SpectrumOptions("float64", plan.device)
        evals = esd(matrices, spectrum)
    if cache is not None and key is not None and np.all(np.isfinite(evals)):
        cache.store(key, {"evals": evals})
    return evals, spectrum


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
