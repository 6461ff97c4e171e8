"""The pipeline: checkpoint → layer matrices → spectrum → fit → `LayerResult` → `Report`.

Layers stream through in storage order: one reader thread reads and decodes a tensor
ahead while worker threads decompose the ones before it, and a tensor is dropped once its
layer is analysed, so memory is bounded by a budget of a few of the largest tensors, not
by the checkpoint. Where the layers run — local threads or, with ``executor="ray"``, one
task per layer on a Ray cluster (`analyze_task`: the same `analyze_read` on a worker) —
is the runner's business (`weightscope.execution.runner`); how (device, workers, cache)
is `weightscope.execution.plan`'s. Neither ever changes the numbers. One layer's
analysis is `weightscope.analysis.layer`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

from weightscope._version import __version__
from weightscope.analysis.layer import (
    LayerAnalysis,
    LayerHook,
    Loaded,
    ProgressHook,
    analyze_read,
    failure_of,
    measure_read,
    read_layer,
    select,
)
from weightscope.analysis.model_measures import (
    MeasurePart,
    MeasurePlan,
    MeasureRole,
    combine_measures,
    part_bytes,
    plan_measures,
)
from weightscope.checkpoint import open_checkpoint, source_name
from weightscope.checkpoint.base import CheckpointReader, TensorInfo
from weightscope.checkpoint.layers import LayerSpec, Selection
from weightscope.execution.cluster import GPU_SHARE, Need, check_worker_version, cluster_device, cluster_gpus, reopened
from weightscope.execution.plan import Execution, float64_stage_bytes, plan, task_plan, working_set
from weightscope.execution.runner import LocalBatch, RemoteBatches, run_batches, run_local
from weightscope.linalg._blas import blas_threads
from weightscope.linalg.device import eigen_flops
from weightscope.options import AnalysisOptions
from weightscope.report import LayerResult, ModelMeasures, Report
from weightscope.summary import summarize


@dataclass(frozen=True)
class Inspection:
    """What `analyze` would do with a checkpoint, without any math: `weightscope inspect`."""

    source: str
    format: str
    tensors: list[TensorInfo]
    selection: Selection


def inspect(path: str | os.PathLike[str], **options: object) -> Inspection:
    """List a checkpoint's tensors and which would be analysed; reads headers only."""
    opts = AnalysisOptions.from_kwargs(**options)
    with open_checkpoint(path) as reader:
        return Inspection(source_name(path), reader.format, reader.tensors(), select(reader, opts))


#: A checkpoint's measured tensors outside the layer stream, by name: their parts.
ExtraParts = dict[str, MeasurePart]


@dataclass(frozen=True)
class MeasureRoles:
    """Where each measured tensor gives its part (`weightscope.analysis.model_measures`):
    ``streamed``, by layer name, in its layer's unit; ``extra``, the ones no layer
    carries (narrower than ``min_evals``), read once for their part alone."""

    streamed: dict[str, MeasureRole]
    extra: list[tuple[LayerSpec, MeasureRole]]

    def of(self, spec: LayerSpec) -> MeasureRole | None:
        return self.streamed.get(spec.name) if spec.part is None and spec.lora is None else None

    def cost(self, spec: LayerSpec) -> int:
        role = self.of(spec)
        return part_bytes(spec, role) if role is not None else 0

    def extra_cost(self) -> int:
        return max((4 * spec.info.numel + part_bytes(spec, role) for spec, role in self.extra), default=0)


def measure_roles(measures: MeasurePlan | None, selection: Selection) -> MeasureRoles:
    if measures is None:
        return MeasureRoles({}, [])
    streamed = {spec.name for spec in selection.layers if spec.part is None and spec.lora is None}
    return MeasureRoles(
        {name: role for name, role in measures.roles.items() if name in streamed},
        [(spec, measures.roles[spec.name]) for spec in measures.specs if spec.name in measures.roles.keys() - streamed],
    )


def _local_batch(
    reader: CheckpointReader,
    selection: Selection,
    options: AnalysisOptions,
    execution: Execution,
    roles: MeasureRoles = MeasureRoles({}, []),
) -> LocalBatch[LayerSpec, Loaded, LayerAnalysis, ExtraParts]:
    """A checkpoint's layers as local threads analyse them: read one layer ahead of the
    workers, several computing at once when memory allows, the largest first;
    ``execution`` chooses the device, workers and cache (`plan`). Each measured tensor
    gives its part in its layer's unit (``roles``); the few no layer carries (small by
    construction) are read after the layers."""
    run = plan(selection.layers, options, execution)
    return LocalBatch(
        selection.layers,
        lambda spec: read_layer(reader, spec),
        lambda spec, array: analyze_read(spec, array, options, run, roles.of(spec)),
        workers=run.workers,
        cost=lambda spec: working_set(spec, options) + roles.cost(spec),
        budget=run.budget,
        finish=(lambda: {spec.name: measure_read(spec, read_layer(reader, spec), role) for spec, role in roles.extra})
        if roles.extra
        else None,
        size=lambda spec: eigen_flops([(spec.info.shape[0], spec.info.shape[1])]),
    )


