"""Compare two checkpoints (or saved reports) layer by layer: `weightscope compare A B`.

Layers are paired by name, lined up across the wrappers a fine-tune adds (a task head's
``bert.``, PEFT's ``base_model.model.`` and ``.base_layer``: `weightscope.checkpoint.names`),
and what was removed to pair them is said; fewer than half of either side paired is an
error, not an empty comparison. Each matched layer gets its change in alpha, in log norms
and in verdict. When both sides are checkpoints, the weights are at hand and the update
ΔW = W_B − W_A itself is measured: its size relative to W_A and its spectrum (stable rank,
effective rank, the rank holding 90 % of ‖ΔW‖²). A fine-tune's update is usually of tiny
rank (the intrinsic dimension of fine-tuning, Aghajanyan et al. 2021); these numbers show
whether that holds and where.

B may be a LoRA adapter (`weightscope.checkpoint.lora`): then each adapted layer is
compared as W against the merged W + s·B·A (DoRA's magnitude applied when present), the
update's ranks come from the factors, and base layers the adapter does not touch are
listed as unchanged without being analysed.

Pairs of layers flow through the same runner as `analyze` (`execution.runner.run_batches`: one reader
thread a pair ahead of the workers, the memory budget, the device and the spectrum cache
of `weightscope.execution`); a pair's tensors (and ΔW) are the only arrays it holds,
never two whole models.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weightscope import vocabulary
from weightscope._version import __version__
from weightscope.analysis.layer import (
    Loaded,
    ProgressHook,
    analyze_read,
    failure_of,
    read_layer,
    select,
)
from weightscope.checkpoint import open_checkpoint, source_name
from weightscope.checkpoint.base import CheckpointReader, TensorInfo
from weightscope.checkpoint.layers import LayerSpec, layer_matrices
from weightscope.checkpoint.lora import PEFT_IN_MEMORY, AdapterReader, LoraModule, is_peft_model
from weightscope.checkpoint.names import Alignment, NameKey, align_names
from weightscope.commands.sources import read_saved_report, report_for
from weightscope.errors import WeightscopeError
from weightscope.execution.cluster import (
    GPU_SHARE,
    Need,
    check_worker_version,
    cluster_device,
    cluster_gpus,
    reopened,
)
from weightscope.execution.plan import Execution, Plan, plan, task_plan, working_set
from weightscope.execution.runner import LocalBatch, RemoteBatches, run_batches
from weightscope.linalg._blas import blas_threads
from weightscope.linalg.choices import fixed_dtype
from weightscope.linalg.spectrum import SpectrumOptions
from weightscope.options import AnalysisOptions
from weightscope.report import LayerResult, Report, json_document
from weightscope.stats.finetune import (
    FinetuneDimension,
    finetune_dimension,
)
from weightscope.stats.update import UpdateStats, lora_update_stats, sum_squares, update_between

SCHEMA = "weightscope.compare/1"


@dataclass(frozen=True)
class LayerChange:
    """One matched layer: its numbers on both sides and what changed."""

    name: str
    name_a: str
    name_b: str
    kind: str
    alpha_a: float | None
    alpha_b: float | None
    delta_alpha: float | None
    delta_log_norm: float | None
    delta_log_spectral_norm: float | None
    verdict_a: str | None
    verdict_b: str | None
    worse: bool
    update: UpdateStats | None = None
    note: str | None = None
    #: relative changes B/A − 1 of λmax and of the stable rank (a quantization's damage
    #: to the top of the spectrum and to its spread)
    lambda_max_change: float | None = None
    stable_rank_change: float | None = None


@dataclass(frozen=True)
class CompareSummary:
    """What to read first: the median shift, and which layers moved or got worse."""

    matched: int
    delta_alpha_median: float | None
    moved_most: list[str]
    changed_most: list[str]
    worse: list[str]
    #: the whole update's intrinsic dimension (None without weights)
    finetune: FinetuneDimension | None = None


@dataclass(frozen=True)
class Comparison:
    """`weightscope compare A B`; ``weights`` says whether update stats were computed."""

    a: str
    b: str
    weights: bool
    strip_prefix: list[str]
    layers: list[LayerChange]
    only_a: list[str]
    only_b: list[str]
    summary: CompareSummary
    #: "checkpoints", "reports", "adapter" (B is a LoRA adapter of A) or "quantization"
    #: (one side is GGUF: ‖ΔW‖/‖W‖ is the quantization error)
    mode: str = "checkpoints"
    #: layers of A that B does not change (an adapter's untouched layers), not analysed
    unchanged: list[str] = field(default_factory=list)
    #: how the sides were read and paired: what was removed from the layer names
    #: (`Alignment.notes`), and a PEFT model in memory read as base + adapter
    aligned: list[str] = field(default_factory=list)
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return json_document(self)


# --- per-layer change ------------------------------------------------------------------


def layer_verdict(layer: LayerResult) -> str | None:
    """The layer's verdict; a failed layer without diagnostics still reads "failed"."""
    if layer.verdict is not None:
        return layer.verdict
    return None if layer.ok else "failed"


