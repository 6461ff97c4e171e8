"""A CI gate on a checkpoint's health: `weightscope gate PATH`.

Rules come from ``[tool.weightscope.gate]`` in pyproject.toml (of the current directory,
or a ``--config`` file; read by `weightscope.config.read_tool_section`, the one config
reader) and from command-line flags generated from the rules' fields (`GateRules`),
which override the file. Every rule is checked per layer (or once for the model) and each
check is one `Check`: pass, warn (out of range but within the allowed share), fail,
accepted (a failure the baseline has too), or skip (the report lacks what the rule
needs, e.g. traps without ``--randomize``). A skipped rule fails the gate under
``strict`` (the default), so a gate never passes on checks it did not make; zero layers
left to judge always fails. The CLI maps a failure to exit code 1, and bad input or
config to 2. Every failure carries its one-line fix: the finding's (`weightscope.vocabulary`), or
the rule's own for rules that are not a layer finding.

What the rules judge, and why (measured on all-MiniLM-L6-v2, a well-trained public
model, and on broken copies of it the gate must fail):
- alpha bands read layers whose alpha has a reading only (`LayerResult.has_reading`):
  where alpha carries no information it is not a measurement.
- traps fail by impact (the layer's verdict is correlation-trap: alpha moves or leaves
  the band without the trap entries), not by existence; BERT's outlier dimension is a
  real trap that moves nothing.
- layers that look untrained or reset (`looks-untrained`: a random-like spectrum and
  entries like an initial draw), collapsed ranks and failed analyses fail. A random-like
  spectrum alone is a warning and fails only under ``fail-on-random-like``: trained
  weights can keep an MP-shaped spectrum (SmolLM2-135M's seven value projections, whose
  Q4_1 rounding is 0.7 % of their energy), the learned part in the singular vectors.
- `max_alpha_deviation`: a layer whose alpha lies more than that many robust sigmas
  (1.4826·MAD) from the median alpha of the model's layers of the same kind: an
  outlier against the model itself, which catches one broken layer even when the whole
  band is shifted.
- ``exclude``: layers (regexes) the rules skip, e.g. the pooler sentence-transformers
  never train.
- LoRA updates (a rank-r ΔW has no power-law tail) are judged by the adapter rules
  (`update_checks`): rank used, size against the adapter's median, dominance.

Real models are rarely spotless: the default gate fails all-MiniLM-L6-v2 on its untrained
pooler (looks-untrained; its FAIL line names the exclude that accepts it). Teams gate what a change did, so ``--baseline`` (a saved report or
the checkpoint before the change) runs the same rules on the baseline and accepts the
failures it has too, no worse; ``--write-baseline FILE`` accepts today's state once.

The gate reads a `Report`, so `analyze -o report.json` once and `gate report.json` costs
no recompute.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from weightscope import vocabulary
from weightscope.checkpoint.layers import OTHER_KIND
from weightscope.checkpoint.names import align_names
from weightscope.commands.compare import Comparison, compare_checkpoints, compare_reports
from weightscope.commands.sources import report_for
from weightscope.config import Thresholds, coerce, read_tool_section
from weightscope.errors import WeightscopeError
from weightscope.execution.plan import Execution
from weightscope.options import AnalysisOptions
from weightscope.patterns import compile_pattern
from weightscope.report import LayerResult, Report, json_document
from weightscope.stats.update import UpdateStats

SCHEMA = "weightscope.gate/2"

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
#: A failure the baseline has too (and no worse): listed, not failing.
ACCEPTED = "accepted"

#: The model-level pseudo layer name of rules that are checked once per model.
MODEL = "(model)"

_NEEDS_BASELINE = "max-delta-alpha / max-delta-median need a baseline report (--baseline)"

# Robust standard deviation of a Gaussian from its median absolute deviation.
_MAD_TO_SIGMA = 1.4826


def _rule(help: str, flag: str | None = None) -> dict[str, str]:
    """A rule field's metadata: its --help text and, for a switch, its flag pair (the
    CLI generates one flag per rule from these, `weightscope.cli.gate`)."""
    return {"help": help, **({"flag": flag} if flag else {})}


def _fails_by_default(*verdicts: str) -> bool:
    """Whether the default gate fails ``verdicts``: when they have failure severity
    (`weightscope.vocabulary`: severity decides the gate, a warning is not a failure)."""
    return all(vocabulary.severity(name) is vocabulary.Severity.FAILURE for name in verdicts)


@dataclass(frozen=True)
class GateRules:
    """The limits a checkpoint must meet. Config keys are the field names in kebab case;
    each field is also a command-line flag (``metadata`` holds its help)."""

    # The band's defaults are the thresholds' (`weightscope.config`): one definition.
    min_alpha: float = field(
        default=Thresholds.alpha_low,
        metadata=_rule("Lower end of the healthy alpha band, for layers whose alpha has a reading."),
    )
    max_alpha: float = field(
        default=Thresholds.alpha_high,
        metadata=_rule("Upper end of the healthy alpha band, for layers whose alpha has a reading."),
    )
    # Out-of-band alphas are warnings (`vocabulary`: over-/under-trained), so by default
    # they never fail the gate (share 1); a team that wants them to sets a share.
    max_out_of_range_share: float = field(
        default=0.0 if _fails_by_default("over-trained", "under-trained") else 1.0,
        metadata=_rule(
            "Largest share of read alphas allowed outside the band (warnings); beyond it each one fails "
            "(default 1: over- and under-trained are warnings, not failures; 0.1 was the old default)."
        ),
    )
    max_out_of_range_count: int | None = field(
        default=None, metadata=_rule("Largest number of read alphas allowed outside the band (unset: no count limit).")
    )
    max_alpha_deviation: float | None = field(
        default=6.0,
        metadata=_rule(
            "Fail a layer whose alpha lies more robust sigmas (MAD) than this from the median alpha of its kind (inf: off)."
        ),
    )
    fail_on_traps: bool = field(
        default=_fails_by_default("correlation-trap"),
        metadata=_rule(
            "Fail layers whose correlation trap changes alpha's reading (verdict correlation-trap).",
            "--fail-on-traps/--allow-traps",
        ),
    )
    fail_on_rank_collapse: bool = field(
        default=_fails_by_default("rank-collapsed"),
        metadata=_rule("Fail layers whose rank collapsed.", "--fail-on-rank-collapse/--allow-rank-collapse"),
    )
    fail_on_untrained: bool = field(
        default=_fails_by_default("looks-untrained"),
        metadata=_rule(
            "Fail layers that look untrained or reset (random-like spectrum and entries like an initial draw).",
            "--fail-on-untrained/--allow-untrained",
        ),
    )
    # A random-like spectrum alone is a warning (trained weights can keep an MP-shaped
    # spectrum: SmolLM2-135M's seven value projections), so this rule is opt-in.
    fail_on_random_like: bool = field(
        default=_fails_by_default("random-like"),
        metadata=_rule(
            "Also fail layers whose spectrum alone is random-like (a warning by default; looks-untrained has its own rule).",
            "--fail-on-random-like/--allow-random-like",
        ),
    )
    min_trusted_share: float = field(
        default=0.3, metadata=_rule("Least share of fitted layers whose alpha has a reading (0: off).")
    )
    max_failed: int = field(default=0, metadata=_rule("Layers allowed to fail analysis, e.g. NaN weights."))
    max_delta_alpha: float | None = field(
        default=None, metadata=_rule("Largest |Δalpha| of a layer against --baseline.")
    )
    max_delta_median: float | None = field(default=None, metadata=_rule("Largest |Δ median alpha| against --baseline."))
    max_update_ratio: float | None = field(
        default=10.0,
        metadata=_rule(
            "Adapters: fail a module whose update (‖ΔW‖/‖W‖, or ‖ΔW‖ without the base) exceeds this many times the adapter's median (inf: off)."
        ),
    )
    max_update_share: float | None = field(
        default=0.5,
        metadata=_rule(
            "Adapters: fail a module holding more than this share of the adapter's total squared update, from 4 modules on (inf: off)."
        ),
    )
    strict: bool = field(
        default=True,
        metadata=_rule(
            "Fail when a rule could not be checked (its input is missing from the report).", "--strict/--no-strict"
        ),
    )

    def __post_init__(self) -> None:
        if not self.min_alpha < self.max_alpha:
            raise WeightscopeError(f"min-alpha ({self.min_alpha}) must be below max-alpha ({self.max_alpha})")
        for name in ("max_out_of_range_share", "min_trusted_share", "max_update_share"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                raise WeightscopeError(f"{_key(name)} is a share and must lie in [0, 1], got {getattr(self, name)}")
        for name in (
            "max_out_of_range_count",
            "max_failed",
            "max_delta_alpha",
            "max_delta_median",
            "max_alpha_deviation",
            "max_update_ratio",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise WeightscopeError(f"{_key(name)} must be ≥ 0, got {value}")

    @property
    def needs_baseline(self) -> bool:
        return self.max_delta_alpha is not None or self.max_delta_median is not None


@dataclass(frozen=True)
class GateSettings:
    """Rules plus the inputs they need: where they came from, baseline, name prefixes, and
    the layers (regexes) the rules skip."""

    rules: GateRules
    baseline: str | None = None
    strip_prefix: tuple[str, ...] = ()
    config: str | None = None
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.rules.needs_baseline and self.baseline is None:
            raise WeightscopeError(_NEEDS_BASELINE)
        for pattern in self.exclude:
            compile_pattern(pattern, "gate exclude")


@dataclass(frozen=True)
class Check:
    """One rule checked on one layer (or the model): the value, the limit, the outcome,
    and the one-line fix a failure shows (the finding's advice in `weightscope.vocabulary`, or the rule's
    own for rules that are not a layer finding)."""

    rule: str
    layer: str
    status: str
    value: float | None
    limit: str
    message: str
    fix: str = ""


@dataclass(frozen=True)
class GateResult:
    source: str
    baseline: str | None
    config: str | None
    rules: GateRules
    checks: list[Check]
    excluded: list[str] = field(default_factory=list)
    #: the base model an adapter (``source``) was judged on (``gate BASE --adapter ADAPTER``)
    base: str | None = None
    schema: str = SCHEMA

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def violations(self) -> list[Check]:
        return [check for check in self.checks if check.status == FAIL]

    @property
    def accepted(self) -> list[Check]:
        """Failures the baseline has too, no worse: what the gate let pass because of it."""
        return [check for check in self.checks if check.status == ACCEPTED]

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(check.status for check in self.checks)
        return {status: counted.get(status, 0) for status in (PASS, WARN, FAIL, SKIP, ACCEPTED)}

    def to_dict(self) -> dict[str, Any]:
        return json_document(self, passed=self.passed, counts=self.counts)


# --- configuration ---------------------------------------------------------------------

RULE_HINTS: dict[str, Any] = typing.get_type_hints(GateRules)
_SETTING_KEYS = ("baseline", "strip-prefix", "exclude")


def _key(field_name: str) -> str:
    return field_name.replace("_", "-")


def find_config_table(config: Path | None, cwd: Path) -> tuple[dict[str, Any], Path | None]:
    """The `[tool.weightscope.gate]` table of ``config`` (required there) or of ./pyproject.toml."""
    path = config if config is not None else cwd / "pyproject.toml"
    if config is None and not path.is_file():
        return {}, None
    table = read_tool_section(path).get("gate")
    if table is None:
        if config is not None:
            raise WeightscopeError(f"{path} has no [tool.weightscope.gate] table")
        return {}, None
    if not isinstance(table, dict):
        raise WeightscopeError(f"{path}: [tool.weightscope.gate] must be a table")
    return table, path


def _strings(value: Any, key: str, where: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise WeightscopeError(f"{where}: {key} must be a list of strings, got {value!r}")
    return list(value)


def settings_from(
    table: Mapping[str, Any], overrides: Mapping[str, Any], *, config: Path | None = None
) -> GateSettings:
    """Merge a config table and command-line overrides (kebab-case keys; flags win).

    A baseline path in the config file is relative to the file's directory. ``exclude``
    from the file and from the command line add up.
    """
    where = f"{config} [tool.weightscope.gate]" if config is not None else "gate rules"
    known = {_key(name) for name in RULE_HINTS} | set(_SETTING_KEYS)
    unknown = sorted(_key(str(k)) for k in table if _key(str(k)) not in known)
    if unknown:
        raise WeightscopeError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    merged = {_key(str(k)): v for k, v in table.items()}
    baseline = merged.pop("baseline", None)
    if baseline is not None:
        if not isinstance(baseline, str):
            raise WeightscopeError(f"{where}: baseline must be a path string, got {baseline!r}")
        baseline = str(config.parent / baseline) if config is not None else baseline
    prefixes = _strings(merged.pop("strip-prefix", []), "strip-prefix", where)
    exclude = _strings(merged.pop("exclude", []), "exclude", where)
    rules = {}
    for name, hint in RULE_HINTS.items():
        key = _key(name)
        if key in overrides and overrides[key] is not None:
            rules[name] = coerce(key, hint, overrides[key], "the command line")
        elif key in merged:
            rules[name] = coerce(key, hint, merged[key], where)
    return GateSettings(
        rules=GateRules(**rules),
        baseline=overrides.get("baseline") or baseline,
        strip_prefix=tuple(overrides.get("strip-prefix") or prefixes),
        config=str(config) if config is not None else None,
        exclude=tuple(exclude) + tuple(overrides.get("exclude") or ()),
    )


def load_settings(
    overrides: Mapping[str, Any], *, config: str | os.PathLike[str] | None = None, cwd: str | os.PathLike[str] = "."
) -> GateSettings:
    """Settings from ``config`` (or ./pyproject.toml when present) overridden by flags."""
    if config is not None and not Path(config).is_file():
        raise WeightscopeError(f"config file {config} does not exist")
    table, source = find_config_table(Path(config) if config is not None else None, Path(cwd))
    return settings_from(table, overrides, config=source)


# --- checks ----------------------------------------------------------------------------


def _g(value: float) -> str:
    return f"{value:.4g}"


def advice(name: str) -> str:
    """The one-line fix of a layer finding: its advice in `weightscope.vocabulary` (none
    for a name the vocabulary does not know)."""
    record = vocabulary.finding(name)
    return record.advice if record is not None else ""


#: Fixes of the rules that are not a layer finding (model-level rules,
#: baseline deltas, adapter updates): each rule says once what to do when it fails.
_FIX_LAYERS = "Check --include/--exclude and the gate's exclude patterns: together they left no layer to judge."
_FIX_OUT_OF_RANGE = (
    "See the alpha-range lines; if these layers are expected out of band, accept them once "
    "(gate --write-baseline FILE, then --baseline FILE) or raise max-out-of-range-share."
)
_FIX_OUTLIER = (
    "Compare this layer with the base model or an earlier checkpoint (weightscope compare): a layer "
    "reset, re-initialised or corrupted by a merge stands out from its kind like this."
)
_FIX_TRUST = (
    "Few layers have a believable power-law fit, so alpha says little about this model; lower "
    "min-trusted-share for it, or gate against a baseline of the same model."
)
_FIX_DELTA = "See what the update did to this layer with weightscope compare BASELINE MODEL; raise the limit if the change is intended."
_FIX_STRICT = "Analyse with --randomize (the input this rule needs), or pass --no-strict."
_FIX_UPDATE_SIZE = (
    "This module's update is far larger than the adapter's others: look for an exploding B factor, "
    "a too-high learning rate for it, or a mis-scaled save; retrain or drop the module."
)
_FIX_UPDATE_SHARE = (
    "One module carries most of the adapter's update: check that module's factors and scaling "
    "(lora_alpha, rank_pattern) before merging the adapter."
)
_FIX_UPDATE_ZERO = (
    "The module's B factor is all zero, PEFT's initial state: the adapter was not trained (or saved before training)."
)


def _per_layer(
    rule: str,
    layers: Iterable[LayerResult],
    judge: Callable[[LayerResult], tuple[str, float | None, str]],
    limit: str,
    fix: str | Callable[[LayerResult], str] = "",
) -> list[Check]:
    checks = []
    for layer in layers:
        status, value, message = judge(layer)
        checks.append(
            Check(rule, layer.name, status, value, limit, message, fix if isinstance(fix, str) else fix(layer))
        )
    return checks


def _band_finding(alpha: float, rules: GateRules) -> str:
    """The reading of an alpha outside the band (a finding of the vocabulary)."""
    return "over-trained" if alpha < rules.min_alpha else "under-trained"


def _alpha_checks(layers: list[LayerResult], rules: GateRules) -> list[Check]:
    judged = [layer for layer in layers if layer.has_reading]
    outside = [layer for layer in judged if not rules.min_alpha <= (layer.alpha or 0.0) <= rules.max_alpha]
    allowed = math.floor(rules.max_out_of_range_share * len(judged) + 1e-9)
    if rules.max_out_of_range_count is not None:
        allowed = min(allowed, rules.max_out_of_range_count)
    too_many = len(outside) > allowed
    band = f"[{_g(rules.min_alpha)}, {_g(rules.max_alpha)}]"
    tally = f"{len(outside)} of {len(judged)} read alphas are outside the band, at most {allowed} may be"

    def in_range(layer: LayerResult) -> tuple[str, float | None, str]:
        alpha = layer.alpha
        assert alpha is not None
        if rules.min_alpha <= alpha <= rules.max_alpha:
            return PASS, alpha, f"alpha {_g(alpha)} is within {band}"
        if too_many:
            return FAIL, alpha, f"alpha {_g(alpha)} is outside {band}, and too many are: {tally}"
        return WARN, alpha, f"alpha {_g(alpha)} is outside {band}; tolerated: {tally}"

    checks = _per_layer(
        "alpha-range", judged, in_range, band, lambda layer: advice(_band_finding(layer.alpha or 0.0, rules))
    )
    share = len(outside) / len(judged) if judged else 0.0
    limit = f"at most {allowed} layer(s) outside {band} (share {_g(rules.max_out_of_range_share)}" + (
        f", count {rules.max_out_of_range_count})" if rules.max_out_of_range_count is not None else ")"
    )
    verdict = "too many" if too_many else "within the allowance"
    checks.append(
        Check(
            "out-of-range",
            MODEL,
            FAIL if too_many else PASS,
            share,
            limit,
            f"{tally} ({share:.0%}): {verdict}",
            _FIX_OUT_OF_RANGE,
        )
    )
    return checks


def _deviation_checks(layers: list[LayerResult], limit_sigmas: float) -> list[Check]:
    """Robust outliers against the model's own layers of the same kind.

    The reference is every fitted layer of the kind (median, 1.4826·MAD), so one broken
    layer cannot hide by pulling the reference; only alphas with a reading are judged
    (an alpha without one is not a measurement). A layer's deviation is measured in
    √((1.4826·MAD)² + σ_α²), σ_α = (α − 1)/√n_tail its own standard error: when the
    kind's alphas agree closely, a layer whose alpha is known to ±0.17 is not an outlier
    for lying 0.2 away (english_g2, a real OCR model: α = 2.32 ± 0.17 against a MAD of
    0.086 was 7 robust sigmas out by the MAD alone, 3.7 with its error). Kinds with
    fewer than 4 fitted layers have no reference and are not judged, and neither is the
    catch-all kind ``other``: it pools unlike layers (LSTM gates with Linear layers), so
    its median is no reference. A MAD below 0.05 is raised to 0.05 for layers without a
    standard error (hand-made reports).
    """
    by_kind: dict[str, list[LayerResult]] = defaultdict(list)
    for layer in layers:
        if layer.alpha is not None and layer.kind != OTHER_KIND:
            by_kind[layer.kind].append(layer)
    checks = []
    limit = f"within {_g(limit_sigmas)} robust sigmas (MAD and alpha's own error) of the kind's median alpha"
    for kind, members in by_kind.items():
        if len(members) < _MIN_KIND_LAYERS:
            continue
        alphas = np.array([layer.alpha for layer in members], dtype=float)
        median = float(np.median(alphas))
        spread = _MAD_TO_SIGMA * max(float(np.median(np.abs(alphas - median))), _MIN_MAD)
        for layer, alpha in zip(members, alphas):
            if not layer.has_reading:
                continue
            sigma = math.hypot(spread, layer.sigma or 0.0)
            deviation = abs(alpha - median) / sigma
            status = FAIL if deviation > limit_sigmas else PASS
            message = (
                f"alpha {_g(alpha)} ± {_g(layer.sigma or 0.0)} is {deviation:.1f} robust sigmas from the median "
                f"{_g(median)} of the {len(members)} '{kind}' layers"
            )
            if status == FAIL:
                message += f". {accept_hint(layer.name)}"
            checks.append(Check("alpha-outlier", layer.name, status, float(deviation), limit, message, _FIX_OUTLIER))
    return checks


_MIN_KIND_LAYERS = 4
_MIN_MAD = 0.05


def _flag_check(
    rule: str, flag: str, what: str, needs: Callable[[LayerResult], object]
) -> Callable[[LayerResult], tuple[str, float | None, str]]:
    """A per-layer check that fails where the layer carries ``flag``; skipped where the
    input the flag needs (``needs``) was not computed."""

    def judge(layer: LayerResult) -> tuple[str, float | None, str]:
        if not layer.ok:
            return PASS, None, "not analysed (see failed-layer)"
        if needs(layer) is None:
            return SKIP, None, f"{rule} was not computed for this layer"
        if flag in layer.flags:
            reason = next((r for f, r in zip(layer.flags, layer.reasons[-len(layer.flags) :]) if f == flag), what)
            return FAIL, 1.0, f"{reason} {accept_hint(layer.name)}"
        return PASS, 0.0, f"no {rule}"

    return judge


def accept_hint(name: str) -> str:
    """How to accept a layer the gate fails, e.g. the pooler sentence-transformers never
    train: the exact --ignore flag, or the config's exclude (`re.escape` only escapes,
    and RE2, which matches the patterns, reads its escapes)."""
    pattern = "^" + re.escape(name) + "$"
    return f"To accept it: --ignore '{pattern}', or exclude = ['{pattern}'] in [tool.weightscope.gate]."


def _trust_check(layers: list[LayerResult], minimum: float) -> Check:
    judged = [layer for layer in layers if layer.ok and layer.alpha is not None and layer.fit_trust is not None]
    limit = f"≥ {_g(minimum)}"
    if not judged:
        return Check("trusted-fits", MODEL, SKIP, None, limit, "the reading of alpha was not judged")
    share = sum(layer.has_reading for layer in judged) / len(judged)
    status = PASS if share >= minimum else FAIL
    return Check(
        "trusted-fits",
        MODEL,
        status,
        share,
        limit,
        f"{share:.0%} of {len(judged)} fitted layers have a reading of alpha",
        _FIX_TRUST,
    )


def _failed_checks(layers: list[LayerResult], max_failed: int) -> list[Check]:
    failed = sum(not layer.ok for layer in layers)

    def analysed(layer: LayerResult) -> tuple[str, float | None, str]:
        if layer.ok:
            return PASS, None, "analysed"
        status = FAIL if failed > max_failed else WARN
        return status, None, f"analysis failed: {layer.reason} ({failed} failed, {max_failed} allowed)"

    def fix(layer: LayerResult) -> str:
        return advice("non-finite" if "non-finite" in layer.flags or "NaN" in (layer.reason or "") else "failed")

    return _per_layer("failed-layer", layers, analysed, f"≤ {max_failed} failed layers", fix)


# --- adapters: what an update can break ------------------------------------------------

#: Fewest updated modules for a median (update-size) to be a reference.
_MIN_UPDATES_FOR_MEDIAN = 3
#: Fewest updated modules for one of them to "dominate": with two or three modules, half
#: the update in one is ordinary.
_MIN_UPDATES_FOR_SHARE = 4


@dataclass(frozen=True)
class Update:
    """One adapted module's update, as the adapter rules read it."""

    name: str
    stats: UpdateStats


