"""Compare two checkpoints (or saved reports) layer by layer: `weightscope compare A B`.

Layers are matched by name, optionally after stripping prefixes (``base_model.model.``) so
a fine-tune matches its base. Each matched layer gets its change in alpha, in log norms
and in verdict. When both sides are checkpoints, the weights are at hand and the update
ΔW = W_B − W_A itself is measured: its size relative to W_A and its spectrum (stable rank,
effective rank, the rank holding 90 % of ‖ΔW‖²). A fine-tune's update is usually of tiny
rank (the intrinsic dimension of fine-tuning, Aghajanyan et al. 2021); these numbers show
whether that holds and where.

Streaming: matched layers are walked one pair at a time; A's and B's tensor (and ΔW) are
the only arrays alive, never two whole models.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from weightscope.checkpoint import open_checkpoint
from weightscope.checkpoint.base import CheckpointReader, TensorInfo
from weightscope.commands.sources import read_saved_report, report_for
from weightscope._version import __version__
from weightscope.errors import WeightscopeError
from weightscope.execution.cluster import Need, connect, run_tasks
from weightscope.execution.plan import Execution, working_set
from weightscope.layers import LayerSpec, layer_matrices
from weightscope.linalg.spectrum import SpectrumOptions, esd, fixed_dtype
from weightscope.options import AnalysisOptions
from weightscope.pipeline import ProgressHook, analyze_layer, check_worker_version, failure, reopened, select
from weightscope.report import LayerResult, Report

SCHEMA = "weightscope.compare/1"

#: How bad a verdict is, for "did this layer get worse". Not judged (None) and verdicts
#: of the same rank are never "worse" than each other: a change between two problems of
#: the same weight is a change, not a regression.
VERDICT_SEVERITY = {
    "healthy": 0,
    "untrusted-fit": 1,
    "under-trained": 2,
    "over-trained": 2,
    "random-like": 3,
    "correlation-trap": 3,
    "rank-collapsed": 3,
    "failed": 4,
}

#: Share of ‖ΔW‖_F² that `rank90` counts directions up to.
ENERGY_SHARE = 0.9


@dataclass(frozen=True)
class UpdateStats:
    """Size and spectrum of the update ΔW = W_B − W_A of one layer.

    ``relative_norm`` is ‖ΔW‖_F / ‖W_A‖_F (None when W_A is all zero). The ranks are of
    ΔW's singular values σ: stable rank Σσ²/σ²max, effective rank exp(entropy of σ²/Σσ²),
    rank90 the fewest directions holding 90 % of ‖ΔW‖_F². ``dim`` is the most a rank can
    be (the smaller side, times kernel positions for a conv). A zero update has ranks 0.
    """

    relative_norm: float | None
    stable_rank: float
    effective_rank: float
    rank90: int
    dim: int


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


@dataclass(frozen=True)
class CompareSummary:
    """What to read first: the median shift, and which layers moved or got worse."""

    matched: int
    delta_alpha_median: float | None
    moved_most: list[str]
    changed_most: list[str]
    worse: list[str]


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
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {"schema": data.pop("schema"), **data}


# --- name matching ---------------------------------------------------------------------


@dataclass(frozen=True)
class NameMatch:
    """Layer names paired across two models: (matched name, name in A, name in B)."""

    pairs: list[tuple[str, str, str]]
    only_a: list[str]
    only_b: list[str]


def strip_name(name: str, prefixes: Iterable[str]) -> str:
    """``name`` without the longest of ``prefixes`` it starts with."""
    for prefix in sorted(prefixes, key=len, reverse=True):
        if prefix and name.startswith(prefix):
            return name[len(prefix):]
    return name


def _keyed(names: list[str], prefixes: tuple[str, ...], side: str) -> dict[str, str]:
    keyed: dict[str, str] = {}
    for name in names:
        key = strip_name(name, prefixes)
        if key in keyed:
            raise WeightscopeError(
                f"after stripping prefixes, {side} has two layers named {key!r} ({keyed[key]!r} and {name!r})"
            )
        keyed[key] = name
    return keyed


def match_names(names_a: list[str], names_b: list[str], strip_prefix: Iterable[str] = ()) -> NameMatch:
    """Pair layers by name after stripping prefixes; pairs keep A's order."""
    prefixes = tuple(strip_prefix)
    keyed_a = _keyed(names_a, prefixes, "A")
    keyed_b = _keyed(names_b, prefixes, "B")
    pairs = [(key, name, keyed_b[key]) for key, name in keyed_a.items() if key in keyed_b]
    only_a = [name for key, name in keyed_a.items() if key not in keyed_b]
    only_b = [name for key, name in keyed_b.items() if key not in keyed_a]
    return NameMatch(pairs, only_a, only_b)