def got_worse(verdict_a: str | None, verdict_b: str | None) -> bool:
    """Whether B's verdict is more severe than A's (`vocabulary.severity`; never when
    either is unjudged). Verdicts of the same severity are never "worse" than each other:
    a change between two problems of the same weight is a change, not a regression."""
    before, after = vocabulary.severity(verdict_a), vocabulary.severity(verdict_b)
    return before is not None and after is not None and after > before


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _relative_change(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or a == 0 else b / a - 1.0


def layer_change(
    key: str, layer_a: LayerResult, layer_b: LayerResult, update: UpdateStats | None = None, note: str | None = None
) -> LayerChange:
    verdict_a, verdict_b = layer_verdict(layer_a), layer_verdict(layer_b)
    return LayerChange(
        name=key,
        name_a=layer_a.name,
        name_b=layer_b.name,
        kind=layer_b.kind,
        alpha_a=layer_a.alpha,
        alpha_b=layer_b.alpha,
        delta_alpha=_difference(layer_a.alpha, layer_b.alpha),
        delta_log_norm=_difference(layer_a.log_norm, layer_b.log_norm),
        delta_log_spectral_norm=_difference(layer_a.log_spectral_norm, layer_b.log_spectral_norm),
        verdict_a=verdict_a,
        verdict_b=verdict_b,
        worse=got_worse(verdict_a, verdict_b) or (layer_a.ok and not layer_b.ok),
        update=update,
        note=note,
        lambda_max_change=_relative_change(layer_a.lambda_max, layer_b.lambda_max),
        stable_rank_change=_relative_change(layer_a.stable_rank, layer_b.stable_rank),
    )


# --- the update ΔW ---------------------------------------------------------------------


# --- whole comparisons -----------------------------------------------------------------


def _summarize(changes: list[LayerChange], top: int) -> CompareSummary:
    deltas = [c.delta_alpha for c in changes if c.delta_alpha is not None]
    moved = sorted((c for c in changes if c.delta_alpha is not None), key=lambda c: -abs(c.delta_alpha))
    sizes = {c.name: c.update.relative_norm for c in changes if c.update and c.update.relative_norm is not None}
    updated = sorted(sizes, key=lambda name: -sizes[name])
    return CompareSummary(
        matched=len(changes),
        delta_alpha_median=float(np.median(deltas)) if deltas else None,
        moved_most=[c.name for c in moved[:top]],
        changed_most=updated[:top],
        worse=[c.name for c in changes if c.worse],
        finetune=finetune_dimension(
            [
                (c.update.rank90, c.update.params90, c.update.params, bool(c.update.concentrated))
                for c in changes
                if c.update is not None and c.update.params and c.update.params90 is not None
            ]
        ),
    )


def compare_reports(
    report_a: Report, report_b: Report, *, strip_prefix: Iterable[str] = (), top: int = 5
) -> Comparison:
    """Compare two reports: alpha, norm and verdict changes (no weights, so no update)."""
    prefixes = list(strip_prefix)
    layers_a = {layer.name: layer for layer in report_a.layers}
    layers_b = {layer.name: layer for layer in report_b.layers}
    match = align_names(list(layers_a), list(layers_b), prefixes)
    match.check()
    changes = [layer_change(key, layers_a[na], layers_b[nb]) for key, na, nb in match.pairs]
    return Comparison(
        report_a.source,
        report_b.source,
        False,
        prefixes,
        changes,
        match.only_a,
        match.only_b,
        _summarize(changes, top),
        aligned=match.notes,
    )


@dataclass(frozen=True)
class _Pair:
    """Two layers to compare. For an adapter, ``lora`` is B's module and ``spec_b``
    describes the merged W + ΔW (computed from A's tensor and the factors)."""

    key: str
    spec_a: LayerSpec
    spec_b: LayerSpec
    lora: LoraModule | None = None


@dataclass(frozen=True)
class _Read:
    """A pair's tensors as read (or the failure each side became), and B's factors."""

    a: Loaded
    b: Loaded
    factors: tuple[np.ndarray, np.ndarray] | None = None


def _read_pair(reader_a: CheckpointReader, reader_b: CheckpointReader, pair: _Pair) -> _Read:
    """Runs on the reader thread: both tensors of a pair (B merged for an adapter)."""
    w_a = read_layer(reader_a, pair.spec_a)
    if pair.lora is None:
        return _Read(w_a, read_layer(reader_b, pair.spec_b))
    if not isinstance(w_a, np.ndarray):
        return _Read(w_a, w_a)
    module = pair.lora
    try:
        a, b = reader_b.read(module.a), reader_b.read(module.b)
        magnitude = reader_b.read(module.magnitude) if module.magnitude is not None else None
        return _Read(w_a, module.merged(w_a, a, b, magnitude), (a, b))
    except (WeightscopeError, ValueError, ArithmeticError, MemoryError) as exc:
        return _Read(w_a, failure_of(pair.spec_b, exc))


def _compare_pair(pair: _Pair, read: _Read, options: AnalysisOptions, run: Plan) -> LayerChange:
    """Runs on a worker: both layers analysed as `analyze` would, and the update between."""
    result_a = analyze_read(pair.spec_a, read.a, options, run).result
    # The merged W + ΔW depends on two files; the cache keys one, so it is not cached.
    run_b = run if pair.lora is None else dataclasses.replace(run, cache=None)
    result_b = analyze_read(pair.spec_b, read.b, options, run_b).result
    w_a = read.a if isinstance(read.a, np.ndarray) else None
    w_b = read.b if isinstance(read.b, np.ndarray) else None
    try:
        if pair.lora is not None and read.factors is not None and pair.lora.magnitude is None and w_a is not None:
            update = lora_update_stats(*read.factors, pair.lora.scale, sum_squares(w_a) or None, note=pair.lora.note)
            return layer_change(pair.key, result_a, result_b, update)
        update, note = update_between(w_a, w_b, layer_matrices, SpectrumOptions(fixed_dtype(options.eig_dtype)))
    except (
        ValueError,
        ArithmeticError,
        np.linalg.LinAlgError,
    ) as exc:  # a NaN factor, an overflowing ΔW: this pair only
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return layer_change(pair.key, result_a, result_b, None, f"no update measured: {first}")
    if update is not None and pair.lora is not None:
        note = "DoRA: the update includes the magnitude rescaling, measured on the explicit ΔW"
    return layer_change(pair.key, result_a, result_b, update, note)


def _merged_spec(base: LayerSpec, module: LoraModule) -> LayerSpec:
    info = base.info
    merged = TensorInfo(info.name, info.shape, info.dtype, module.a.file, info.nbytes)
    return LayerSpec(merged, base.kind, base.block)


def _name_keys(reader_a: CheckpointReader, reader_b: CheckpointReader) -> tuple[NameKey, NameKey, str]:
    """Name keys and mode: when one side's format renames tensors (GGUF), the other side's
    Hugging Face names are mapped to its names (`CheckpointReader.name_from_hf`); against a
    quantized format (GGUF) ΔW is quantization error."""
    mode = "quantization" if reader_a.quantized_format or reader_b.quantized_format else "checkpoints"
    from_hf_a, from_hf_b = reader_a.name_from_hf(), reader_b.name_from_hf()
    if (from_hf_a is None) == (from_hf_b is None):
        return str, str, mode
    to_own = from_hf_a or from_hf_b
    assert to_own is not None  # exactly one side renames

    def mapped(name: str) -> str:
        base, bracket, part = name.partition("[")  # a part of a split fused tensor: map the tensor
        return (to_own(base) or base) + bracket + part

    return (str, mapped, mode) if from_hf_a is not None else (mapped, str, mode)


def _pairs(
    reader_a: CheckpointReader, reader_b: CheckpointReader, options: AnalysisOptions, prefixes: tuple[str, ...]
) -> tuple[list[_Pair], Alignment, list[str], str]:
    """The pairs to compare, how names matched, A's layers left unchanged, and the mode.

    Fewer than half of either side's layers paired is an error; for an adapter, of B's
    only (it adapts a few of A's modules)."""
    if isinstance(reader_a, AdapterReader):
        raise WeightscopeError("A is a LoRA adapter: give the base model first (compare BASE ADAPTER)")
    specs_a = {s.name: s for s in select(reader_a, options).layers}
    specs_b = {s.name: s for s in select(reader_b, options).layers}
    if not isinstance(reader_b, AdapterReader):
        key_a, key_b, mode = _name_keys(reader_a, reader_b)
        match = align_names(list(specs_a), list(specs_b), prefixes, key_a, key_b)
        match.check()
        return [_Pair(k, specs_a[na], specs_b[nb]) for k, na, nb in match.pairs], match, [], mode
    match = align_names(list(specs_a), list(specs_b), prefixes)
    match.check(side_a=False)
    pairs = []
    for key, name_a, name_b in match.pairs:
        spec_a, spec_b = specs_a[name_a], specs_b[name_b]
        if spec_b.lora is not None:
            pairs.append(_Pair(key, spec_a, _merged_spec(spec_a, spec_b.lora), spec_b.lora))
        else:
            pairs.append(_Pair(key, spec_a, spec_b))
    return pairs, dataclasses.replace(match, only_a=[]), match.only_a, "adapter"


def compare_task(
    path_a: str, path_b: str, pair: _Pair, options: AnalysisOptions, device: str, execution: Execution, version: str
) -> LayerChange:
    """One pair as a Ray task: the worker opens both checkpoints from shared storage, reads
    the pair and compares it exactly as a local worker does (`_read_pair`, `_compare_pair`)."""
    check_worker_version(version)
    with open_checkpoint(path_a) as reader_a, open_checkpoint(path_b) as reader_b:
        spec_b = pair.spec_b if pair.lora is not None else reopened(reader_b, pair.spec_b, path_b)  # merged: A's tensor
        pair = dataclasses.replace(pair, spec_a=reopened(reader_a, pair.spec_a, path_a), spec_b=spec_b)
        with blas_threads(1):
            return _compare_pair(pair, _read_pair(reader_a, reader_b, pair), options, task_plan(device, execution))


def _lost_pair(pair: _Pair, exc: Exception) -> LayerChange:
    """A pair a Ray cluster lost: both sides failed with the reason."""
    failed_a, failed_b = failure_of(pair.spec_a, exc).result, failure_of(pair.spec_b, exc).result
    return layer_change(pair.key, failed_a, failed_b, None, failed_a.reason)


def compare_checkpoints(
    path_a: str | os.PathLike[str],
    path_b: str | os.PathLike[str],
    options: AnalysisOptions,
    *,
    strip_prefix: Iterable[str] = (),
    top: int = 5,
    progress: ProgressHook | None = None,
    execution: Execution = Execution(),
) -> Comparison:
    """Compare two checkpoints pair by pair, measuring each layer's update ΔW too (locally
    through the read-ahead and worker threads; on Ray all pairs as one pool of tasks)."""
    prefixes = tuple(strip_prefix)
    found: list[tuple[list[_Pair], Alignment, list[str], str]] = []

    @contextmanager
    def local(index: int) -> Iterator[LocalBatch[_Pair, _Read, LayerChange, None]]:
        with open_checkpoint(path_a) as reader_a, open_checkpoint(path_b) as reader_b:
            found.append(_pairs(reader_a, reader_b, options, prefixes))
            pairs = found[0][0]
            run = plan([pair.spec_a for pair in pairs] + [pair.spec_b for pair in pairs], options, execution)
            yield LocalBatch(
                pairs,
                lambda pair: _read_pair(reader_a, reader_b, pair),
                lambda pair, read: _compare_pair(pair, read, options, run),
                workers=run.workers,
                cost=lambda pair: working_set(pair.spec_a, options) + working_set(pair.spec_b, options),
                budget=2 * run.budget,
            )

    def remote(ray: Any) -> RemoteBatches[_Pair, LayerChange, None]:
        with open_checkpoint(path_a) as reader_a, open_checkpoint(path_b) as reader_b:
            found.append(_pairs(reader_a, reader_b, options, prefixes))
        pairs = found[0][0]
        shapes = [(pair.spec_a.info.shape[0], pair.spec_a.info.shape[1]) for pair in pairs]
        device = cluster_device(execution.device, shapes, cluster_gpus(ray))
        where_a, where_b = os.path.abspath(path_a), os.path.abspath(path_b)
        return RemoteBatches(
            [pairs],
            compare_task,
            lambda index, pair: (where_a, where_b, pair, options, device, execution, __version__),
            # both layers' working sets, and the update's copy while its spectrum is solved
            lambda index, pair: Need(
                working_set(pair.spec_a, options) + working_set(pair.spec_b, options) + 4 * pair.spec_a.info.numel,
                GPU_SHARE if device == "cuda" else 0.0,
            ),
            _lost_pair,
        )

    walked: list[LayerSpec] = []

    def counted(done: int, pairs: Sequence[_Pair]) -> None:
        if progress is not None:
            if not walked:
                walked.extend(pair.spec_a for pair in pairs)
            progress(done, walked)

    batches = run_batches(1, execution, local=local, remote=remote, progress=counted if progress is not None else None)
    with closing(batches):  # the one batch's results, read while its checkpoints are open
        changes = list(next(batches).results)
    _, match, unchanged, mode = found[0]
    return Comparison(
        source_name(path_a),
        source_name(path_b),
        True,
        list(prefixes),
        changes,
        match.only_a,
        match.only_b,
        _summarize(changes, top),
        mode=mode,
        unchanged=unchanged,
        aligned=match.notes + ([f"B is {PEFT_IN_MEMORY}"] if is_peft_model(path_b) else []),
    )


def compare(
    path_a: str | os.PathLike[str],
    path_b: str | os.PathLike[str],
    *,
    strip_prefix: Iterable[str] = (),
    top: int = 5,
    progress: ProgressHook | None = None,
    execution: Execution = Execution(),
    executor: str | None = None,
    **options: object,
) -> Comparison:
    """Compare A with B; each is a checkpoint or a saved report (`analyze -o r.json`).

    Two checkpoints are compared with their weights (update stats per layer); when either
    side is a saved report, only alpha, norm and verdict changes are possible. ``options``
    are the `AnalysisOptions` fields used for any checkpoint analysed here; ``execution``
    says how (device, workers, cache, or ``executor="ray"``), as for `analyze`.
    """
    if top < 1:
        raise WeightscopeError(f"top must be ≥ 1, got {top}")
    opts = AnalysisOptions.from_kwargs(**options)
    if executor is not None:
        execution = dataclasses.replace(execution, executor=executor)
    if read_saved_report(path_a) is None and read_saved_report(path_b) is None:
        return compare_checkpoints(
            path_a, path_b, opts, strip_prefix=strip_prefix, top=top, progress=progress, execution=execution
        )
    comparison = compare_reports(
        report_for(path_a, opts, execution=execution),
        report_for(path_b, opts, execution=execution),
        strip_prefix=strip_prefix,
        top=top,
    )
    return dataclasses.replace(comparison, mode="reports")
