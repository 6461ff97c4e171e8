"""Alpha over a training run: `weightscope trend RUN…`.

Checkpoints are ordered by the training step parsed from their names (natural sort as
fallback), each is analysed once (or loaded from a saved report, or from the cache), and
every layer's alpha becomes a series over the steps. Three patterns are flagged per layer:

- fall-then-rise: alpha drops to a low inside the run and climbs back later, the
  pattern users ask about (a layer that trained, then drifted back towards random);
- jumps: a change between consecutive checkpoints far outside that layer's usual changes
  (its rate per log-step off their median by > k × MAD, and at least ``min_swing`` in
  alpha), a sign of a loss spike, a bad restart or a checkpoint from another run;
- stuck random-like: every checkpoint judges the layer random-like or under-trained
  (alpha > 6 where no verdict was computed): the layer never learned.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weightscope.commands.compare import layer_verdict
from weightscope.commands.sources import read_saved_report
from weightscope.config import Thresholds
from weightscope.errors import WeightscopeError
from weightscope.execution.cache import CacheStore, open_store, report_key
from weightscope.execution.plan import Execution
from weightscope.options import AnalysisOptions
from weightscope.pipeline import analyze_with
from weightscope.report import Report, Summary, json_document

SCHEMA = "weightscope.trend/1"

#: Files that are checkpoints when they sit in a run directory.
CHECKPOINT_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".ckpt"})

#: The step in names like step-200, step_2000.safetensors, checkpoint-1000, global_step50,
#: ckpt3, iter_400, epoch3 (the number right after the word).
#: How sharded checkpoints name their pieces: model-00001-of-00004.safetensors.
_SHARD_NAME = re.compile(r"\d+-of-\d+")

DEFAULT_STEP_PATTERN = r"(?:global[_-]?step|step|checkpoint|ckpt|iteration|iter|epoch)[-_=]?(\d+)"

#: Verdicts of a layer that has not (yet) learned; without diagnostics (a report saved
#: without verdicts), alpha above the default `Thresholds.alpha_high` stands in for them.
UNTRAINED_VERDICTS = frozenset({"random-like", "under-trained"})
UNTRAINED_ALPHA = Thresholds().alpha_high

FLAG_FALL_THEN_RISE = "fall-then-rise"
FLAG_JUMP = "jump"
FLAG_STUCK = "stuck-random-like"


# --- finding and ordering checkpoints --------------------------------------------------


@dataclass(frozen=True)
class RunEntry:
    """One checkpoint (or saved report) of a run and the step its name says."""

    path: Path
    step: int | None


def is_checkpoint_dir(path: Path) -> bool:
    """A directory that holds weight files (or a shard index) directly."""
    return any(
        child.is_file() and (child.suffix in CHECKPOINT_SUFFIXES or child.name.endswith(".index.json"))
        for child in path.iterdir()
    )


def is_run_dir(path: Path, pattern: re.Pattern[str]) -> bool:
    """A directory of checkpoints rather than one checkpoint.

    It is a run when it holds checkpoint directories (``checkpoint-1000/``), or several
    weight files that each name a step (``step_2000.safetensors``) and no shard index, or
    several weight files of one format not named as shards (then ordered by name).
    A sharded model (``model-00001-of-00004.safetensors`` + index) is one checkpoint.
    """
    children = [c for c in path.iterdir() if not c.name.startswith(".")]
    if any(child.is_dir() and is_checkpoint_dir(child) for child in children):
        return True
    if any(child.name.endswith(".index.json") for child in children):
        return False
    weights = [child for child in children if child.is_file() and child.suffix in CHECKPOINT_SUFFIXES]
    if sum(parse_step(Path(child.name), pattern) is not None for child in weights) >= 2:
        return True
    # Several files of one format, none named as a shard (model-00001-of-00004): separate
    # checkpoints without step numbers (ordered by name), not one model stored in pieces.
    # One safetensors file beside one torch file is one model saved in two formats.
    if any(_SHARD_NAME.search(child.name) for child in weights):
        return False
    families = [child.suffix == ".safetensors" for child in weights]
    return max(families.count(True), families.count(False)) >= 2


def _run_members(directory: Path) -> list[Path]:
    return [
        child
        for child in sorted(directory.iterdir())
        if not child.name.startswith(".")
        and ((child.is_file() and child.suffix in CHECKPOINT_SUFFIXES) or (child.is_dir() and is_checkpoint_dir(child)))
    ]


def expand_run(paths: Iterable[str | os.PathLike[str]], pattern: re.Pattern[str]) -> list[Path]:
    """Checkpoint paths: a run directory becomes its checkpoints, anything else stays."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise WeightscopeError(f"{path}: no such file or directory")
        if path.is_dir() and is_run_dir(path, pattern):
            found.extend(_run_members(path))
        elif path.is_dir() and not is_checkpoint_dir(path):
            raise WeightscopeError(f"{path}: no checkpoints in this directory (files or checkpoint directories)")
        else:
            found.append(path)
    return found