def update_checks(updates: list[Update], rules: GateRules) -> list[Check]:
    """The rules for a LoRA update ΔW = s·B·A, which has at most r non-zero singular
    values: no power law to fit, so no alpha rule. What can break is its size and rank:

    - ``update-rank``: the directions it uses (rank90 of r); a zero update (B = 0) fails;
    - ``update-size``: ‖ΔW‖/‖W‖ (‖ΔW‖ when the base is not at hand) against the median
      of the adapter's modules; more than ``max-update-ratio`` times it fails (a B factor
      scaled ×1e4 is 1e4 times its siblings); a non-finite size (overflow) fails;
    - ``update-share``: a module holding more than ``max-update-share`` of the adapter's
      Σ‖ΔW‖² dominates it (judged from 4 modules on).
    """
    checks = []
    for update in updates:
        stats = update.stats
        rank = stats.lora_rank if stats.lora_rank is not None else stats.dim
        used = (
            f"{stats.rank90} of r = {rank} direction(s) hold 90 % of ‖ΔW‖² (effective rank {stats.effective_rank:.2g})"
        )
        status, message = (FAIL, "zero update: " + used) if stats.rank90 == 0 else (PASS, used)
        checks.append(
            Check("update-rank", update.name, status, float(stats.rank90), "> 0 directions", message, _FIX_UPDATE_ZERO)
        )
    relative = all(u.stats.relative_norm is not None for u in updates)
    sizes = np.array([(u.stats.relative_norm if relative else u.stats.norm) or 0.0 for u in updates], dtype=float)
    what, squared = ("‖ΔW‖/‖W‖", "Σ(‖ΔW‖/‖W‖)²") if relative else ("‖ΔW‖", "Σ‖ΔW‖²")
    finite = sizes[np.isfinite(sizes) & (sizes > 0)]
    if rules.max_update_ratio is not None and finite.size >= _MIN_UPDATES_FOR_MEDIAN:
        median = float(np.median(finite))
        limit = f"{what} ≤ {_g(rules.max_update_ratio)} × the adapter's median"
        for update, size in zip(updates, sizes):
            ratio = float(size / median) if math.isfinite(size) else math.inf
            status = FAIL if not ratio <= rules.max_update_ratio else PASS
            message = (
                f"{what} = {_g(size)} is {_g(ratio)} × the median {_g(median)} of the adapter's {len(updates)} modules"
                if math.isfinite(size)
                else f"{what} is not finite: the update overflows"
            )
            checks.append(Check("update-size", update.name, status, ratio, limit, message, _FIX_UPDATE_SIZE))
    squares = sizes**2
    if (
        rules.max_update_share is not None
        and len(updates) >= _MIN_UPDATES_FOR_SHARE
        and np.isfinite(squares).all()
        and squares.sum() > 0
    ):
        limit = f"≤ {_g(rules.max_update_share)} of {squared}"
        for update, square in zip(updates, squares):
            share = float(square / squares.sum())
            status = FAIL if share > rules.max_update_share else PASS
            checks.append(
                Check(
                    "update-share",
                    update.name,
                    status,
                    share,
                    limit,
                    f"holds {share:.0%} of the adapter's {squared} over {len(updates)} modules",
                    _FIX_UPDATE_SHARE,
                )
            )
    return checks


