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

Jumps and fall-then-rise read only alphas that can carry them: alphas with a reading, outside the
random-like phase. The fall of alpha away from a random start is the expected first phase
of training, not an event: on the example run, flagging every fitted alpha called 25 of
its 30 layers `jump`, mostly for that fall and for late fits without a reading.

Beyond alpha, each layer gets its distance from initialisation ‖W − W₀‖_F/‖W₀‖_F against
the run's first checkpoint (streamed, two tensors at a time) and how alpha moves with the
distance from random, the spectral norm and that distance (Spearman rank correlations);
each block its attention-logit bound over the run, flagged `logit-growth` when it grows
faster on log-time than the other blocks'; each token embedding its anisotropy and
intrinsic dimension, with the phase it went through (inflation → compression) and
`id-rise` at a sudden rise.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weightscope import vocabulary
from weightscope.analysis.model_measures import distance_from_init
from weightscope.analysis.pipeline import analyze_many
from weightscope.checkpoint import open_checkpoint
from weightscope.checkpoint.runs import RunEntry, find_run
from weightscope.commands.compare import layer_verdict
from weightscope.commands.flags import FLAG_FALL_THEN_RISE, FLAG_ID_RISE, FLAG_JUMP, FLAG_STUCK
from weightscope.commands.sources import read_saved_report
from weightscope.config import Thresholds
from weightscope.errors import WeightscopeError
from weightscope.execution.cache import ReportCache, open_store
from weightscope.execution.plan import Execution
from weightscope.options import AnalysisOptions
from weightscope.report import (
    LayerResult,
    ModelMeasures,
    Report,
    Summary,
    json_document,
)
from weightscope.stats.series import (
    high_outliers,
    log_slope,
    peak_phase,
    spearman,
    sudden_rises,
)

SCHEMA = "weightscope.trend/2"

#: Without diagnostics (a report saved without verdicts), alpha above the default
#: `Thresholds.alpha_high` stands in for the verdicts that say "not (yet) learned"
#: (`vocabulary.untrained`).
UNTRAINED_ALPHA = Thresholds().alpha_high


#: A block's logit bound must grow faster than the other blocks' median by at least this
#: much in ln(bound) per unit of ln(1 + step) (bound ∝ step^0.5 faster) to be flagged, on
#: top of k × MAD: a floor so that blocks growing alike (MAD ≈ 0) flag nothing.
GROWTH_FLOOR = 0.5
#: The growth rate is taken over the latest checkpoints (this many at most, never the
#: first): an early warning is about how the bound grows now, and a block that grew early
#: and settled is no warning.
GROWTH_WINDOW = 5
#: A sudden rise of the intrinsic dimension: beyond this many combined standard errors of
#: the two estimates, and by more than this share of the earlier value.
RISE_SIGMAS = 4.0
RISE_SHARE = 0.2


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
    measures: ModelMeasures | None = None


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
    """One layer over the run: alpha and verdict per checkpoint (None where absent/failed).

    ``trusted`` marks the alphas flags may read (`flaggable`: a reading, not random-like).
    ``distance_from_init`` is ‖W − W₀‖_F/‖W₀‖_F against the run's first checkpoint (None
    where it could not be measured, e.g. for a saved report). ``comovement`` holds the
    Spearman correlation of alpha with ``shuffle_ks_distance``, ``log_spectral_norm`` and
    ``distance_from_init`` over the checkpoints past the random-like phase (≥ 4 points).
    """

    name: str
    kind: str
    alphas: list[float | None]
    verdicts: list[str | None]
    flags: list[str]
    jumps: list[Jump]
    fall_then_rise: FallThenRise | None
    trusted: list[bool] = dataclasses.field(default_factory=list)
    distance_from_init: list[float | None] = dataclasses.field(default_factory=list)
    comovement: dict[str, float | None] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class AttentionSeries:
    """One block's attention-logit bound (max over heads) per checkpoint.

    ``growth`` is the slope of ln(bound) on ln(1 + step) over the latest `GROWTH_WINDOW`
    checkpoints, never the first (the move away from the random start is excluded);
    ``flagged`` when it exceeds the other blocks' median growth by more than
    max(k × MAD, `GROWTH_FLOOR`).
    """

    block: int | None
    q: str
    bounds: list[float | None]
    growth: float | None
    flagged: bool


@dataclass(frozen=True)
class EmbeddingSeries:
    """One embedding's row cloud per checkpoint, its phase and its sudden rises.

    ``phase`` reads the TwoNN intrinsic dimension: "inflation → compression" (it rose to
    an inner peak, at ``peak_at``, then fell), "inflation", "compression" or "flat", each
    move beyond 2 standard errors. ``rises`` are checkpoints where it jumped up by more
    than `RISE_SIGMAS` standard errors and `RISE_SHARE` of its value.
    """

    name: str
    twonn: list[float | None]
    twonn_se: list[float | None]
    mle: list[float | None]
    mean_cosine: list[float | None]
    pc1_share: list[float | None]
    phase: str
    peak_at: int | None
    rises: list[int]
    flags: list[str]


