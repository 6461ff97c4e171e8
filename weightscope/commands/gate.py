"""A CI gate on a checkpoint's health: `weightscope gate PATH`.

Rules come from `[tool.weightscope.gate]` in pyproject.toml (of the current directory, or
a ``--config`` file) and from command-line flags, which override the file. Every rule is
checked per layer (or once for the model) and each check is one `Check`: pass, warn
(out of range but within the allowed share), fail, or skip (the report lacks what the rule
needs, e.g. no diagnostics). The gate fails when any check fails; the CLI maps that to
exit code 1, and bad input or config to 2.

The gate reads a `Report`, so `analyze -o report.json` once and `gate report.json` costs
no recompute.
"""

from __future__ import annotations

import math
import os
import typing
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightscope.commands.compare import compare_reports
from weightscope.commands.sources import report_for
from weightscope.errors import WeightscopeError
from weightscope.options import AnalysisOptions
from weightscope.report import LayerResult, Report, json_document

SCHEMA = "weightscope.gate/1"

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"

#: The model-level pseudo layer name of rules that are checked once per model.
MODEL = "(model)"

_NEEDS_BASELINE = "max-delta-alpha / max-delta-median need a baseline report (--baseline)"


@dataclass(frozen=True)
class GateRules:
    """The limits a checkpoint must meet. Config keys are the field names in kebab case.

    - ``min_alpha``/``max_alpha``: the healthy alpha range (HTSR: 2–6). A few layers out
      of range are normal; up to ``max_out_of_range_share`` of the layers (and, when set,
      ``max_out_of_range_count``) are tolerated (warnings), beyond that each is a failure.
    - ``random_alpha``: alpha above this is a random-like layer, a failure never
      tolerated (None: off).
    - ``no_traps``/``no_rank_collapse``: a correlation trap / rank collapse fails the layer.
    - ``min_trusted_share``: the share of layers whose fit is trusted (0: off).
    - ``max_failed``: layers that could not be analysed at all (NaN weights, …).
    - ``max_delta_alpha``/``max_delta_median``: with a baseline report, the largest
      |Δalpha| of a layer and of the median alpha (None: off).
    """

    min_alpha: float = 2.0
    max_alpha: float = 6.0
    random_alpha: float | None = 8.0
    max_out_of_range_share: float = 0.1
    max_out_of_range_count: int | None = None
    no_traps: bool = True
    no_rank_collapse: bool = True
    min_trusted_share: float = 0.5
    max_failed: int = 0
    max_delta_alpha: float | None = None
    max_delta_median: float | None = None

    def __post_init__(self) -> None:
        if not self.min_alpha < self.max_alpha:
            raise WeightscopeError(f"min-alpha ({self.min_alpha}) must be below max-alpha ({self.max_alpha})")
        for name in ("max_out_of_range_share", "min_trusted_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise WeightscopeError(f"{_key(name)} is a share and must lie in [0, 1], got {getattr(self, name)}")
        for name in ("max_out_of_range_count", "max_failed", "max_delta_alpha", "max_delta_median"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise WeightscopeError(f"{_key(name)} must be ≥ 0, got {value}")

    @property
    def needs_baseline(self) -> bool:
        return self.max_delta_alpha is not None or self.max_delta_median is not None


@dataclass(frozen=True)
class GateSettings:
    """Rules plus the inputs they need: where they came from, baseline, name prefixes."""

    rules: GateRules
    baseline: str | None = None
    strip_prefix: tuple[str, ...] = ()
    config: str | None = None

    def __post_init__(self) -> None:
        if self.baseline is not None and not self.rules.needs_baseline:
            raise WeightscopeError("a baseline was given but no baseline rule: set max-delta-alpha or max-delta-median")
        if self.rules.needs_baseline and self.baseline is None:
            raise WeightscopeError(_NEEDS_BASELINE)


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

_RULE_HINTS = typing.get_type_hints(GateRules)
_SETTING_KEYS = ("baseline", "strip-prefix")


def _key(field_name: str) -> str:
    return field_name.replace("_", "-")


def _coerce(key: str, hint: Any, value: Any, where: str) -> Any:
    """A config or flag value checked against the rule's type; inf turns an optional limit off."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else hint
    if base is bool:
        if isinstance(value, bool):
            return value
        raise WeightscopeError(f"{where}: {key} must be true or false, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise WeightscopeError(f"{where}: {key} must be a number, got {value!r}")
    if math.isinf(value):
        if optional and value > 0:
            return None
        raise WeightscopeError(f"{where}: {key} cannot be {value} (inf only turns an optional limit off)")
    if base is int:
        if not float(value).is_integer():
            raise WeightscopeError(f"{where}: {key} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise WeightscopeError("reading gate config needs Python ≥ 3.11 or the 'tomli' package") from None
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise WeightscopeError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise WeightscopeError(f"{path} is not valid TOML: {exc}") from None


def find_config_table(config: Path | None, cwd: Path) -> tuple[dict[str, Any], Path | None]:
    """The `[tool.weightscope.gate]` table of ``config`` (required there) or of ./pyproject.toml."""
    path = config if config is not None else cwd / "pyproject.toml"
    if config is None and not path.is_file():
        return {}, None
    table: Any = _load_toml(path)
    for part in ("tool", "weightscope", "gate"):
        table = table.get(part) if isinstance(table, dict) else None
    if table is None:
        if config is not None:
            raise WeightscopeError(f"{path} has no [tool.weightscope.gate] table")
        return {}, None
    if not isinstance(table, dict):
        raise WeightscopeError(f"{path}: [tool.weightscope.gate] must be a table")
    return table, path


def settings_from(
    table: Mapping[str, Any], overrides: Mapping[str, Any], *, config: Path | None = None
) -> GateSettings:
    """Merge a config table and command-line overrides (kebab-case keys; flags win).

    A baseline path in the config file is relative to the file's directory.
    """
    where = f"{config} [tool.weightscope.gate]" if config is not None else "gate rules"
    known = {_key(name) for name in _RULE_HINTS} | set(_SETTING_KEYS)
    unknown = sorted(_key(k) for k in table if _key(k) not in known)
    if unknown:
        raise WeightscopeError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    merged = {_key(k): v for k, v in table.items()}
    baseline = merged.pop("baseline", None)
    if baseline is not None:
        if not isinstance(baseline, str):
            raise WeightscopeError(f"{where}: baseline must be a path string, got {baseline!r}")
        baseline = str(config.parent / baseline) if config is not None else baseline
    prefixes = merged.pop("strip-prefix", [])
    if isinstance(prefixes, str) or not all(isinstance(p, str) for p in prefixes):
        raise WeightscopeError(f"{where}: strip-prefix must be a list of strings, got {prefixes!r}")
    rules = {}
    for name, hint in _RULE_HINTS.items():
        key = _key(name)
        if key in overrides and overrides[key] is not None:
            rules[name] = _coerce(key, hint, overrides[key], "command line")
        elif key in merged:
            rules[name] = _coerce(key, hint, merged[key], where)
    return GateSettings(
        rules=GateRules(**rules),
        baseline=overrides.get("baseline") or baseline,
        strip_prefix=tuple(overrides.get("strip-prefix") or prefixes),
        config=str(config) if config is not None else None,
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


def _alpha_checks(report: Report, rules: GateRules) -> list[Check]:
    fitted = [layer for layer in report.layers if layer.alpha is not None]
    outside = [layer for layer in fitted if not rules.min_alpha <= (layer.alpha or 0.0) <= rules.max_alpha]
    share = len(outside) / len(fitted) if fitted else 0.0
    allowed = math.floor(rules.max_out_of_range_share * len(fitted) + 1e-9)
    if rules.max_out_of_range_count is not None:
        allowed = min(allowed, rules.max_out_of_range_count)
    too_many = len(outside) > allowed
    band = f"[{_g(rules.min_alpha)}, {_g(rules.max_alpha)}]"

    def in_range(layer: LayerResult) -> tuple[str, float | None, str]:
        alpha = layer.alpha
        assert alpha is not None
        if rules.min_alpha <= alpha <= rules.max_alpha:
            return PASS, alpha, f"alpha {_g(alpha)} is within {band}"
        status = FAIL if too_many else WARN
        return status, alpha, f"alpha {_g(alpha)} is outside {band} ({len(outside)} of {len(fitted)} layers, {allowed} allowed)"

    checks = _per_layer("alpha-range", fitted, in_range, band)
    limit = f"≤ {allowed} layers (share ≤ {_g(rules.max_out_of_range_share)}" + (
        f", count ≤ {rules.max_out_of_range_count})" if rules.max_out_of_range_count is not None else ")"
    )
    checks.append(
        Check(
            "out-of-range",
            MODEL,
            FAIL if too_many else PASS,
            share,
            limit,
            f"{len(outside)} of {len(fitted)} layers ({share:.0%}) have alpha outside {band}; {allowed} allowed",
        )
    )
    if rules.random_alpha is not None:
        ceiling = rules.random_alpha

        def not_random(layer: LayerResult) -> tuple[str, float | None, str]:
            alpha = layer.alpha or 0.0
            if alpha > ceiling:
                return FAIL, alpha, f"alpha {_g(alpha)} > {_g(ceiling)}: the layer looks random (untrained)"
            return PASS, alpha, f"alpha {_g(alpha)} ≤ {_g(ceiling)}"

        checks += _per_layer("alpha-random", fitted, not_random, f"≤ {_g(ceiling)}")
    return checks


def _trap_check(layer: LayerResult) -> tuple[str, float | None, str]:
    if layer.traps is None:
        return SKIP, None, "correlation traps were not computed for this layer"
    if layer.traps.count > 0:
        return FAIL, float(layer.traps.count), f"{layer.traps.count} correlation trap(s): a few large entries dominate the spectrum"
    return PASS, 0.0, "no correlation trap"


def _rank_check(layer: LayerResult) -> tuple[str, float | None, str]:
    if layer.rank is None:
        return SKIP, None, "rank was not computed for this layer"
    if layer.rank.collapsed:
        return FAIL, layer.rank.rank_loss, f"rank collapsed: {layer.rank.rank_loss:.1%} of eigenvalues at numerical zero"
    return PASS, layer.rank.rank_loss, f"numerical rank {layer.rank.numerical_rank}"


def _trust_check(report: Report, minimum: float) -> Check:
    judged = [layer for layer in report.layers if layer.ok and layer.fit_trust is not None]
    limit = f"≥ {_g(minimum)}"
    if not judged:
        return Check("trusted-fits", MODEL, SKIP, None, limit, "fit trust was not computed")
    share = sum(layer.fit_trust.trusted for layer in judged if layer.fit_trust) / len(judged)
    status = PASS if share >= minimum else FAIL
    return Check("trusted-fits", MODEL, status, share, limit, f"{share:.0%} of {len(judged)} fits are trusted")


def _failed_checks(report: Report, max_failed: int) -> list[Check]:
    failed = sum(not layer.ok for layer in report.layers)

    def analysed(layer: LayerResult) -> tuple[str, float | None, str]:
        if layer.ok:
            return PASS, None, "analysed"
        status = FAIL if failed > max_failed else WARN
        return status, None, f"analysis failed: {layer.reason} ({failed} failed, {max_failed} allowed)"

    return _per_layer("failed-layer", report.layers, analysed, f"≤ {max_failed} failed layers")


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


def evaluate(
    report: Report, rules: GateRules, *, baseline: Report | None = None, strip_prefix: Iterable[str] = ()
) -> list[Check]:
    """Every check of ``rules`` on ``report``, in rule order."""
    if rules.needs_baseline and baseline is None:
        raise WeightscopeError(_NEEDS_BASELINE)
    checks = _alpha_checks(report, rules)
    if rules.no_traps:
        checks += _per_layer("correlation-trap", report.layers, _trap_check, "0 traps")
    if rules.no_rank_collapse:
        checks += _per_layer("rank-collapse", report.layers, _rank_check, "not collapsed")
    if rules.min_trusted_share > 0:
        checks.append(_trust_check(report, rules.min_trusted_share))
    checks += _failed_checks(report, rules.max_failed)
    if baseline is not None and rules.needs_baseline:
        checks += _baseline_checks(report, baseline, rules, strip_prefix)
    return checks


def gate(path: str | os.PathLike[str], settings: GateSettings, **options: object) -> GateResult:
    """Check a checkpoint or saved report against ``settings``; ``options`` as for `analyze`."""
    opts = AnalysisOptions.from_kwargs(**options)
    baseline = report_for(settings.baseline, opts) if settings.baseline is not None else None
    report = report_for(path, opts)
    checks = evaluate(report, settings.rules, baseline=baseline, strip_prefix=settings.strip_prefix)
    return GateResult(str(path), settings.baseline, settings.config, settings.rules, checks)