# --- per-layer change ------------------------------------------------------------------


def layer_verdict(layer: LayerResult) -> str | None:
    """The layer's verdict; a failed layer without diagnostics still reads "failed"."""
    if layer.verdict is not None:
        return layer.verdict
    return None if layer.ok else "failed"


def got_worse(verdict_a: str | None, verdict_b: str | None) -> bool:
    """Whether B's verdict is more severe than A's (never when either is unjudged)."""
    before, after = VERDICT_SEVERITY.get(verdict_a or ""), VERDICT_SEVERITY.get(verdict_b or "")
    return before is not None and after is not None and after > before


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


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
    )


# --- the update ΔW ---------------------------------------------------------------------


def _sum_squares(array: np.ndarray) -> float:
    """‖array‖_F² accumulated in float64 without a float64 copy of the array."""
    flat = array.reshape(-1)
    return float(np.einsum("i,i->", flat, flat, dtype=np.float64))


def update_stats(w_a: np.ndarray, w_b: np.ndarray, options: SpectrumOptions | None = None) -> UpdateStats:
    """Size and spectrum of ΔW = w_b − w_a (same shape, finite values)."""
    delta = np.subtract(w_b, w_a, dtype=np.result_type(w_a, w_b))
    evals = np.clip(esd(layer_matrices(delta), options or SpectrumOptions()), 0.0, None)[::-1]  # descending σ²/N
    total = float(evals.sum())
    norm_a = _sum_squares(w_a)
    relative = float(np.sqrt(_sum_squares(delta) / norm_a)) if norm_a > 0 else None
    if total <= 0:
        return UpdateStats(relative, 0.0, 0.0, 0, int(evals.size))
    share = evals / total
    nonzero = share[share > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum())
    rank90 = int(np.searchsorted(np.cumsum(share), ENERGY_SHARE - 1e-12) + 1)
    return UpdateStats(
        relative_norm=relative,
        stable_rank=total / float(evals[0]),
        effective_rank=float(np.exp(entropy)),
        rank90=min(rank90, int(evals.size)),
        dim=int(evals.size),
    )


def _update_between(
    w_a: np.ndarray | None, w_b: np.ndarray | None, options: AnalysisOptions
) -> tuple[UpdateStats | None, str | None]:
    """The update of a matched pair, or why there is none."""
    if w_a is None or w_b is None:
        return None, "a tensor could not be read"
    if w_a.shape != w_b.shape:
        return None, f"shapes differ ({'×'.join(map(str, w_a.shape))} vs {'×'.join(map(str, w_b.shape))})"
    if not (np.isfinite(w_a).all() and np.isfinite(w_b).all()):
        return None, "non-finite weights"
    return update_stats(w_a, w_b, SpectrumOptions(fixed_dtype(options.eig_dtype))), None


class _KeepLastRead(CheckpointReader):
    """A reader that remembers the last tensor it read.

    The layer goes through exactly the pipeline `analyze` uses (same failure handling,
    same diagnostics), and the weights it read are reused for ΔW instead of read twice.
    """

    def __init__(self, reader: CheckpointReader) -> None:
        self._reader = reader
        self.format = reader.format
        self.last: np.ndarray | None = None

    def tensors(self) -> list[TensorInfo]:
        return self._reader.tensors()

    def read(self, info: TensorInfo) -> np.ndarray:
        self.last = self._reader.read(info)
        return self.last


# --- whole comparisons -----------------------------------------------------------------


def _summarize(changes: list[LayerChange], top: int) -> CompareSummary:
    deltas = [c.delta_alpha for c in changes if c.delta_alpha is not None]
    moved = sorted((c for c in changes if c.delta_alpha is not None), key=lambda c: -abs(c.delta_alpha))  # type: ignore[arg-type]
    sizes = {c.name: c.update.relative_norm for c in changes if c.update and c.update.relative_norm is not None}
    updated = sorted(sizes, key=lambda name: -sizes[name])
    return CompareSummary(
        matched=len(changes),
        delta_alpha_median=float(np.median(deltas)) if deltas else None,
        moved_most=[c.name for c in moved[:top]],
        changed_most=updated[:top],
        worse=[c.name for c in changes if c.worse],
    )