# --- baselines: only what is new or worse fails ----------------------------------------


def _band_distance(alpha: float | None, rules: GateRules) -> float:
    if alpha is None:
        return 0.0
    return max(rules.min_alpha - alpha, alpha - rules.max_alpha, 0.0)


#: Rules whose value gets worse as it grows, or as it shrinks; the flag rules (value 1)
#: are the same finding or a new one, never "worse".
_GROWS_WORSE = {"out-of-range", "update-size", "update-share"}
_SHRINKS_WORSE = {"trusted-fits", "update-rank"}
#: Rules a baseline never excuses: no layer to judge, and the deltas against the baseline.
_NEVER_ACCEPTED = {"layers", "delta-alpha", "delta-median", "new-trap"}
#: An outlier that moved further from its kind's median by more than this many robust
#: sigmas got worse; less is the jitter of refitting a slightly changed matrix.
_OUTLIER_SLACK = 1.0


def _worse(check: Check, prior: Check, layer: LayerResult | None, rules: GateRules) -> bool:
    """Whether ``check`` is worse than the baseline's ``prior`` failure of the same rule.

    alpha-range: alpha moved further from the band by more than twice the fit's own
    standard error (``sigma``: the error of the MLE alpha); alpha-outlier: by more than
    `_OUTLIER_SLACK` robust sigmas.
    """
    now, before = check.value, prior.value
    if now is None or before is None:
        return False
    if check.rule == "alpha-range":
        slack = 2.0 * (layer.sigma if layer is not None and layer.sigma is not None else 0.0)
        return _band_distance(now, rules) > _band_distance(before, rules) + slack
    if check.rule == "alpha-outlier":
        return now > before + _OUTLIER_SLACK
    if check.rule in _GROWS_WORSE:
        return now > before
    if check.rule in _SHRINKS_WORSE:
        return now < before
    return False