@dataclass(frozen=True)
class Trend:
    """`weightscope trend`: checkpoints in step order and the per-layer alpha series."""

    checkpoints: list[TrendPoint]
    layers: list[LayerSeries]
    options: dict[str, Any]
    jump_k: float
    min_swing: float
    attention: list[AttentionSeries] = dataclasses.field(default_factory=list)
    embeddings: list[EmbeddingSeries] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    schema: str = SCHEMA

    @property
    def flagged(self) -> list[LayerSeries]:
        return [layer for layer in self.layers if layer.flags]

    @property
    def growing_blocks(self) -> list[AttentionSeries]:
        return [block for block in self.attention if block.flagged]

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
        measures=report.measures,
    )


def _log_step_positions(steps: list[int | None]) -> np.ndarray:
    """Where checkpoints sit in training time: log(1 + step), or 0, 1, 2, … without steps."""
    if all(step is not None and step >= 0 for step in steps):
        return np.log1p(np.array(steps, dtype=np.float64))
    return np.arange(len(steps), dtype=np.float64)


def find_jumps(alphas: list[float | None], steps: list[int | None], jump_k: float, min_swing: float) -> list[Jump]:
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


def initial_descent_end(alphas: list[float | None]) -> int:
    """Index of the low that ends the initial descent of alpha (0 when it does not fall first).

    Training pulls alpha down from the random-like range; that first fall is the expected
    phase, not an event, so only jumps after its low are reported. The descent is the
    longest run of consecutive known alphas that each fall, from the first known one.
    """
    known = [(i, a) for i, a in enumerate(alphas) if a is not None]
    end = known[0][0] if known else 0
    for (_, before), (index, after) in itertools.pairwise(known):
        if after >= before:
            break
        end = index
    return end


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
    rise = max(a for _, a in known[position + 1 :]) - low
    if fall < min_swing or rise < min_swing:
        return None
    return FallThenRise(low_at, steps[low_at], fall, rise)


def is_stuck_untrained(alphas: list[float | None], verdicts: list[str | None]) -> bool:
    """True when every checkpoint that judged the layer (≥ 2 of them) calls it untrained."""
    states = [
        vocabulary.untrained(verdict) if verdict is not None else alpha > UNTRAINED_ALPHA
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
    trusted: list[bool] | None = None,
    context: list[float | None] | None = None,
) -> LayerSeries:
    """The layer's series and flags.

    With ``trusted`` given (one flag per checkpoint: `flaggable`), flags come from trusted
    fits only: a jump is reported when both its ends are trusted and it lies past the
    layer's initial descent (`initial_descent_end`: the expected fall from a random start),
    and fall-then-rise reads trusted alphas. The layer's usual change, which a jump must
    stand out from, is measured over all its fitted alphas past the random-like phase
    (``context``): few trusted points alone cannot tell a jump from the spread.
    """
    context = alphas if context is None else context
    usable = alphas if trusted is None else [a if ok else None for a, ok in zip(alphas, trusted)]
    settled = initial_descent_end(context)
    known = [i for i, a in enumerate(context) if a is not None]
    before = {after: prior for prior, after in itertools.pairwise(known)}
    jumps = [
        jump
        for jump in find_jumps(context, steps, jump_k, min_swing)
        if jump.at > settled and usable[jump.at] is not None and usable[before[jump.at]] is not None
    ]
    fall_rise = find_fall_then_rise(usable, steps, min_swing)
    flags = [
        flag
        for flag, present in (
            (FLAG_FALL_THEN_RISE, fall_rise is not None),
            (FLAG_JUMP, bool(jumps)),
            (FLAG_STUCK, is_stuck_untrained(alphas, verdicts)),
        )
        if present
    ]
    return LayerSeries(name, kind, alphas, verdicts, flags, jumps, fall_rise, list(trusted or []))


def flaggable(layer: LayerResult | None) -> bool:
    """Whether a layer's alpha may carry a flag: it has a reading
    (`LayerResult.has_reading`) that is not merely approximate, and is not random-like.

    A jump claims a change, so both its ends need a solid reading: on the example run,
    approximate readings let the fit's switch from a 100-value tail (α 1.5) to an
    18-value one (α 3.9) at step 1500 read as a jump of `model.layers.1.mlp.down_proj`.
    """
    return layer is not None and layer.has_reading and layer.confidence != "approximate" and not random_spectrum(layer)