def compare_reports(
    report_a: Report, report_b: Report, *, strip_prefix: Iterable[str] = (), top: int = 5
) -> Comparison:
    """Compare two reports: alpha, norm and verdict changes (no weights, so no update)."""
    prefixes = list(strip_prefix)
    layers_a = {layer.name: layer for layer in report_a.layers}
    layers_b = {layer.name: layer for layer in report_b.layers}
    match = match_names(list(layers_a), list(layers_b), prefixes)
    changes = [layer_change(key, layers_a[na], layers_b[nb]) for key, na, nb in match.pairs]
    return Comparison(
        report_a.source, report_b.source, False, prefixes, changes, match.only_a, match.only_b, _summarize(changes, top)
    )


def pair_change(
    key: str, reader_a: CheckpointReader, spec_a: LayerSpec, reader_b: CheckpointReader, spec_b: LayerSpec,
    options: AnalysisOptions,
) -> LayerChange:
    """One matched pair: both layers through the pipeline's analysis, then their update
    from the weights just read (each tensor is read once; both are freed on return)."""
    kept_a, kept_b = _KeepLastRead(reader_a), _KeepLastRead(reader_b)
    result_a = analyze_layer(kept_a, spec_a, options).result
    result_b = analyze_layer(kept_b, spec_b, options).result
    update, note = _update_between(kept_a.last, kept_b.last, options)
    return layer_change(key, result_a, result_b, update, note)


def compare_task(
    path_a: str, spec_a: LayerSpec, path_b: str, spec_b: LayerSpec, key: str, options: AnalysisOptions, version: str
) -> LayerChange:
    """One pair as a Ray task: the worker opens both checkpoints from shared storage."""
    check_worker_version(version)
    with open_checkpoint(path_a) as reader_a, open_checkpoint(path_b) as reader_b:
        return pair_change(
            key, reader_a, reopened(reader_a, spec_a, path_a), reader_b, reopened(reader_b, spec_b, path_b), options
        )


def _pairs_on_ray(
    path_a: str | os.PathLike[str],
    path_b: str | os.PathLike[str],
    pairs: list[tuple[str, LayerSpec, LayerSpec]],
    options: AnalysisOptions,
    execution: Execution,
    progress: Callable[[int], None] | None,
) -> Iterator[LayerChange]:
    """The pairs' changes computed as tasks on a Ray cluster, in order."""
    ray = connect(execution.ray_address)
    where_a, where_b = os.path.abspath(path_a), os.path.abspath(path_b)

    def lost(position: int, exc: Exception) -> LayerChange:
        key, spec_a, spec_b = pairs[position]
        reason = failure(spec_a, exc).result.reason
        return layer_change(key, failure(spec_a, exc).result, failure(spec_b, exc).result, None, reason)

    return run_tasks(
        ray,
        compare_task,
        [(where_a, spec_a, where_b, spec_b, key, options, __version__) for key, spec_a, spec_b in pairs],
        # both layers' working sets, and the update's copy while its spectrum is solved
        [Need(working_set(a, options) + working_set(b, options) + 4 * a.info.numel) for _, a, b in pairs],
        lost=lost,
        progress=progress,
    )


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
    """Compare two checkpoints pair by pair, measuring each layer's update ΔW too
    (locally one pair at a time; on Ray all pairs as one pool of tasks)."""
    prefixes = list(strip_prefix)
    with open_checkpoint(path_a) as reader_a, open_checkpoint(path_b) as reader_b:
        specs_a = {s.name: s for s in select(reader_a, options).layers}
        specs_b = {s.name: s for s in select(reader_b, options).layers}
        match = match_names(list(specs_a), list(specs_b), prefixes)
        pairs = [(key, specs_a[name_a], specs_b[name_b]) for key, name_a, name_b in match.pairs]
        walked: list[LayerSpec] = [spec_a for _, spec_a, _ in pairs]
        if progress is not None:
            progress(0, walked)
        if execution.executor == "ray":
            done_hook = (lambda done: progress(done, walked)) if progress is not None else None
            changes = list(_pairs_on_ray(path_a, path_b, pairs, options, execution, done_hook))
        else:
            changes = []
            for done, (key, spec_a, spec_b) in enumerate(pairs, start=1):
                changes.append(pair_change(key, reader_a, spec_a, reader_b, spec_b, options))
                if progress is not None:
                    progress(done, walked)
    return Comparison(
        str(path_a), str(path_b), True, prefixes, changes, match.only_a, match.only_b, _summarize(changes, top)
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
    (or ``executor="ray"``) says where the layers are analysed.
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
    return compare_reports(
        report_for(path_a, opts, execution=execution), report_for(path_b, opts, execution=execution),
        strip_prefix=strip_prefix, top=top,
    )