def _new_traps(report: Report, baseline: Report, pairs: list[tuple[str, str, str]], skipped: set[str]) -> list[Check]:
    """Layers whose trap entries are new against the baseline: a count that grew is a
    few outsized weights that were not there, whether or not they move alpha yet."""
    before = {layer.name: layer for layer in baseline.layers}
    now = {layer.name: layer for layer in report.layers}
    checks = []
    for _, name_a, name_b in pairs:
        if name_b in skipped or now[name_b].traps is None or before[name_a].traps is None:
            continue
        count, prior = now[name_b].traps.count, before[name_a].traps.count  # type: ignore[union-attr]
        status = FAIL if count > prior else PASS
        checks.append(
            Check(
                "new-trap",
                name_b,
                status,
                float(count),
                "no more traps than the baseline",
                f"{count} correlation trap(s), the baseline has {prior}",
                advice("correlation-trap"),
            )
        )
    return checks


def _against_baseline(
    checks: list[Check],
    before: list[Check],
    pairs: list[tuple[str, str, str]],
    layers: Mapping[str, LayerResult],
    rules: GateRules,
) -> list[Check]:
    """Each failure the baseline has too, on the paired layer (or the model) and no
    worse, becomes ACCEPTED, saying so; new and worse failures stay failures."""
    current = {name_a: name_b for _, name_a, name_b in pairs}
    current[MODEL] = MODEL
    found = {(c.rule, current[c.layer]): c for c in before if c.status in (FAIL, WARN) and c.layer in current}
    judged = []
    for check in checks:
        prior = found.get((check.rule, check.layer))
        if (
            check.status == FAIL
            and prior is not None
            and check.rule not in _NEVER_ACCEPTED
            and not _worse(check, prior, layers.get(check.layer), rules)
        ):
            has = (
                "the baseline has it too" if prior.message == check.message else f"the baseline has it: {prior.message}"
            )
            check = dataclasses.replace(check, status=ACCEPTED, message=f"{check.message} ({has})")
        judged.append(check)
    return judged