def run_inputs(paths: Iterable[str | os.PathLike[str]], step_regex: str | None = None) -> list[Path]:
    """Every checkpoint or report a trend over ``paths`` would read (the paths themselves
    when they cannot be expanded: `trend` reports that problem when it runs)."""
    try:
        return [*map(Path, paths), *expand_run(paths, compile_step_pattern(step_regex))]
    except (WeightscopeError, OSError):
        return list(map(Path, paths))


def compile_step_pattern(step_regex: str | None) -> re.Pattern[str]:
    try:
        return re.compile(step_regex or DEFAULT_STEP_PATTERN, re.IGNORECASE)
    except re.error as exc:
        raise WeightscopeError(f"--step-regex {step_regex!r} is not a valid regular expression: {exc}") from None


def parse_step(path: Path, pattern: re.Pattern[str]) -> int | None:
    """The step in a checkpoint's name, else in its directory's (step-200/model.safetensors)."""
    for part in reversed(path.parts[-2:]):
        matches = list(pattern.finditer(part))
        if not matches:
            continue
        last = matches[-1]
        text = last.group(1) if pattern.groups else last.group(0)
        try:
            return int(text)
        except (TypeError, ValueError):
            raise WeightscopeError(
                f"step pattern {pattern.pattern!r} matched {text!r} in {part!r}, which is not a whole number"
            ) from None
    return None


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders step-9 before step-10."""
    return tuple(int(piece) if piece.isdigit() else piece.lower() for piece in re.split(r"(\d+)", text))


def order_run(paths: Iterable[Path], pattern: re.Pattern[str]) -> list[RunEntry]:
    """Checkpoints in training order: by parsed step; those without a step after, by name."""
    entries = [RunEntry(path, parse_step(path, pattern)) for path in paths]
    seen: dict[int, Path] = {}
    for entry in entries:
        if entry.step is None:
            continue
        if entry.step in seen:
            raise WeightscopeError(
                f"step {entry.step} is parsed from both {seen[entry.step]} and {entry.path}; pass --step-regex"
            )
        seen[entry.step] = entry.path
    return sorted(entries, key=lambda e: (e.step is None, e.step or 0, natural_key(str(e.path))))


# --- reports in the cache ----------------------------------------------------------


class ReportCache:
    """Per-checkpoint reports in the spectrum cache's store (`weightscope.execution.cache`),
    so a rerun over a grown run only analyses the new checkpoints.

    An entry is keyed by the identity of the checkpoint's files (the store's key
    discipline: path, inode, size, mtime and ctime; none while a file is being written),
    the analysis options and the weightscope version: touching the checkpoint or changing
    an option misses it. Entries are plain report JSON (what `analyze -o` writes); an
    unreadable one is removed and rebuilt, and old ones leave by the store's LRU cap.
    """

    def __init__(self, store: CacheStore, options: AnalysisOptions) -> None:
        self._store = store
        self._options = dataclasses.asdict(options)

    def get(self, path: Path) -> Report | None:
        key = report_key(path, self._options)
        text = self._store.load_text("reports", key) if key is not None else None
        if text is None:
            return None
        try:
            report = Report.from_dict(json.loads(text))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError, WeightscopeError):
            self._store.discard("reports", key)  # damaged or hand-edited: rebuilt
            return None
        return dataclasses.replace(report, source=str(path))  # as this run names it

    def put(self, path: Path, report: Report) -> None:
        key = report_key(path, self._options)
        if key is not None:
            self._store.store_text("reports", key, json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n")


# --- the trend -------------------------------------------------------------------------


@dataclass(frozen=True)
class TrendPoint:
    """One checkpoint of the run: where it came from and its model-level figures.

    ``origin`` is "analysed" (computed now), "cache" or "report" (a saved report given).
    ``verdict_shares`` maps each verdict to its share of the layers ("unjudged" where no
    diagnostics were computed).
    """

    step: int | None
    path: str
    origin: str
    summary: Summary
    log_norm_median: float | None
    verdict_shares: dict[str, float]


@dataclass(frozen=True)
class Jump:
    """A change of alpha far outside the layer's usual changes, into checkpoint ``at``.

    ``delta`` is the change in alpha; ``rate`` the change per unit of log(1 + step) and
    ``threshold`` the k × MAD its distance from the layer's median rate exceeded.
    """

    at: int
    step: int | None
    delta: float
    rate: float
    threshold: float


@dataclass(frozen=True)
class FallThenRise:
    """Alpha fell by ``fall`` to its low at checkpoint ``low_at``, then rose by ``rise``."""

    low_at: int
    low_step: int | None
    fall: float
    rise: float


@dataclass(frozen=True)
class LayerSeries:
    """One layer over the run: alpha and verdict per checkpoint (None where absent/failed)."""

    name: str
    kind: str
    alphas: list[float | None]
    verdicts: list[str | None]
    flags: list[str]
    jumps: list[Jump]
    fall_then_rise: FallThenRise | None


@dataclass(frozen=True)
class Trend:
    """`weightscope trend`: checkpoints in step order and the per-layer alpha series."""

    checkpoints: list[TrendPoint]
    layers: list[LayerSeries]
    options: dict[str, Any]
    jump_k: float
    min_swing: float
    schema: str = SCHEMA

    @property
    def flagged(self) -> list[LayerSeries]:
        return [layer for layer in self.layers if layer.flags]

    def to_dict(self) -> dict[str, Any]:
        return json_document(self)


def _point(entry: RunEntry, report: Report, origin: str) -> TrendPoint:
    log_norms = [layer.log_norm for layer in report.layers if layer.ok and layer.log_norm is not None]
    counts = Counter(layer_verdict(layer) or "unjudged" for layer in report.layers)
    total = len(report.layers)
    return TrendPoint(
        step=entry.step,
        path=str(entry.path),
        origin=origin,
        summary=report.summary,
        log_norm_median=float(np.median(log_norms)) if log_norms else None,
        verdict_shares={verdict: count / total for verdict, count in sorted(counts.items())},
    )


def _log_step_positions(steps: list[int | None]) -> np.ndarray:
    """Where checkpoints sit in training time: log(1 + step), or 0, 1, 2, … without steps."""
    if all(step is not None and step >= 0 for step in steps):
        return np.log1p(np.array(steps, dtype=np.float64))
    return np.arange(len(steps), dtype=np.float64)


def find_jumps(
    alphas: list[float | None], steps: list[int | None], jump_k: float, min_swing: float
) -> list[Jump]:
    """Changes between consecutive known alphas that stand out from the layer's usual change.

    Changes are compared as rates per unit of log(1 + step): training moves on a log-time
    scale and checkpoints are often spaced geometrically, so the fast early phase over a
    few steps and the slow late phase over many become comparable. A jump is a rate that
    differs from the layer's median rate by more than k × their MAD, and whose change in
    alpha is at least ``min_swing``: a sudden large move, not a pause in a steady one.
    """
    known = [(i, a) for i, a in enumerate(alphas) if a is not None]
    if len(known) < 3:
        return []
    positions = _log_step_positions(steps)
    deltas = np.array([b - a for (_, a), (_, b) in itertools.pairwise(known)])
    rates = deltas / np.array([positions[j] - positions[i] for (i, _), (j, _) in itertools.pairwise(known)])
    center = float(np.median(rates))
    threshold = jump_k * float(np.median(np.abs(rates - center)))
    return [
        Jump(at=index, step=steps[index], delta=float(delta), rate=float(rate), threshold=threshold)
        for (index, _), delta, rate in zip(known[1:], deltas, rates)
        if abs(rate - center) > threshold and abs(delta) >= min_swing
    ]


def find_fall_then_rise(alphas: list[float | None], steps: list[int | None], min_swing: float) -> FallThenRise | None:
    """A low inside the run with a fall of ≥ min_swing before it and a rise of ≥ min_swing after."""
    known = [(i, a) for i, a in enumerate(alphas) if a is not None]
    if len(known) < 3:
        return None
    position = min(range(len(known)), key=lambda k: known[k][1])
    if position in (0, len(known) - 1):
        return None
    low_at, low = known[position]
    fall = max(a for _, a in known[:position]) - low
    rise = max(a for _, a in known[position + 1:]) - low
    if fall < min_swing or rise < min_swing:
        return None
    return FallThenRise(low_at, steps[low_at], fall, rise)


def is_stuck_untrained(alphas: list[float | None], verdicts: list[str | None]) -> bool:
    """True when every checkpoint that judged the layer (≥ 2 of them) calls it untrained."""
    states = [
        verdict in UNTRAINED_VERDICTS if verdict is not None else alpha > UNTRAINED_ALPHA
        for alpha, verdict in zip(alphas, verdicts)
        if verdict is not None or alpha is not None
    ]
    return len(states) >= 2 and all(states)


def layer_series(
    name: str,
    kind: str,
    alphas: list[float | None],
    verdicts: list[str | None],
    steps: list[int | None],
    *,
    jump_k: float,
    min_swing: float,
) -> LayerSeries:
    jumps = find_jumps(alphas, steps, jump_k, min_swing)
    fall_rise = find_fall_then_rise(alphas, steps, min_swing)
    flags = [
        flag
        for flag, present in (
            (FLAG_FALL_THEN_RISE, fall_rise is not None),
            (FLAG_JUMP, bool(jumps)),
            (FLAG_STUCK, is_stuck_untrained(alphas, verdicts)),
        )
        if present
    ]
    return LayerSeries(name, kind, alphas, verdicts, flags, jumps, fall_rise)


def trend_from_reports(
    run: list[tuple[RunEntry, Report, str]], *, jump_k: float = 5.0, min_swing: float = 0.3
) -> Trend:
    """The trend of reports already in step order: (entry, report, origin) per checkpoint."""
    if not (0 < jump_k < math.inf and 0 <= min_swing < math.inf):  # NaN fails both
        raise WeightscopeError(f"jump k must be > 0 and min swing ≥ 0 (got {jump_k}, {min_swing})")
    steps = [entry.step for entry, _, _ in run]
    by_checkpoint = [{layer.name: layer for layer in report.layers} for _, report, _ in run]
    names = list(dict.fromkeys(name for layers in by_checkpoint for name in layers))
    series = []
    for name in names:
        present = [layers.get(name) for layers in by_checkpoint]
        kind = next(layer.kind for layer in present if layer is not None)
        alphas = [layer.alpha if layer is not None else None for layer in present]
        verdicts = [layer_verdict(layer) if layer is not None else None for layer in present]
        series.append(layer_series(name, kind, alphas, verdicts, steps, jump_k=jump_k, min_swing=min_swing))
    options = run[0][1].options if run else {}
    return Trend([_point(entry, report, origin) for entry, report, origin in run], series, options, jump_k, min_swing)


#: Called after each checkpoint with (its entry, its origin, position, how many in all).
CheckpointHook = Callable[[RunEntry, str, int, int], None]


def trend(
    paths: Iterable[str | os.PathLike[str]],
    *,
    step_regex: str | None = None,
    cache: str | os.PathLike[str] | None = None,
    jump_k: float = 5.0,
    min_swing: float = 0.3,
    on_checkpoint: CheckpointHook | None = None,
    execution: Execution = Execution(),
    **options: object,
) -> Trend:
    """Analyse a run: a directory of checkpoints, or checkpoints / saved reports listed.

    Each checkpoint's report and spectra are kept in the cache (`execution`'s, by default
    the user's cache directory; ``cache`` names another directory for this run), so a
    rerun analyses only new or changed checkpoints. ``options`` are the `AnalysisOptions`
    fields. Reports are held (they are small); weights are not.
    """
    opts = AnalysisOptions.from_kwargs(**options)
    if cache is not None:
        execution = dataclasses.replace(execution, cache=True, cache_dir=str(cache))
    pattern = compile_step_pattern(step_regex)
    entries = order_run(expand_run(paths, pattern), pattern)
    if not entries:
        raise WeightscopeError("trend needs at least one checkpoint or run directory")
    opened = open_store(execution.cache_dir, execution.cache_max_bytes) if execution.cache else None
    reports = ReportCache(opened, opts) if opened is not None else None
    run: list[tuple[RunEntry, Report, str]] = []
    for position, entry in enumerate(entries, start=1):
        report, origin = _report_of(entry.path, opts, reports, execution)
        run.append((entry, report, origin))
        if on_checkpoint is not None:
            on_checkpoint(entry, origin, position, len(entries))
    return trend_from_reports(run, jump_k=jump_k, min_swing=min_swing)


def _report_of(
    path: Path, options: AnalysisOptions, reports: ReportCache | None, execution: Execution
) -> tuple[Report, str]:
    saved = read_saved_report(path)
    if saved is not None:
        return saved, "report"
    cached = reports.get(path) if reports is not None else None
    if cached is not None:
        return cached, "cache"
    report = analyze_with(path, options, execution=execution)
    if reports is not None:
        reports.put(path, report)
    return report, "analysed"
