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
import hashlib
import itertools
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weightscope._version import __version__
from weightscope.commands.compare import layer_verdict
from weightscope.commands.sources import read_saved_report
from weightscope.errors import WeightscopeError
from weightscope.execution.plan import Execution
from weightscope.io import write_text_atomic
from weightscope.options import AnalysisOptions
from weightscope.pipeline import analyze_many
from weightscope.report import Report, Summary

SCHEMA = "weightscope.trend/1"

#: Files that are checkpoints when they sit in a run directory.
CHECKPOINT_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".ckpt"})

#: The step in names like step-200, step_2000.safetensors, checkpoint-1000, global_step50,
#: ckpt3, iter_400, epoch3 (the number right after the word).
DEFAULT_STEP_PATTERN = r"(?:global[_-]?step|step|checkpoint|ckpt|iteration|iter|epoch)[-_=]?(\d+)"

#: Verdicts of a layer that has not (yet) learned; without diagnostics, alpha above
#: `UNTRAINED_ALPHA` (HTSR: > 6 under-trained / random-like) stands in for them.
UNTRAINED_VERDICTS = frozenset({"random-like", "under-trained"})
UNTRAINED_ALPHA = 6.0

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
    weight files that each name a step (``step_2000.safetensors``) and no shard index.
    A sharded model (``model-00001-of-00004.safetensors`` + index) is one checkpoint.
    """
    children = [c for c in path.iterdir() if not c.name.startswith(".")]
    if any(child.is_dir() and is_checkpoint_dir(child) for child in children):
        return True
    if any(child.name.endswith(".index.json") for child in children):
        return False
    stepped = [
        child for child in children
        if child.is_file() and child.suffix in CHECKPOINT_SUFFIXES and parse_step(Path(child.name), pattern) is not None
    ]
    return len(stepped) >= 2


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


# --- the report cache ------------------------------------------------------------------


def _stat_fingerprint(path: Path) -> list[tuple[str, int, int]]:
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    stats = [(p.name, p.stat()) for p in files]
    return [(name, st.st_size, st.st_mtime_ns) for name, st in stats]


class ReportCache:
    """Per-checkpoint reports kept in a directory, so a rerun only analyses new checkpoints.

    An entry is keyed by the checkpoint's resolved path, the size and mtime of its files,
    the analysis options and the weightscope version: touching the checkpoint or changing
    an option misses the cache. Entries are plain report JSON (what `analyze -o` writes).
    An unreadable entry is ignored and rebuilt; an entry replaced by a newer one is removed.
    """

    def __init__(self, directory: str | os.PathLike[str], options: AnalysisOptions) -> None:
        self.directory = Path(directory)
        self._options = dataclasses.asdict(options)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WeightscopeError(f"cannot create cache directory {self.directory}: {exc.strerror or exc}") from None

    def _prefix(self, path: Path) -> str:
        """Names the checkpoint (readable slug + hash of its full path) whatever its state."""
        resolved = path.resolve()
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(resolved.parts[-2:]))[-80:]
        return f"{slug}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"

    def entry(self, path: Path) -> Path:
        """Where the report of ``path`` in its current state is (or would be) cached."""
        key = json.dumps(
            [str(path.resolve()), _stat_fingerprint(path), self._options, __version__], sort_keys=True
        )
        return self.directory / f"{self._prefix(path)}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"

    def get(self, path: Path) -> Report | None:
        try:
            return Report.from_dict(json.loads(self.entry(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError, WeightscopeError):
            return None

    def put(self, path: Path, report: Report) -> None:
        entry = self.entry(path)
        write_text_atomic(entry, json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n")
        for stale in self.directory.glob(f"{self._prefix(path)}-*.json"):  # the prefix has no glob characters
            if stale != entry:
                stale.unlink(missing_ok=True)


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
        data = dataclasses.asdict(self)
        return {"schema": data.pop("schema"), **data}


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
    if jump_k <= 0 or min_swing < 0:
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
    executor: str | None = None,
    **options: object,
) -> Trend:
    """Analyse a run: a directory of checkpoints, or checkpoints / saved reports listed.

    ``cache`` is a directory of per-checkpoint reports reused across runs; ``options`` are
    the `AnalysisOptions` fields. Reports are held (they are small); weights are not.
    ``execution`` (or ``executor="ray"``) says how the checkpoints not yet analysed run:
    on Ray, all their layers form one pool of tasks (`analyze_many`).
    """
    opts = AnalysisOptions.from_kwargs(**options)
    if executor is not None:
        execution = dataclasses.replace(execution, executor=executor)
    pattern = compile_step_pattern(step_regex)
    entries = order_run(expand_run(paths, pattern), pattern)
    if not entries:
        raise WeightscopeError("trend needs at least one checkpoint or run directory")
    store = ReportCache(cache, opts) if cache is not None else None
    known = [_stored_report(entry.path, store) for entry in entries]
    fresh = analyze_many([entry.path for entry, found in zip(entries, known) if found is None], opts, execution=execution)
    run: list[tuple[RunEntry, Report, str]] = []
    with closing(fresh):
        for position, (entry, found) in enumerate(zip(entries, known), start=1):
            if found is None:
                found = next(fresh), "analysed"
                if store is not None:
                    store.put(entry.path, found[0])
            run.append((entry, *found))
            if on_checkpoint is not None:
                on_checkpoint(entry, found[1], position, len(entries))
    return trend_from_reports(run, jump_k=jump_k, min_swing=min_swing)


def _stored_report(path: Path, store: ReportCache | None) -> tuple[Report, str] | None:
    """The report of ``path`` when it is a saved report or in the cache, else None."""
    saved = read_saved_report(path)
    if saved is not None:
        return saved, "report"
    cached = store.get(path) if store is not None else None
    return (cached, "cache") if cached is not None else None