def random_spectrum(layer: LayerResult) -> bool:
    """Whether the layer's spectrum is random-like (the flag, which a `looks-untrained`
    layer carries too): its alpha says nothing, as at a run's start."""
    return "random-like" in layer.flags


def _comovement(present: list[LayerResult | None], distances: list[float | None]) -> dict[str, float | None]:
    """Spearman correlation of alpha with three other series, past the random-like phase."""
    kept = [layer if layer is not None and layer.ok and not random_spectrum(layer) else None for layer in present]
    alphas = [layer.alpha if layer is not None else None for layer in kept]
    kept_distances = [d if layer is not None else None for d, layer in zip(distances, kept)]
    return {
        "shuffle_ks_distance": spearman(
            alphas, [layer.shuffle_ks_distance if layer is not None else None for layer in kept]
        ),
        "log_spectral_norm": spearman(
            alphas, [layer.log_spectral_norm if layer is not None else None for layer in kept]
        ),
        "distance_from_init": spearman(alphas, kept_distances),
    }


def attention_series(points: list[TrendPoint], steps: list[int | None], jump_k: float) -> list[AttentionSeries]:
    """Every block's logit bound over the run, the growing ones flagged."""
    per_block: dict[tuple[int | None, str], list[float | None]] = {}
    for index, point in enumerate(points):
        attention = point.measures.attention if point.measures is not None else None
        for bound in attention.layers if attention is not None else []:
            per_block.setdefault((bound.block, bound.q), [None] * len(points))[index] = bound.max
    return block_growth(per_block, steps, jump_k)


def block_growth(
    per_block: dict[tuple[int | None, str], list[float | None]], steps: list[int | None], jump_k: float
) -> list[AttentionSeries]:
    """Each block's bound series (keyed by block and q name) with its growth, the growing ones flagged."""
    count = len(steps)
    positions = _log_step_positions(steps)
    start = max(1 if count >= 4 else 0, count - GROWTH_WINDOW)  # past the move from the random start
    growths = [log_slope(bounds[start:], positions[start:]) for bounds in per_block.values()]
    flags = high_outliers(growths, jump_k, GROWTH_FLOOR)
    return [
        AttentionSeries(block, q, bounds, growth, flagged)
        for ((block, q), bounds), growth, flagged in zip(per_block.items(), growths, flags)
    ]


def embedding_series(points: list[TrendPoint]) -> list[EmbeddingSeries]:
    """Every measured embedding's row cloud over the run, with its phase and rises."""
    clouds: dict[str, list] = {}
    for index, point in enumerate(points):
        for cloud in point.measures.embeddings if point.measures is not None else []:
            clouds.setdefault(cloud.name, [None] * len(points))[index] = cloud
    series = []
    for name, per_point in clouds.items():

        def values(field: str) -> list[float | None]:
            return [getattr(c, field) if c is not None else None for c in per_point]  # noqa: B023 - called within the loop iteration

        twonn, errors = values("twonn"), values("twonn_se")
        phase, peak = peak_phase(twonn, errors)
        rises = sudden_rises(twonn, errors, RISE_SIGMAS, RISE_SHARE)
        series.append(
            EmbeddingSeries(
                name,
                twonn,
                errors,
                values("mle"),
                values("mean_cosine"),
                values("pc1_share"),
                phase,
                peak,
                rises,
                [FLAG_ID_RISE] if rises else [],
            )
        )
    return series


def trend_from_reports(
    run: list[tuple[RunEntry, Report, str]],
    *,
    jump_k: float = 5.0,
    min_swing: float = 0.3,
    distances: dict[str, list[float | None]] | None = None,
    notes: list[str] | None = None,
) -> Trend:
    """The trend of reports already in step order: (entry, report, origin) per checkpoint.

    ``distances`` maps a layer name to its distance from initialisation per checkpoint
    (`run_distances`); without it the series are None.
    """
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
        trusted = [flaggable(layer) for layer in present]
        context = [a if layer is not None and not random_spectrum(layer) else None for a, layer in zip(alphas, present)]
        layer = layer_series(
            name, kind, alphas, verdicts, steps, jump_k=jump_k, min_swing=min_swing, trusted=trusted, context=context
        )
        distance = (distances or {}).get(name, [None] * len(run))
        series.append(
            dataclasses.replace(layer, distance_from_init=distance, comovement=_comovement(present, distance))
        )
    options = run[0][1].options if run else {}
    points = [_point(entry, report, origin) for entry, report, origin in run]
    return Trend(
        points,
        series,
        options,
        jump_k,
        min_swing,
        attention=attention_series(points, steps, jump_k),
        embeddings=embedding_series(points),
        notes=list(notes or []),
    )