def _delta_checks(comparison: Comparison, report: Report, baseline: Report, rules: GateRules) -> list[Check]:
    checks = []
    if rules.max_delta_alpha is not None:
        limit = f"|Δalpha| ≤ {_g(rules.max_delta_alpha)}"
        for change in comparison.layers:
            delta = change.delta_alpha
            if delta is None:
                checks.append(Check("delta-alpha", change.name_b, SKIP, None, limit, "alpha missing on one side"))
                continue
            status = PASS if abs(delta) <= rules.max_delta_alpha else FAIL
            message = f"alpha moved {delta:+.4g} from the baseline ({_g(change.alpha_a or 0.0)} → {_g(change.alpha_b or 0.0)})"
            checks.append(Check("delta-alpha", change.name_b, status, delta, limit, message, _FIX_DELTA))
    if rules.max_delta_median is not None:
        limit = f"|Δmedian alpha| ≤ {_g(rules.max_delta_median)}"
        before, after = baseline.summary.alpha_median, report.summary.alpha_median
        if before is None or after is None:
            checks.append(Check("delta-median", MODEL, SKIP, None, limit, "no median alpha on one side"))
        else:
            delta = after - before
            status = PASS if abs(delta) <= rules.max_delta_median else FAIL
            message = f"median alpha moved {delta:+.4g} from the baseline ({_g(before)} → {_g(after)})"
            checks.append(Check("delta-median", MODEL, status, delta, limit, message, _FIX_DELTA))
    return checks


