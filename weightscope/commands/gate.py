"""A CI gate on a checkpoint's health: `weightscope gate PATH`.

Rules come from ``[tool.weightscope.gate]`` in pyproject.toml (of the current directory,
or a ``--config`` file; read by `weightscope.config.read_tool_section`, the one config
reader) and from command-line flags generated from the rules' fields (`GateRules`),
which override the file. Every rule is checked per layer (or once for the model) and each
check is one `Check`: pass, warn (out of range but within the allowed share), fail, or
skip (the report lacks what the rule needs, e.g. traps without ``--randomize``). A
skipped rule fails the gate under ``strict`` (the default), so a gate never passes on
checks it did not make; zero layers left to judge always fails. The CLI maps a failure
to exit code 1, and bad input or config to 2.

What the rules judge, and why (measured on all-MiniLM-L6-v2, a well-trained public
model the default gate must pass, and on broken copies of it it must fail):
- alpha bands read trusted fits only: an untrusted fit's alpha is not a measurement.
- traps fail by impact (the layer's verdict is correlation-trap: alpha moves or leaves
  the band without the trap entries), not by existence; BERT's outlier dimension is a
  real trap that moves nothing.
- random-like layers, collapsed ranks and failed analyses fail.
- `max_alpha_deviation`: a layer whose alpha lies more than that many robust sigmas
  (1.4826·MAD) from the median alpha of the model's layers of the same kind: an
  outlier against the model itself, which catches one broken layer even when the whole
  band is shifted.
- ``exclude``: layers (regexes) the rules skip, e.g. the pooler sentence-transformers
  never train.

The gate reads a `Report`, so `analyze -o report.json` once and `gate report.json` costs
no recompute.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from weightscope.commands.compare import compare_reports
from weightscope.commands.sources import report_for
from weightscope.config import Thresholds, coerce, read_tool_section
from weightscope.errors import WeightscopeError
from weightscope.execution.plan import Execution
from weightscope.options import AnalysisOptions
from weightscope.patterns import compile_pattern
from weightscope.report import LayerResult, Report, json_document

SCHEMA = "weightscope.gate/2"

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"

#: The model-level pseudo layer name of rules that are checked once per model.
MODEL = "(model)"

_NEEDS_BASELINE = "max-delta-alpha / max-delta-median need a baseline report (--baseline)"

# Robust standard deviation of a Gaussian from its median absolute deviation.
_MAD_TO_SIGMA = 1.4826


def _rule(help: str, flag: str | None = None) -> dict[str, str]:
    """A rule field's metadata: its --help text and, for a switch, its flag pair (the
    CLI generates one flag per rule from these, `weightscope.cli.gate`)."""
    return {"help": help, **({"flag": flag} if flag else {})}


@dataclass(frozen=True)
class GateRules:
    """The limits a checkpoint must meet. Config keys are the field names in kebab case;
    each field is also a command-line flag (``metadata`` holds its help)."""

    # The band's defaults are the thresholds' (`weightscope.config`): one definition.
    min_alpha: float = field(default=Thresholds.alpha_low, metadata=_rule("Lower end of the healthy alpha band, for trusted fits."))
    max_alpha: float = field(default=Thresholds.alpha_high, metadata=_rule("Upper end of the healthy alpha band, for trusted fits."))
    max_out_of_range_share: float = field(default=0.1, metadata=_rule(
        "Largest share of trusted fits allowed outside the band (warnings); beyond it each one fails."))
    max_out_of_range_count: int | None = field(default=None, metadata=_rule(
        "Largest number of trusted fits allowed outside the band (unset: no count limit)."))
    max_alpha_deviation: float | None = field(default=6.0, metadata=_rule(
        "Fail a layer whose alpha lies more robust sigmas (MAD) than this from the median alpha of its kind (inf: off)."))
    fail_on_traps: bool = field(default=True, metadata=_rule(
        "Fail layers whose correlation trap changes alpha's reading (verdict correlation-trap).",
        "--fail-on-traps/--allow-traps"))
    fail_on_rank_collapse: bool = field(default=True, metadata=_rule(
        "Fail layers whose rank collapsed.", "--fail-on-rank-collapse/--allow-rank-collapse"))
    fail_on_random_like: bool = field(default=True, metadata=_rule(
        "Fail layers whose spectrum is random-like (nothing learned).", "--fail-on-random-like/--allow-random-like"))
    min_trusted_share: float = field(default=0.3, metadata=_rule(
        "Least share of layers whose power-law fit is trusted (0: off)."))
    max_failed: int = field(default=0, metadata=_rule("Layers allowed to fail analysis, e.g. NaN weights."))
    max_delta_alpha: float | None = field(default=None, metadata=_rule("Largest |Δalpha| of a layer against --baseline."))
    max_delta_median: float | None = field(default=None, metadata=_rule("Largest |Δ median alpha| against --baseline."))
    strict: bool = field(default=True, metadata=_rule(
        "Fail when a rule could not be checked (its input is missing from the report).", "--strict/--no-strict"))

    def __post_init__(self) -> None:
        if not self.min_alpha < self.max_alpha:
            raise WeightscopeError(f"min-alpha ({self.min_alpha}) must be below max-alpha ({self.max_alpha})")
        for name in ("max_out_of_range_share", "min_trusted_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise WeightscopeError(f"{_key(name)} is a share and must lie in [0, 1], got {getattr(self, name)}")
        for name in ("max_out_of_range_count", "max_failed", "max_delta_alpha", "max_delta_median", "max_alpha_deviation"):
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
        if self.baseline is not None and not self.rules.needs_baseline:
            raise WeightscopeError("a baseline was given but no baseline rule: set max-delta-alpha or max-delta-median")
        if self.rules.needs_baseline and self.baseline is None:
            raise WeightscopeError(_NEEDS_BASELINE)
        for pattern in self.exclude:
            compile_pattern(pattern, "gate exclude")


@dataclass(frozen=True)
class Check:
    """One rule checked on one layer (or the model): the value, the limit, the outcome."""

    rule: str
    layer: str
    status: str
    value: float | None
    limit: str
    message: str


@dataclass(frozen=True)
class GateResult:
    source: str
    baseline: str | None
    config: str | None
    rules: GateRules
    checks: list[Check]
    excluded: list[str] = field(default_factory=list)
    schema: str = SCHEMA

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def violations(self) -> list[Check]:
        return [check for check in self.checks if check.status == FAIL]

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(check.status for check in self.checks)
        return {status: counted.get(status, 0) for status in (PASS, WARN, FAIL, SKIP)}

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


def _per_layer(
    rule: str, layers: Iterable[LayerResult], judge: Callable[[LayerResult], tuple[str, float | None, str]], limit: str
) -> list[Check]:
    checks = []
    for layer in layers:
        status, value, message = judge(layer)
        checks.append(Check(rule, layer.name, status, value, limit, message))
    return checks


def _trusted(layer: LayerResult) -> bool:
    """A fitted layer whose fit was judged trustworthy (or not judged at all: an old or
    hand-made report without fit_trust is read as before)."""
    return layer.alpha is not None and (layer.fit_trust is None or layer.fit_trust.trusted)


def _alpha_checks(layers: list[LayerResult], rules: GateRules) -> list[Check]:
    judged = [layer for layer in layers if _trusted(layer)]
    outside = [layer for layer in judged if not rules.min_alpha <= (layer.alpha or 0.0) <= rules.max_alpha]
    allowed = math.floor(rules.max_out_of_range_share * len(judged) + 1e-9)
    if rules.max_out_of_range_count is not None:
        allowed = min(allowed, rules.max_out_of_range_count)
    too_many = len(outside) > allowed
    band = f"[{_g(rules.min_alpha)}, {_g(rules.max_alpha)}]"
    tally = f"{len(outside)} of {len(judged)} trusted fits are outside the band, at most {allowed} may be"

    def in_range(layer: LayerResult) -> tuple[str, float | None, str]:
        alpha = layer.alpha
        assert alpha is not None
        if rules.min_alpha <= alpha <= rules.max_alpha:
            return PASS, alpha, f"alpha {_g(alpha)} is within {band}"
        if too_many:
            return FAIL, alpha, f"alpha {_g(alpha)} is outside {band}, and too many are: {tally}"
        return WARN, alpha, f"alpha {_g(alpha)} is outside {band}; tolerated: {tally}"

    checks = _per_layer("alpha-range", judged, in_range, band)
    share = len(outside) / len(judged) if judged else 0.0
    limit = f"at most {allowed} layer(s) outside {band} (share {_g(rules.max_out_of_range_share)}" + (
        f", count {rules.max_out_of_range_count})" if rules.max_out_of_range_count is not None else ")"
    )
    verdict = "too many" if too_many else "within the allowance"
    checks.append(Check("out-of-range", MODEL, FAIL if too_many else PASS, share, limit,
                        f"{tally} ({share:.0%}): {verdict}"))
    return checks


def _deviation_checks(layers: list[LayerResult], limit_sigmas: float) -> list[Check]:
    """Robust outliers against the model's own layers of the same kind.

    The reference is every fitted layer of the kind (median, 1.4826·MAD), so one broken
    layer cannot hide by pulling the reference; only trusted fits are judged (an
    untrusted alpha is not a measurement: on all-MiniLM-L6-v2 the untrusted fits of
    block 5's query and key lie 8.7 and 13.4 robust sigmas out). Kinds with fewer than
    4 fitted layers have no reference and are not judged. A MAD below 0.05 is raised to 0.05: near-equal
    alphas would otherwise make any small difference a huge deviation.
    """
    by_kind: dict[str, list[LayerResult]] = defaultdict(list)
    for layer in layers:
        if layer.alpha is not None:
            by_kind[layer.kind].append(layer)
    checks = []
    limit = f"within {_g(limit_sigmas)} robust sigmas of the kind's median alpha"
    for kind, members in by_kind.items():
        if len(members) < _MIN_KIND_LAYERS:
            continue
        alphas = np.array([layer.alpha for layer in members], dtype=float)
        median = float(np.median(alphas))
        sigma = _MAD_TO_SIGMA * max(float(np.median(np.abs(alphas - median))), _MIN_MAD)
        for layer, alpha in zip(members, alphas):
            if not _trusted(layer):
                continue
            deviation = abs(alpha - median) / sigma
            status = FAIL if deviation > limit_sigmas else PASS
            message = (f"alpha {_g(alpha)} is {deviation:.1f} robust sigmas from the median {_g(median)} "
                       f"of the {len(members)} '{kind}' layers")
            checks.append(Check("alpha-outlier", layer.name, status, float(deviation), limit, message))
    return checks


_MIN_KIND_LAYERS = 4
_MIN_MAD = 0.05


def _flag_check(rule: str, flag: str, what: str, needs: Callable[[LayerResult], object]) -> Callable[[LayerResult], tuple[str, float | None, str]]:
    """A per-layer check that fails where the layer carries ``flag``; skipped where the
    input the flag needs (``needs``) was not computed."""

    def judge(layer: LayerResult) -> tuple[str, float | None, str]:
        if not layer.ok:
            return PASS, None, "not analysed (see failed-layer)"
        if needs(layer) is None:
            return SKIP, None, f"{rule} was not computed for this layer"
        if flag in layer.flags:
            reason = next((r for f, r in zip(layer.flags, layer.reasons[-len(layer.flags):]) if f == flag), what)
            return FAIL, 1.0, reason
        return PASS, 0.0, f"no {rule}"

    return judge


def _trust_check(layers: list[LayerResult], minimum: float) -> Check:
    judged = [layer for layer in layers if layer.ok and layer.fit_trust is not None]
    limit = f"≥ {_g(minimum)}"
    if not judged:
        return Check("trusted-fits", MODEL, SKIP, None, limit, "fit trust was not computed")
    share = sum(layer.fit_trust.trusted for layer in judged if layer.fit_trust) / len(judged)
    status = PASS if share >= minimum else FAIL
    return Check("trusted-fits", MODEL, status, share, limit, f"{share:.0%} of {len(judged)} fits are trusted")


def _failed_checks(layers: list[LayerResult], max_failed: int) -> list[Check]:
    failed = sum(not layer.ok for layer in layers)

    def analysed(layer: LayerResult) -> tuple[str, float | None, str]:
        if layer.ok:
            return PASS, None, "analysed"
        status = FAIL if failed > max_failed else WARN
        return status, None, f"analysis failed: {layer.reason} ({failed} failed, {max_failed} allowed)"

    return _per_layer("failed-layer", layers, analysed, f"≤ {max_failed} failed layers")


def _baseline_checks(report: Report, baseline: Report, rules: GateRules, strip_prefix: Iterable[str]) -> list[Check]:
    comparison = compare_reports(baseline, report, strip_prefix=strip_prefix)
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
            checks.append(Check("delta-alpha", change.name_b, status, delta, limit, message))
    if rules.max_delta_median is not None:
        limit = f"|Δmedian alpha| ≤ {_g(rules.max_delta_median)}"
        before, after = baseline.summary.alpha_median, report.summary.alpha_median
        if before is None or after is None:
            checks.append(Check("delta-median", MODEL, SKIP, None, limit, "no median alpha on one side"))
        else:
            delta = after - before
            status = PASS if abs(delta) <= rules.max_delta_median else FAIL
            message = f"median alpha moved {delta:+.4g} from the baseline ({_g(before)} → {_g(after)})"
            checks.append(Check("delta-median", MODEL, status, delta, limit, message))
    return checks


def excluded_layers(report: Report, patterns: Iterable[str]) -> list[str]:
    """Names of the report's layers that match any of the gate's exclude regexes."""
    compiled = [compile_pattern(pattern, "gate exclude") for pattern in patterns]
    return [layer.name for layer in report.layers if any(p.search(layer.name) for p in compiled)]


def evaluate(
    report: Report,
    rules: GateRules,
    *,
    baseline: Report | None = None,
    strip_prefix: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> list[Check]:
    """Every check of ``rules`` on ``report`` (less the ``exclude``d layers), in rule order.

    Under ``rules.strict`` a skipped check (its input missing) becomes a failure that
    says so; with no layer left to judge the gate fails whatever ``strict`` says.
    """
    if rules.needs_baseline and baseline is None:
        raise WeightscopeError(_NEEDS_BASELINE)
    skipped = set(excluded_layers(report, exclude))
    layers = [layer for layer in report.layers if layer.name not in skipped]
    checks = [Check("layers", MODEL, PASS if layers else FAIL, float(len(layers)), "≥ 1 layer",
                    f"{len(layers)} layer(s) to judge" + (f" ({len(skipped)} excluded by the gate config)" if skipped else "")
                    if layers else "no layer to judge: the selection or the exclude patterns match nothing, so nothing was checked")]
    if not layers:
        return checks
    checks += _alpha_checks(layers, rules)
    if rules.max_alpha_deviation is not None:
        checks += _deviation_checks(layers, rules.max_alpha_deviation)
    if rules.fail_on_random_like:
        checks += _per_layer("random-like", layers, _flag_check("random-like", "random-like", "random-like spectrum",
                                                                lambda layer: layer.mp), "not random-like")
    if rules.fail_on_traps:
        checks += _per_layer("correlation-trap", layers, _flag_check("correlation-trap", "correlation-trap",
                                                                     "a correlation trap that moves alpha",
                                                                     lambda layer: layer.traps), "no trap that moves alpha")
    if rules.fail_on_rank_collapse:
        checks += _per_layer("rank-collapse", layers, _flag_check("rank-collapse", "rank-collapsed", "rank collapsed",
                                                                  lambda layer: layer.rank), "not collapsed")
    if rules.min_trusted_share > 0:
        checks.append(_trust_check(layers, rules.min_trusted_share))
    checks += _failed_checks(layers, rules.max_failed)
    if baseline is not None and rules.needs_baseline:
        checks += _baseline_checks(report, baseline, rules, strip_prefix)
    if rules.strict:
        checks = [dataclasses.replace(check, status=FAIL, message=f"{check.message}; --strict fails a rule that "
                                      "could not be checked (analyse with --randomize, or pass --no-strict)")
                  if check.status == SKIP else check for check in checks]
    return checks


def gate(
    path: str | os.PathLike[str], settings: GateSettings, *, execution: Execution = Execution(), **options: object
) -> GateResult:
    """Check a checkpoint or saved report against ``settings``; ``options`` and
    ``execution`` as for `analyze`."""
    opts = AnalysisOptions.from_kwargs(**options)
    baseline = report_for(settings.baseline, opts, execution=execution) if settings.baseline is not None else None
    report = report_for(path, opts, execution=execution)
    checks = evaluate(report, settings.rules, baseline=baseline, strip_prefix=settings.strip_prefix,
                      exclude=settings.exclude)
    return GateResult(str(path), settings.baseline, settings.config, settings.rules, checks,
                      excluded_layers(report, settings.exclude))
