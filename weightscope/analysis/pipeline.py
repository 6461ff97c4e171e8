"""The pipeline: checkpoint → layer matrices → spectrum → fit → `LayerResult` → `Report`.

Layers stream through in storage order: one reader thread reads and decodes a tensor
ahead while worker threads decompose the ones before it (`weightscope.execution.schedule`), and a
tensor is dropped once its layer is analysed, so memory is bounded by a budget of a few
of the largest tensors, not by the checkpoint. How (device, workers, cache) is
`weightscope.execution.plan`'s business; it never changes the numbers. On a Ray cluster
(``executor="ray"``) each layer is instead a task that reads its own tensor and runs the
same `analyze_read` (`analyze_task`, `weightscope.execution.cluster`). A layer that cannot be analysed
(NaN weights, a corrupt tensor region, a degenerate spectrum) becomes a failed
`LayerResult` with a reason; it never costs the rest of the report.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from weightscope._version import __version__
from weightscope.analysis.model_measures import measure_model
from weightscope.analysis.spectra import layer_esd, layer_randomized
from weightscope.checkpoint import open_checkpoint, source_name
from weightscope.checkpoint.base import CheckpointReader, TensorInfo
from weightscope.checkpoint.layers import (
    HeadLayout,
    LayerSpec,
    Selection,
    SkippedTensor,
    layer_matrices,
    lora_layers,
    select_layers,
    split_fused,
)
from weightscope.checkpoint.lora import AdapterReader
from weightscope.checks import diagnose
from weightscope.errors import CheckpointError, WeightscopeError
from weightscope.execution.cluster import (
    GPU_SHARE,
    Need,
    cluster_device,
    cluster_gpus,
    connect,
    run_tasks,
)
from weightscope.execution.plan import Execution, Plan, plan, task_plan, working_set
from weightscope.execution.schedule import pipelined
from weightscope.linalg._blas import blas_threads
from weightscope.options import AnalysisOptions
from weightscope.report import LayerResult, ModelMeasures, Report
from weightscope.stats.fit import fit_power_law
from weightscope.stats.norms import norm_metrics
from weightscope.stats.update import lora_update_stats
from weightscope.summary import summarize

#: Called with (layers done so far, all layers to analyse): once with 0 before the first
#: layer, then after each one. The CLI drives its progress bar with it.
ProgressHook = Callable[[int, list[LayerSpec]], None]


@dataclass(frozen=True)
class Inspection:
    """What `analyze` would do with a checkpoint, without any math: `weightscope inspect`."""

    source: str
    format: str
    tensors: list[TensorInfo]
    selection: Selection


def select(reader: CheckpointReader, options: AnalysisOptions) -> Selection:
    """Which tensors of an open checkpoint would be analysed, from metadata alone.

    Fused tensors are cut into their parts (`weightscope.checkpoint.layers.split_fused`) unless
    ``options.split`` is off; head counts come from the options, the file's metadata
    (GGUF) or the model's config.json, in that order.

    For a LoRA adapter: one layer per adapted module (its update ΔW, from the factors),
    and the ``modules_to_save`` tensors as ordinary layers; tensors that are neither are
    listed as skipped.
    """
    if isinstance(reader, AdapterReader):
        adapter = reader.adapter
        selection = select_layers(
            adapter.saved, include=options.include, exclude=options.exclude, min_evals=options.min_evals
        )
        updates = lora_layers(adapter.modules, options.include, options.exclude)
        stray = [
            SkippedTensor(info.name, tuple(info.shape), info.dtype, "not read as a LoRA update (a factor without its pair, a conv LoRA factor, a bias)")
            for info in adapter.other
        ]
        return Selection(updates + selection.layers, selection.skipped + stray)
    selection = select_layers(
        reader.tensors(), include=options.include, exclude=options.exclude, min_evals=options.min_evals
    )
    if not options.split:
        return selection
    layout = HeadLayout.from_sources(options.heads, options.kv_heads, reader.metadata, reader.model_config)
    return split_fused(selection, layout, options.min_evals)


def inspect(path: str | os.PathLike[str], **options: object) -> Inspection:
    """List a checkpoint's tensors and which would be analysed; reads headers only."""
    opts = AnalysisOptions.from_kwargs(**options)
    with open_checkpoint(path) as reader:
        return Inspection(source_name(path), reader.format, reader.tensors(), select(reader, opts))