def stream_layers(
    reader: CheckpointReader,
    selection: Selection,
    options: AnalysisOptions,
    progress: ProgressHook | None = None,
    execution: Execution = Execution(),
) -> Iterator[LayerAnalysis]:
    """Analyse the selected layers of an open checkpoint on local threads and yield them
    in storage order (`weightscope.execution.runner.run_local`)."""
    yield from run_local(_local_batch(reader, selection, options, execution), progress)


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
    slowest layer; ``progress`` then counts the layers of all the checkpoints
    (`weightscope.execution.runner`).
    """
    opened: list[Opened] = [Opened("", {}, Selection([], []), None)] * len(paths)

    def open_batch(index: int, reader: CheckpointReader) -> MeasureRoles:
        selection = select(reader, options)
        measures = plan_measures(reader, options) if options.measures else None
        opened[index] = Opened(reader.format, reader.metadata, selection, measures)
        return measure_roles(measures, selection)

    @contextmanager
    def local(index: int) -> Iterator[LocalBatch[LayerSpec, Loaded, LayerAnalysis, ExtraParts]]:
        with open_checkpoint(paths[index]) as reader:
            roles = open_batch(index, reader)
            yield _local_batch(reader, opened[index].selection, options, execution, roles)

    def remote(ray: Any) -> RemoteBatches[LayerSpec, LayerAnalysis, ExtraParts]:
        gpus = cluster_gpus(ray)
        devices, roles = [], []
        for index, path in enumerate(paths):
            with open_checkpoint(path) as reader:
                roles.append(open_batch(index, reader))
            shapes = [(spec.info.shape[0], spec.info.shape[1]) for spec in opened[index].selection.layers]
            devices.append(cluster_device(execution.device, shapes, gpus))
        where = [os.path.abspath(path) for path in paths]
        return RemoteBatches(
            [batch.selection.layers for batch in opened],
            analyze_task,
            lambda index, spec: (
                where[index],
                spec,
                options,
                devices[index],
                execution,
                __version__,
                roles[index].of(spec),
            ),
            lambda index, spec: Need(
                working_set(spec, options)
                + float64_stage_bytes(spec, options, devices[index])
                + roles[index].cost(spec),
                GPU_SHARE if devices[index] == "cuda" else 0.0,
            ),
            failure_of,
            # one task per checkpoint whose measures need tensors no layer carries
            finish_task=measures_task if any(batch.extra for batch in roles) else None,
            finish_args=lambda index: (where[index], roles[index].extra, __version__),
            finish_need=lambda index: Need(max(roles[index].extra_cost(), 1), 0.0),
        )

    for ran in run_batches(len(paths), execution, local=local, remote=remote, progress=progress):
        layers = []
        parts: dict[str, MeasurePart] = {}
        for item in ran.results:
            if on_layer is not None:
                on_layer(item)
            layers.append(item.result)
            if item.measure is not None:
                parts[item.spec.name] = item.measure
        parts |= ran.finish() or {}
        batch = opened[ran.index]
        measures = combine_measures(batch.measures, parts) if batch.measures is not None else None
        yield _report(paths[ran.index], batch.format, batch.metadata, options, batch.selection, layers, measures)


@dataclass(frozen=True)
class Opened:
    """What `analyze_many` keeps of an opened checkpoint for its report."""

    format: str
    metadata: dict[str, Any]
    selection: Selection
    measures: MeasurePlan | None


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


# --- the tasks a Ray worker runs ----------------------------------------------------------


def analyze_task(
    path: str,
    spec: LayerSpec,
    options: AnalysisOptions,
    device: str,
    execution: Execution,
    version: str,
    role: MeasureRole | None = None,
) -> LayerAnalysis:
    """One work unit, run by a Ray worker: open the checkpoint from the storage it shares
    with the driver, read this one tensor, and analyse it exactly as `stream_layers` does
    (`analyze_read`, one BLAS thread, the spectrum cache of this node or the shared one),
    with its part of the measures where it has a ``role``."""
    check_worker_version(version)
    with open_checkpoint(path) as reader:
        spec = reopened(reader, spec, path)
        with blas_threads(1):
            return analyze_read(spec, read_layer(reader, spec), options, task_plan(device, execution), role)


def measures_task(path: str, extra: list[tuple[LayerSpec, MeasureRole]], version: str) -> ExtraParts:
    """The parts of the measured tensors no layer carries, run by a Ray worker: it reads
    the weights there, never on the driver."""
    check_worker_version(version)
    with open_checkpoint(path) as reader:
        parts = {}
        for spec, role in extra:
            spec = reopened(reader, spec, path)
            parts[spec.name] = measure_read(spec, read_layer(reader, spec), role)
        return parts
