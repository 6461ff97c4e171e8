"""How an analysis runs: device, workers, memory budget and cache.

None of this changes a report's numbers beyond ~1e-6 relative (the eigensolvers agree to
that), so it lives apart from `AnalysisOptions`, which a report records. `Execution` is
what a caller asks for; `plan()` turns it into a `Plan` for one checkpoint's selected
layers. The spectra themselves, and the "auto" precision policy, are
`weightscope.analysis.spectra`'s.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from weightscope.checkpoint.layers import LayerSpec
from weightscope.errors import WeightscopeError, install_hint
from weightscope.execution.cache import SpectrumCache
from weightscope.execution.request import Execution
from weightscope.linalg._blas import available_cores
from weightscope.linalg.choices import solve_dtype
from weightscope.linalg.device import resolve_device
from weightscope.linalg.gram import gram_bytes
from weightscope.options import AnalysisOptions

#: Workers used on a GPU: one drives the device while the other reads and decodes.
CUDA_WORKERS = 2
#: Memory in flight, as a multiple of the largest selected tensor in float32.
BUDGET_TENSORS = 3.0


@dataclass(frozen=True)
class Plan:
    """`Execution` resolved for one checkpoint: the concrete device, workers, the memory
    budget of layers in flight (bytes, their `working_set`s), the cache (or None), and
    the lock that lets one layer at a time run the float64 stage of the "auto" precision
    policy, in the room `float64_reserve` keeps outside ``budget``."""

    device: str = "cpu"
    workers: int = 1
    budget: float = math.inf
    cache: SpectrumCache | None = None
    float64_stage: AbstractContextManager[object] = field(default_factory=nullcontext, compare=False)


def _decoded_dtype(spec: LayerSpec) -> str:
    """The dtype a layer's tensor decodes to: float32, or float64 for F64 storage."""
    info = spec.part.source if spec.part is not None else spec.info
    return "float64" if info.dtype == "F64" else "float32"


def _float_bytes(spec: LayerSpec) -> int:
    """Bytes of the decoded tensor (for a part of a fused tensor, the whole tensor, which
    is decoded before the part is cut)."""
    info = spec.part.source if spec.part is not None else spec.info
    return info.numel * (8 if _decoded_dtype(spec) == "float64" else 4)


def working_set(spec: LayerSpec, options: AnalysisOptions) -> int:
    """Estimated peak bytes of analysing one layer: the decoded tensor and what its Gram
    product holds (`weightscope.linalg.gram.gram_bytes`: the Gram matrix and one block),
    in float64 where the layer is solved in float64 (`solve_dtype`: under "auto" a
    near-square 16-bit layer), plus the shuffled copy and its float32 Gram product when
    randomising, plus eigenvectors. Under "auto" a layer solved in float32 may also run
    the float64 stage (`float64_stage_bytes`), one layer at a time, in room kept apart
    (`float64_reserve`). LAPACK's eigensolver works in the Gram matrix (10 MB more at
    M = 4096 in float64: its band and workspaces).

    Deliberately not a strict upper bound: the stored bytes mapped while a tensor
    decodes, and the checks' small blocks, are covered by the budget's headroom rather
    than counted. Measured peaks are in docs/performance.md."""
    if spec.lora is not None:  # the factors and an r×r core, never the d×k product
        return 2 * (spec.lora.a.numel + spec.lora.b.numel) * 4
    n, m = max(spec.info.shape[:2]), min(spec.info.shape[:2])
    total = _float_bytes(spec) + gram_bytes(n, m, _solved_in(spec, options), _decoded_dtype(spec))
    if options.randomize:  # the shuffled copy is float32
        total += spec.info.numel * 4 + gram_bytes(n, m, "float32")
    if options.vectors:
        total += 3 * m * m * 8
    return total


def _solved_in(spec: LayerSpec, options: AnalysisOptions) -> str:
    return solve_dtype(options.eig_dtype, spec.info.value_dtype, spec.info.shape)


def float64_stage_bytes(spec: LayerSpec, options: AnalysisOptions, device: str) -> int:
    """Bytes the float64 stage of the "auto" policy (`weightscope.analysis.spectra`: the
    inertia count of the eigenvalues float32 cannot place, or a float64 solve) holds
    beyond `working_set`: the float64 Gram product (`gram_bytes`) less the float32 one,
    freed before it. The LDLᵀ factorisations work in the Gram matrix itself
    (`weightscope.linalg.inertia.counts_below`: no copy, O(M) workspace). On a GPU it
    lives on the device."""
    if options.eig_dtype != "auto" or device != "cpu" or spec.lora is not None:
        return 0
    if _solved_in(spec, options) == "float64":  # no float32 eigenvalues to count for
        return 0
    n, m, decoded = max(spec.info.shape[:2]), min(spec.info.shape[:2]), _decoded_dtype(spec)
    return gram_bytes(n, m, "float64", decoded) - gram_bytes(n, m, "float32", decoded)


def float64_reserve(layers: list[LayerSpec], options: AnalysisOptions, device: str) -> int:
    """Room kept outside the layers' budget for the one float64 stage that may run at a
    time: the largest any of these layers needs."""
    return max((float64_stage_bytes(spec, options, device) for spec in layers), default=0)


def task_plan(device: str, execution: Execution) -> Plan:
    """The plan of one layer run as a cluster task on ``device`` (already chosen by the
    driver): one worker (the task holds one CPU), the cache resolved on the node the task
    runs on."""
    cache = SpectrumCache.open(execution.cache_dir, execution.cache_max_bytes) if execution.cache else None
    return Plan(device=device, workers=1, cache=cache)


def plan(layers: list[LayerSpec], options: AnalysisOptions, execution: Execution) -> Plan:
    """Resolve an `Execution` for these layers (see `Execution` for the defaults)."""
    if options.vectors and importlib.util.find_spec("scipy") is None:
        raise WeightscopeError(f"--vectors needs scipy: {install_hint('vectors')}")
    shapes = [(spec.info.shape[0], spec.info.shape[1]) for spec in layers]
    device = resolve_device(execution.device, shapes)
    workers = execution.workers or (CUDA_WORKERS if device == "cuda" else available_cores())
    largest = max((_float_bytes(spec) for spec in layers), default=0)
    cache = None
    if execution.cache:  # None, with one warning, when the cache cannot be used
        cache = SpectrumCache.open(execution.cache_dir, execution.cache_max_bytes)
    reserve = float64_reserve(layers, options, device)
    return Plan(
        device=device,
        workers=workers,
        budget=BUDGET_TENSORS * largest - reserve,
        cache=cache,
        float64_stage=threading.Lock() if reserve else nullcontext(),
    )