def excluded_layers(report: Report, patterns: Iterable[str]) -> list[str]:
    """Names of the report's layers that match any of the gate's exclude regexes."""
    compiled = [compile_pattern(pattern, "gate exclude") for pattern in patterns]
    return [layer.name for layer in report.layers if any(p.search(layer.name) for p in compiled)]


def _rule_checks(report: Report, rules: GateRules, skipped: set[str]) -> list[Check]:
    """Every rule on the report's layers (less ``skipped``), before any baseline.

    A LoRA update (a layer with ``update``) is judged by the adapter rules only; the
    full-matrix rules (alpha, traps, untrained/random-like, rank, fit trust) judge the rest.
    """
    layers = [layer for layer in report.layers if layer.name not in skipped]
    checks = [
        Check(
            "layers",
            MODEL,
            PASS if layers else FAIL,
            float(len(layers)),
            "≥ 1 layer",
            f"{len(layers)} layer(s) to judge" + (f" ({len(skipped)} excluded by the gate config)" if skipped else "")
            if layers
            else "no layer to judge: the selection or the exclude patterns match nothing, so nothing was checked",
            _FIX_LAYERS,
        )
    ]
    if not layers:
        return checks
    updates = [Update(layer.name, layer.update) for layer in layers if layer.update is not None]
    full = [layer for layer in layers if layer.update is None]
    checks += _alpha_checks(full, rules)
    if rules.max_alpha_deviation is not None:
        checks += _deviation_checks(full, rules.max_alpha_deviation)
    if rules.fail_on_untrained:
        checks += _per_layer(
            "looks-untrained",
            full,
            _flag_check("looks-untrained", "looks-untrained", "looks untrained or reset", lambda layer: layer.mp),
            "does not look untrained",
            advice("looks-untrained"),
        )
    if rules.fail_on_random_like:
        # a looks-untrained layer's spectrum is random-like too: the rule above judges it
        random_like = [layer for layer in full if "looks-untrained" not in layer.flags]
        checks += _per_layer(
            "random-like",
            random_like,
            _flag_check("random-like", "random-like", "random-like spectrum", lambda layer: layer.mp),
            "not random-like",
            advice("random-like"),
        )
    if rules.fail_on_traps:
        checks += _per_layer(
            "correlation-trap",
            full,
            _flag_check(
                "correlation-trap", "correlation-trap", "a correlation trap that moves alpha", lambda layer: layer.traps
            ),
            "no trap that moves alpha",
            advice("correlation-trap"),
        )
    if rules.fail_on_rank_collapse:
        checks += _per_layer(
            "rank-collapse",
            full,
            _flag_check("rank-collapse", "rank-collapsed", "rank collapsed", lambda layer: layer.rank),
            "not collapsed",
            advice("rank-collapsed"),
        )
    if rules.min_trusted_share > 0 and any(layer.ok for layer in full):
        checks.append(_trust_check(full, rules.min_trusted_share))
    checks += _failed_checks(layers, rules.max_failed)
    return checks + (update_checks(updates, rules) if updates else [])