def _failed(spec: LayerSpec, reason: str) -> LayerResult:
    info = spec.info
    return LayerResult(
        spec.name, spec.kind, spec.block, tuple(info.shape), info.dtype, "failed", reason,
        verdict="failed", flags=["failed"], reasons=[reason],
    )


#: Elements checked for NaN/Inf at a time: a whole-tensor mask of a 152064×3584
#: embedding would be 545 MB on top of the tensor.
_FINITE_CHUNK = 1 << 22


def _non_finite_reason(array: np.ndarray) -> str | None:
    rows = max(1, _FINITE_CHUNK * len(array) // max(array.size, 1))  # slabs of whole rows: views, never copies
    nans = infs = 0
    for start in range(0, len(array), rows):
        slab = array[start : start + rows]
        finite = np.isfinite(slab)
        if not finite.all():
            slab_nans = int(np.isnan(slab).sum())
            nans += slab_nans
            infs += int(slab.size - finite.sum()) - slab_nans
    return f"weights contain {nans} NaN and {infs} Inf values" if nans or infs else None


@dataclass(frozen=True)
class LayerAnalysis:
    """One layer on its way through the pipeline: its result and the spectrum behind it.

    `analyze` keeps only ``result``; views that draw spectra (plots) use ``evals`` too.
    ``evals`` is None when the layer failed before its spectrum was computed.
    """

    spec: LayerSpec
    result: LayerResult
    evals: np.ndarray | None = None
    rand_evals: np.ndarray | None = None


#: Sees every analysed layer, spectrum included, as it streams past.
LayerHook = Callable[[LayerAnalysis], None]


def analyze_matrices(
    spec: LayerSpec, array: np.ndarray, options: AnalysisOptions, run: Plan = Plan()
) -> LayerAnalysis:
    """Analyse one decoded layer tensor: spectrum, power-law fit, norms and diagnostics."""
    reason = _non_finite_reason(array)
    if reason:
        return LayerAnalysis(spec, _failed(spec, reason))
    matrices = layer_matrices(array)
    evals, spectrum = layer_esd(spec, matrices, options, run)
    if not evals.size or evals[-1] <= 0:
        return LayerAnalysis(spec, _failed(spec, "all-zero matrix: the spectrum is empty"), evals)
    norms = norm_metrics(evals, max(matrices[0].shape))
    fit = fit_power_law(evals, min_tail=options.min_tail)
    randomized = layer_randomized(spec, matrices, options, spectrum, run) if options.randomize else None
    diagnostics = diagnose(
        matrices,
        evals,
        fit,
        stored_dtype=spec.info.value_dtype,
        thresholds=options.thresholds,
        randomized=randomized,
        vectors=options.vectors,
        spectrum=spectrum,
    )
    info = spec.info
    result = LayerResult(
        spec.name,
        spec.kind,
        spec.block,
        tuple(info.shape),
        info.dtype,
        status="ok",
        num_evals=int(evals.size),
        **dataclasses.asdict(norms),
        **{f.name: getattr(diagnostics, f.name) for f in dataclasses.fields(diagnostics)},
    )
    if fit.status != "ok":
        result = dataclasses.replace(result, status="failed", reason=f"power-law fit failed: {fit.reason}")
    else:
        result = dataclasses.replace(
            result,
            alpha=fit.alpha,
            xmin=fit.xmin,
            xmax=fit.xmax,
            D=fit.D,
            sigma=fit.sigma,
            num_tail=fit.num_tail,
            alpha_weighted=fit.alpha * norms.log_spectral_norm,
            alpha_weighted_per_n=fit.alpha * norms.log_spectral_norm_per_n,
        )
    return LayerAnalysis(spec, result, evals, randomized.evals if randomized is not None else None)


#: Why a DoRA magnitude vector is left out of an adapter analysed alone.
DORA_WITHOUT_BASE = "DoRA magnitude not applied: it needs the base (compare BASE ADAPTER)"


def analyze_update(spec: LayerSpec, a: np.ndarray, b: np.ndarray) -> LayerAnalysis:
    """A LoRA module's update ΔW = s·B·A from its factors: singular values, ranks, norm.

    The ESD of ΔW (σ²/N, its M − r zero eigenvalues included) gives the usual norms;
    with at most r non-zero eigenvalues there is no power-law tail to fit.
    """
    module = spec.lora
    assert module is not None
    reason = _non_finite_reason(a) or _non_finite_reason(b)
    if reason:
        return LayerAnalysis(spec, _failed(spec, f"LoRA factors: {reason}"))
    note = DORA_WITHOUT_BASE if module.magnitude is not None else module.note
    update = lora_update_stats(a, b, module.scale, note=note)
    n, m = max(spec.info.shape), min(spec.info.shape)
    evals = np.zeros(m)
    nonzero = np.sort(np.square(update.singular_values[:m]))
    evals[m - nonzero.size :] = nonzero / n
    info = spec.info
    base = {"status": "ok", "num_evals": m, "update": update}
    if not evals[-1] > 0:
        result = LayerResult(spec.name, spec.kind, spec.block, tuple(info.shape), info.dtype, reason="zero update (B = 0: an untrained adapter)", **base)
        return LayerAnalysis(spec, result, evals)
    result = LayerResult(
        spec.name, spec.kind, spec.block, tuple(info.shape), info.dtype,
        reason=f"low-rank update (r = {module.rank}): no power-law fit", **base, **dataclasses.asdict(norm_metrics(evals, n)),
    )
    return LayerAnalysis(spec, result, evals)


#: What one bad layer may raise; each becomes that layer's failed result.
_LAYER_ERRORS = (WeightscopeError, ValueError, ArithmeticError, MemoryError, np.linalg.LinAlgError)


def failure_of(spec: LayerSpec, exc: Exception) -> LayerAnalysis:
    """A layer's failed analysis from the error that stopped it (its first line)."""
    return LayerAnalysis(spec, _failed(spec, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))


#: What `read_layer` hands `analyze_read`: a tensor, a LoRA module's (A, B), or a failure.
Loaded = np.ndarray | tuple[np.ndarray, np.ndarray] | LayerAnalysis


def read_layer(reader: CheckpointReader, spec: LayerSpec) -> Loaded:
    """The decoded tensor of a layer (for a LoRA update: its factors A and B), or its
    failed analysis if it cannot be read."""
    try:
        if spec.lora is not None:
            return reader.read(spec.lora.a), reader.read(spec.lora.b)
        if spec.part is not None:
            return spec.part.cut(reader.read(spec.part.source))
        return reader.read(spec.info)
    except _LAYER_ERRORS as exc:
        return failure_of(spec, exc)


def analyze_read(spec: LayerSpec, array: Loaded, options: AnalysisOptions, run: Plan = Plan()) -> LayerAnalysis:
    """`analyze_matrices` (or `analyze_update`) on what `read_layer` returned; a failure
    becomes a failed result."""
    if isinstance(array, LayerAnalysis):
        return array
    try:
        if isinstance(array, tuple):
            return analyze_update(spec, *array)
        return analyze_matrices(spec, array, options, run)
    except _LAYER_ERRORS as exc:
        return failure_of(spec, exc)


def stream_layers(
    reader: CheckpointReader,
    selection: Selection,
    options: AnalysisOptions,
    progress: ProgressHook | None = None,
    execution: Execution = Execution(),
) -> Iterator[LayerAnalysis]:
    """Analyse the selected layers and yield them in storage order.

    Reading runs one layer ahead of the computing workers, and several layers compute at
    once when memory allows (`weightscope.execution.schedule`); ``execution`` chooses the device,
    workers and cache.
    """
    run = plan(selection.layers, options, execution)
    if progress is not None:
        progress(0, selection.layers)
    yield from pipelined(
        selection.layers,
        lambda spec: read_layer(reader, spec),
        lambda spec, array: analyze_read(spec, array, options, run),
        workers=run.workers,
        cost=lambda spec: working_set(spec, options),
        budget=run.budget,
        progress=(lambda done: progress(done, selection.layers)) if progress is not None else None,
    )


def analyze(
    path: str | os.PathLike[str],
    *,
    progress: ProgressHook | None = None,
    on_layer: LayerHook | None = None,
    execution: Execution = Execution(),
    executor: str | None = None,
    **options: object,
) -> Report:
    """Analyse every weight matrix of a checkpoint and return the `Report`.

    ``path`` is anything `open_checkpoint` opens: a file or directory in any supported
    format, a hub cache directory, or a torch ``nn.Module`` / state dict in memory.

    ``options`` are the fields of `AnalysisOptions` (include, exclude, min_evals, min_tail,
    eig_dtype, randomize, seed, vectors, thresholds). Bad input (a path that is not a
    checkpoint, a bad regex) raises `WeightscopeError`; a bad layer is reported as failed
    inside the report. ``on_layer`` sees each `LayerAnalysis` (with its spectrum) as it
    streams past, for views that draw spectra. ``execution`` says how to run (device,
    workers, spectrum cache, executor; by default: auto, one worker per core, cache on,
    local threads); ``executor="ray"`` is short for ``execution=Execution(executor="ray")``:
    the layers run as tasks on a Ray cluster, with the same report.
    """
    if executor is not None:
        execution = dataclasses.replace(execution, executor=executor)
    return analyze_with(path, AnalysisOptions.from_kwargs(**options), progress, on_layer, execution)


def analyze_with(
    path: str | os.PathLike[str],
    options: AnalysisOptions,
    progress: ProgressHook | None = None,
    on_layer: LayerHook | None = None,
    execution: Execution = Execution(),
) -> Report:
    """`analyze` for callers that already hold an `AnalysisOptions`."""
    with closing(analyze_many([path], options, progress, on_layer, execution)) as reports:
        return next(reports)


def analyze_many(
    paths: Sequence[str | os.PathLike[str]],
    options: AnalysisOptions,
    progress: ProgressHook | None = None,
    on_layer: LayerHook | None = None,
    execution: Execution = Execution(),
) -> Generator[Report, None, None]:
    """The reports of several checkpoints, in the order given.

    Locally the checkpoints stream one after another (each fills the cores by itself).
    On Ray the layers of all of them form one pool of tasks submitted at once, so a run
    of 100 checkpoints keeps every node busy instead of waiting at each checkpoint's
    slowest layer; ``progress`` then counts the layers of all the checkpoints.
    """
    if execution.executor == "ray":
        yield from _analyze_on_ray(paths, options, progress, on_layer, execution)
        return
    for path in paths:
        with open_checkpoint(path) as reader:
            selection = select(reader, options)
            layers = []
            for item in stream_layers(reader, selection, options, progress, execution):
                if on_layer is not None:
                    on_layer(item)
                layers.append(item.result)
            measures = measure_model(reader, options) if options.measures else None
            yield _report(path, reader.format, reader.metadata, options, selection, layers, measures)


def _report(
    path: str | os.PathLike[str],
    format: str,
    metadata: dict[str, Any],
    options: AnalysisOptions,
    selection: Selection,
    layers: list[LayerResult],
    measures: ModelMeasures | None,
) -> Report:
    return Report(
        source=source_name(path),
        format=format,
        weightscope_version=__version__,
        options=dataclasses.asdict(options),
        layers=layers,
        skipped=selection.skipped,
        summary=summarize(layers, selection.skipped, options.thresholds),
        metadata=metadata,
        measures=measures,
    )


# --- on a Ray cluster --------------------------------------------------------------------


def check_worker_version(version: str) -> None:
    """Refuse to work for a driver of another weightscope version: the numbers of a
    cluster run must be those of a local run on the driver."""
    if version != __version__:
        raise WeightscopeError(
            f"the Ray worker runs weightscope {__version__}, the driver {version}: install one version everywhere"
        )


def reopened(reader: CheckpointReader, spec: LayerSpec, path: str) -> LayerSpec:
    """``spec`` (chosen by the driver from the headers) as this worker's reader sees it:
    its own entry of the same name, so reads go to the file as this node mounts it.
    An entry whose shape or dtype differ means the checkpoint changed in between."""
    here = next((info for info in reader.tensors() if info.name == spec.name), None)
    if here is None or (here.shape, here.dtype) != (spec.info.shape, spec.info.dtype):
        raise CheckpointError(f"{path}: tensor {spec.name} changed or vanished since the driver read the headers")
    return dataclasses.replace(spec, info=here)


def analyze_task(
    path: str, spec: LayerSpec, options: AnalysisOptions, device: str, execution: Execution, version: str
) -> LayerAnalysis:
    """One work unit, run by a Ray worker: open the checkpoint from the storage it shares
    with the driver, read this one tensor, and analyse it exactly as `stream_layers` does
    (`analyze_read`, one BLAS thread, the spectrum cache of this node or the shared one)."""
    check_worker_version(version)
    with open_checkpoint(path) as reader:
        spec = reopened(reader, spec, path)
        with blas_threads(1):
            return analyze_read(spec, read_layer(reader, spec), options, task_plan(device, execution))


def measures_task(path: str, options: AnalysisOptions, version: str) -> ModelMeasures | None:
    """The model-level measures of one checkpoint, run by a Ray worker: its bounded pass
    (q/k per block, the embeddings) reads the weights there, never on the driver."""
    check_worker_version(version)
    with open_checkpoint(path) as reader:
        return measure_model(reader, options)


def _analyze_on_ray(
    paths: Sequence[str | os.PathLike[str]],
    options: AnalysisOptions,
    progress: ProgressHook | None,
    on_layer: LayerHook | None,
    execution: Execution,
) -> Iterator[Report]:
    ray = connect(execution.ray_address)
    gpus = cluster_gpus(ray)
    checkpoints = []
    for path in paths:
        with open_checkpoint(path) as reader:
            selection = select(reader, options)
        shapes = [(spec.info.shape[0], spec.info.shape[1]) for spec in selection.layers]
        checkpoints.append((path, reader.format, reader.metadata, selection, cluster_device(execution.device, shapes, gpus)))
    specs = [spec for *_, selection, _ in checkpoints for spec in selection.layers]
    calls = [
        (os.path.abspath(path), spec, options, device, execution, __version__)
        for path, _, _, selection, device in checkpoints
        for spec in selection.layers
    ]
    needs = [
        Need(working_set(spec, options), GPU_SHARE if device == "cuda" else 0.0)
        for *_, selection, device in checkpoints
        for spec in selection.layers
    ]
    measured = None
    if options.measures:  # one task per checkpoint, as big as its largest layer's working set;
        # submitted first: each report waits for its own, and they are small
        measured = run_tasks(
            ray,
            measures_task,
            [(os.path.abspath(path), options, __version__) for path, *_ in checkpoints],
            [Need(max((working_set(spec, options) for spec in selection.layers), default=1), 0.0)
             for *_, selection, _ in checkpoints],
            lost=lambda position, exc: None,
        )
    if progress is not None:
        progress(0, specs)
    results = run_tasks(
        ray,
        analyze_task,
        calls,
        needs,
        lost=lambda position, exc: failure_of(specs[position], exc),
        progress=(lambda done: progress(done, specs)) if progress is not None else None,
    )
    with closing(results), closing(measured) if measured is not None else nullcontext():
        for path, format, metadata, selection, _ in checkpoints:
            layers = []
            for item in itertools.islice(results, len(selection.layers)):
                if on_layer is not None:
                    on_layer(item)
                layers.append(item.result)
            measures = next(measured) if measured is not None else None
            yield _report(path, format, metadata, options, selection, layers, measures)
