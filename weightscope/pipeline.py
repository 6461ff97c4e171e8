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
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass

import numpy as np

from weightscope._version import __version__
from weightscope.checkpoint import open_checkpoint
from weightscope.checkpoint.base import CheckpointReader, TensorInfo
from weightscope.checks import diagnose
from weightscope.errors import CheckpointError, WeightscopeError
from weightscope.execution.cluster import GPU_SHARE, Need, cluster_device, cluster_gpus, connect, run_tasks
from weightscope.execution.plan import Execution, Plan, plan, task_plan, working_set
from weightscope.execution.schedule import pipelined
from weightscope.layer_spectra import layer_esd, layer_randomized
from weightscope.layers import LayerSpec, Selection, layer_matrices, select_layers
from weightscope.linalg._blas import blas_threads
from weightscope.options import AnalysisOptions
from weightscope.report import LayerResult, Report
from weightscope.stats.fit import fit_power_law
from weightscope.stats.norms import norm_metrics
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
    """Which tensors of an open checkpoint would be analysed, from metadata alone."""
    return select_layers(
        reader.tensors(), include=options.include, exclude=options.exclude, min_evals=options.min_evals
    )


def inspect(path: str | os.PathLike[str], **options: object) -> Inspection:
    """List a checkpoint's tensors and which would be analysed; reads headers only."""
    opts = AnalysisOptions.from_kwargs(**options)
    with open_checkpoint(path) as reader:
        return Inspection(str(path), reader.format, reader.tensors(), select(reader, opts))


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
    norms = norm_metrics(evals)
    fit = fit_power_law(evals, min_tail=options.min_tail)
    randomized = layer_randomized(spec, matrices, options, spectrum, run) if options.randomize else None
    diagnostics = diagnose(
        matrices,
        evals,
        fit,
        stored_dtype=spec.info.dtype,
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
        )
    return LayerAnalysis(spec, result, evals, randomized.evals if randomized is not None else None)


#: What one bad layer may raise; each becomes that layer's failed result.
_LAYER_ERRORS = (WeightscopeError, ValueError, ArithmeticError, MemoryError, np.linalg.LinAlgError)


def failure(spec: LayerSpec, exc: Exception) -> LayerAnalysis:
    """The failed analysis of a layer that raised ``exc`` (or whose cluster task was lost)."""
    return LayerAnalysis(spec, _failed(spec, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))


def read_layer(reader: CheckpointReader, spec: LayerSpec) -> np.ndarray | LayerAnalysis:
    """The decoded tensor of a layer, or its failed analysis if it cannot be read."""
    try:
        return reader.read(spec.info)
    except _LAYER_ERRORS as exc:
        return failure(spec, exc)


def analyze_read(
    spec: LayerSpec, array: np.ndarray | LayerAnalysis, options: AnalysisOptions, run: Plan = Plan()
) -> LayerAnalysis:
    """`analyze_matrices` on what `read_layer` returned; a failure becomes a failed result."""
    if isinstance(array, LayerAnalysis):
        return array
    try:
        return analyze_matrices(spec, array, options, run)
    except _LAYER_ERRORS as exc:
        return failure(spec, exc)


def analyze_layer(reader: CheckpointReader, spec: LayerSpec, options: AnalysisOptions) -> LayerAnalysis:
    """Read and analyse one layer; any failure becomes a failed result, not an exception."""
    return analyze_read(spec, read_layer(reader, spec), options)


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
    with blas_threads(run.blas_threads):
        analyses = pipelined(
            selection.layers,
            lambda spec: read_layer(reader, spec),
            lambda spec, array: analyze_read(spec, array, options, run),
            workers=run.workers,
            cost=lambda spec: working_set(spec, options),
            budget=run.budget,
        )
        for done, analysis in enumerate(analyses, start=1):
            yield analysis
            if progress is not None:
                progress(done, selection.layers)


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
) -> Iterator[Report]:
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
            yield _report(path, reader.format, options, selection, layers)


def _report(
    path: str | os.PathLike[str], format: str, options: AnalysisOptions, selection: Selection, layers: list[LayerResult]
) -> Report:
    return Report(
        source=str(path),
        format=format,
        weightscope_version=__version__,
        options=dataclasses.asdict(options),
        layers=layers,
        skipped=selection.skipped,
        summary=summarize(layers, selection.skipped),
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
        checkpoints.append((path, reader.format, selection, cluster_device(execution.device, shapes, gpus)))
    specs = [spec for _, _, selection, _ in checkpoints for spec in selection.layers]
    calls = [
        (os.path.abspath(path), spec, options, device, execution, __version__)
        for path, _, selection, device in checkpoints
        for spec in selection.layers
    ]
    needs = [
        Need(working_set(spec, options), GPU_SHARE if device == "cuda" else 0.0)
        for _, _, selection, device in checkpoints
        for spec in selection.layers
    ]
    if progress is not None:
        progress(0, specs)
    results = run_tasks(
        ray,
        analyze_task,
        calls,
        needs,
        lost=lambda position, exc: failure(specs[position], exc),
        progress=(lambda done: progress(done, specs)) if progress is not None else None,
    )
    with closing(results):
        for path, format, selection, _ in checkpoints:
            layers = []
            for item in itertools.islice(results, len(selection.layers)):
                if on_layer is not None:
                    on_layer(item)
                layers.append(item.result)
            yield _report(path, format, options, selection, layers)
