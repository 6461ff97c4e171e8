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
import threading
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
    read_layer,
    select,
)
from weightscope.analysis.model_measures import measure_model, measures_bytes
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


def _local_batch(
    reader: CheckpointReader, selection: Selection, options: AnalysisOptions, execution: Execution
) -> LocalBatch[LayerSpec, Loaded, LayerAnalysis, ModelMeasures | None]:
    """A checkpoint's layers as local threads analyse them: read one layer ahead of the
    workers, several computing at once when memory allows, the largest first;
    ``execution`` chooses the device, workers and cache (`plan`). The model-level
    measures run on a worker alongside the layers, their reads and the layers' taking
    turns on the reader."""
    run = plan(selection.layers, options, execution)
    reading = threading.Lock()  # the reader thread and the measures share the reader

    def load(spec: LayerSpec) -> Loaded:
        with reading:
            return read_layer(reader, spec)

    return LocalBatch(
        selection.layers,
        load,
        lambda spec, array: analyze_read(spec, array, options, run),
        workers=run.workers,
        cost=lambda spec: working_set(spec, options),
        budget=run.budget,
        finish=(lambda: measure_model(reader, options, reading)) if options.measures else None,
        finish_cost=measures_bytes(reader, options) if options.measures else 0.0,
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
    opened: list[tuple[str, dict[str, Any], Selection]] = [("", {}, Selection([], []))] * len(paths)

    @contextmanager
    def local(index: int) -> Iterator[LocalBatch[LayerSpec, Loaded, LayerAnalysis, ModelMeasures | None]]:
        with open_checkpoint(paths[index]) as reader:
            selection = select(reader, options)
            opened[index] = (reader.format, reader.metadata, selection)
            yield _local_batch(reader, selection, options, execution)

    def remote(ray: Any) -> RemoteBatches[LayerSpec, LayerAnalysis, ModelMeasures | None]:
        gpus = cluster_gpus(ray)
        devices, finish_bytes = [], []
        for index, path in enumerate(paths):
            with open_checkpoint(path) as reader:
                selection = select(reader, options)
                finish_bytes.append(measures_bytes(reader, options) if options.measures else 1)
            opened[index] = (reader.format, reader.metadata, selection)
            shapes = [(spec.info.shape[0], spec.info.shape[1]) for spec in selection.layers]
            devices.append(cluster_device(execution.device, shapes, gpus))
        where = [os.path.abspath(path) for path in paths]
        return RemoteBatches(
            [selection.layers for _, _, selection in opened],
            analyze_task,
            lambda index, spec: (where[index], spec, options, devices[index], execution, __version__),
            lambda index, spec: Need(
                working_set(spec, options) + float64_stage_bytes(spec, options, devices[index]),
                GPU_SHARE if devices[index] == "cuda" else 0.0,
            ),
            failure_of,
            # one task per checkpoint, asking for what its measures hold (`measures_bytes`)
            finish_task=measures_task if options.measures else None,
            finish_args=lambda index: (where[index], options, __version__),
            finish_need=lambda index: Need(finish_bytes[index], 0.0),
        )

    for ran in run_batches(len(paths), execution, local=local, remote=remote, progress=progress):
        layers = []
        for item in ran.results:
            if on_layer is not None:
                on_layer(item)
            layers.append(item.result)
        measures = ran.finish()
        format, metadata, selection = opened[ran.index]
        yield _report(paths[ran.index], format, metadata, options, selection, layers, measures)


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