def run_distances(
    run: list[tuple[RunEntry, Report, str]], store: ReportCache | None = None
) -> tuple[dict[str, list[float | None]], list[str]]:
    """‖W − W₀‖_F/‖W₀‖_F of every analysed layer at every checkpoint, W₀ from the first.

    Streamed: the reference stays open and each checkpoint is read two tensors at a time.
    Checkpoints given as saved reports have no weights: their distances are None, and a
    run that starts with a saved report has no W₀ at all (the note says so). With a cache
    (``--cache``) each checkpoint's distances are kept beside its report, so a rerun reads
    the weights of new checkpoints only, as for the reports.
    """
    names = list(dict.fromkeys(layer.name for _, report, _ in run for layer in report.layers))
    out: dict[str, list[float | None]] = {name: [None] * len(run) for name in names}
    if not run:
        return out, []
    if run[0][2] == "report":
        return out, ["no distance from initialisation: the run's first checkpoint is a saved report (no weights)"]
    for layer in run[0][1].layers:  # W₀ against itself: 0 where W₀ is finite and not all zero
        out[layer.name][0] = 0.0 if layer.ok and layer.log_norm is not None else None
    with open_checkpoint(run[0][0].path) as reference:
        for index, (entry, _, origin) in enumerate(run):
            if origin == "report" or index == 0:  # the reference's distance to itself is 0: not read
                continue
            found = store.get_distances(entry.path, run[0][0].path) if store is not None else None
            if found is None:
                with open_checkpoint(entry.path) as reader:
                    found = distance_from_init(reader, reference, names)
                if store is not None:
                    store.put_distances(entry.path, run[0][0].path, found)
            for name in names:
                out[name][index] = found.get(name)
    return out, []


#: Called after each checkpoint with (its entry, its origin, position, how many in all).
CheckpointHook = Callable[[RunEntry, str, int, int], None]


def trend(paths: Iterable[str | os.PathLike[str]], *, step_regex: str | None = None, **kwargs: Any) -> Trend:
    """Analyse a run: a directory of checkpoints, or checkpoints / saved reports listed,
    ordered by the step in their names (``step_regex``); ``kwargs`` are `trend_of_run`'s."""
    return trend_of_run(find_run(paths, step_regex), **kwargs)


def trend_of_run(
    entries: list[RunEntry],
    *,
    cache: str | os.PathLike[str] | None = None,
    jump_k: float = 5.0,
    min_swing: float = 0.3,
    on_checkpoint: CheckpointHook | None = None,
    execution: Execution = Execution(),
    executor: str | None = None,
    **options: object,
) -> Trend:
    """The trend of checkpoints already found and ordered (`order_run`), each read as one
    checkpoint (`weightscope watch` passes those complete so far).

    Each checkpoint's report and spectra are kept in the cache (`execution`'s, by default
    the user's cache directory; ``cache`` names another directory for this run), so a
    rerun analyses only new or changed checkpoints. ``options`` are the `AnalysisOptions`
    fields. Reports are held (they are small); weights are not. ``execution`` (or
    ``executor="ray"``) says how the checkpoints not yet analysed run: on Ray, all their
    layers form one pool of tasks (`analyze_many`).
    """
    opts = AnalysisOptions.from_kwargs(**options)
    if cache is not None:
        execution = dataclasses.replace(execution, cache=True, cache_dir=str(cache))
    if executor is not None:
        execution = dataclasses.replace(execution, executor=executor)
    if not entries:
        raise WeightscopeError("trend needs at least one checkpoint or run directory")
    opened = open_store(execution.cache_dir, execution.cache_max_bytes) if execution.cache else None
    reports = ReportCache(opened, opts) if opened is not None else None
    known = [_stored_report(entry.path, reports) for entry in entries]
    fresh = analyze_many(
        [entry.path for entry, found in zip(entries, known) if found is None], opts, execution=execution
    )
    run: list[tuple[RunEntry, Report, str]] = []
    with closing(fresh):
        for position, (entry, found) in enumerate(zip(entries, known), start=1):
            if found is None:
                found = next(fresh), "analysed"
                if reports is not None:
                    reports.put(entry.path, found[0])
            run.append((entry, *found))
            if on_checkpoint is not None:
                on_checkpoint(entry, found[1], position, len(entries))
    distances, notes = run_distances(run, reports) if opts.measures else ({}, [])
    return trend_from_reports(run, jump_k=jump_k, min_swing=min_swing, distances=distances, notes=notes)


def _stored_report(path: Path, reports: ReportCache | None) -> tuple[Report, str] | None:
    """The report of ``path`` when it is a saved report or in the cache, else None."""
    saved = read_saved_report(path)
    if saved is not None:
        return saved, "report"
    cached = reports.get(path) if reports is not None else None
    return (cached, "cache") if cached is not None else None