def evaluate(
    report: Report,
    rules: GateRules,
    *,
    baseline: Report | None = None,
    strip_prefix: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> list[Check]:
    """Every check of ``rules`` on ``report`` (less the ``exclude``d layers), in rule order.

    With a ``baseline`` (the same model before a change, or the report written by
    ``gate --write-baseline``) the same rules run on it, its layers are paired with the
    report's (`weightscope.checkpoint.names.align_names`: fewer than half paired is an
    error), and a failure it has too, no worse, is ACCEPTED; a new trap fails, and the
    delta rules compare the two. Under ``rules.strict`` a skipped check (its input
    missing) becomes a failure that says so; with no layer left to judge the gate fails
    whatever ``strict`` says or the baseline has.
    """
    if rules.needs_baseline and baseline is None:
        raise WeightscopeError(_NEEDS_BASELINE)
    exclude = tuple(exclude)
    skipped = set(excluded_layers(report, exclude))
    checks = _rule_checks(report, rules, skipped)
    judged = checks[0].status == PASS  # the "layers" check: something is left to judge
    if baseline is not None and judged:
        alignment = align_names(
            [layer.name for layer in baseline.layers], [layer.name for layer in report.layers], strip_prefix
        )
        alignment.check()
        before = _rule_checks(baseline, rules, set(excluded_layers(baseline, exclude)))
        checks = _against_baseline(
            checks, before, alignment.pairs, {layer.name: layer for layer in report.layers}, rules
        )
        if rules.fail_on_traps:
            checks += _new_traps(report, baseline, alignment.pairs, skipped)
        if rules.needs_baseline:
            checks += _delta_checks(
                compare_reports(baseline, report, strip_prefix=strip_prefix), report, baseline, rules
            )
    if rules.strict:
        checks = [
            dataclasses.replace(
                check,
                status=FAIL,
                fix=_FIX_STRICT,
                message=f"{check.message}; --strict fails a rule that could not be checked",
            )
            if check.status == SKIP
            else check
            for check in checks
        ]
    return checks


def adapter_checks(comparison: Comparison, rules: GateRules, exclude: Iterable[str] = ()) -> list[Check]:
    """The rules for an adapter applied to its base (`compare BASE ADAPTER`): each
    module's update, with ‖ΔW‖/‖W‖ against the base's weights, and each merged layer's
    verdict against the base layer's: a merged layer whose reading got worse fails when
    the new reading is a broken-weights verdict (random-like and worse), warns otherwise."""
    compiled = [compile_pattern(pattern, "gate exclude") for pattern in exclude]
    changes = [c for c in comparison.layers if not any(p.search(c.name_b) or p.search(c.name) for p in compiled)]
    checks = [
        Check(
            "layers",
            MODEL,
            PASS if changes else FAIL,
            float(len(changes)),
            "≥ 1 adapted layer",
            f"{len(changes)} adapted layer(s) to judge" if changes else "no adapted layer to judge",
            _FIX_LAYERS,
        )
    ]
    if not changes:
        return checks
    for change in changes:
        status = PASS
        if change.worse:
            broken = (vocabulary.severity(change.verdict_b) or vocabulary.Severity.OK) >= vocabulary.Severity.FAILURE
            status = FAIL if broken else WARN
        message = f"merged {change.verdict_b or 'unjudged'}, base {change.verdict_a or 'unjudged'}" + (
            f"; {change.note}" if change.note else ""
        )
        checks.append(
            Check(
                "merged-verdict",
                change.name,
                status,
                None,
                "no worse than the base layer's reading",
                message,
                advice(change.verdict_b) if change.verdict_b else "",
            )
        )
    updates = [Update(change.name, change.update) for change in changes if change.update is not None]
    return checks + (update_checks(updates, rules) if updates else [])


def gate(
    path: str | os.PathLike[str],
    settings: GateSettings,
    *,
    adapter: str | os.PathLike[str] | None = None,
    execution: Execution = Execution(),
    **options: object,
) -> GateResult:
    """Check a checkpoint or saved report against ``settings``; ``options`` and
    ``execution`` as for `analyze`.

    ``adapter``: ``path`` is the base model and the adapter is judged on it
    (`adapter_checks`).
    """
    opts = AnalysisOptions.from_kwargs(**options)
    if adapter is not None:
        if settings.baseline is not None:
            raise WeightscopeError(
                "a baseline does not apply to a base + adapter gate: gate the adapter directory "
                "against a baseline of it (gate ADAPTER_DIR --baseline FILE)"
            )
        comparison = compare_checkpoints(path, adapter, opts, strip_prefix=settings.strip_prefix, execution=execution)
        checks = adapter_checks(comparison, settings.rules, settings.exclude)
        return GateResult(str(adapter), None, settings.config, settings.rules, checks, base=str(path))
    report = report_for(path, opts, execution=execution)
    baseline = report_for(settings.baseline, opts, execution=execution) if settings.baseline is not None else None
    return _gated(path, report, settings, baseline, settings.baseline)


def accept(
    path: str | os.PathLike[str],
    settings: GateSettings,
    baseline_name: str,
    *,
    execution: Execution = Execution(),
    **options: object,
) -> tuple[Report, GateResult]:
    """Accept today's state once (``gate --write-baseline``): the report, to be saved as
    ``baseline_name``, and the gate of it against itself, which lists every finding as
    accepted; the next run with that baseline fails only what is new or worse."""
    report = report_for(path, AnalysisOptions.from_kwargs(**options), execution=execution)
    return report, _gated(path, report, settings, report, baseline_name)


def _gated(
    path: str | os.PathLike[str],
    report: Report,
    settings: GateSettings,
    baseline: Report | None,
    baseline_name: str | None,
) -> GateResult:
    checks = evaluate(
        report, settings.rules, baseline=baseline, strip_prefix=settings.strip_prefix, exclude=settings.exclude
    )
    return GateResult(
        str(path), baseline_name, settings.config, settings.rules, checks, excluded_layers(report, settings.exclude)
    )
