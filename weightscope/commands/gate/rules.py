"""The gate's rules and settings (`GateRules`, `GateSettings`, from
``[tool.weightscope.gate]`` and flags), the outcome of one rule on one layer (`Check`), the
gate's result, and what a failure says (`advice`, `accept_hint`)."""

from __future__ import annotations

import os
import re
import typing
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weightscope import vocabulary
from weightscope.config import Thresholds, coerce, read_tool_section
from weightscope.errors import WeightscopeError
from weightscope.patterns import compile_pattern

SCHEMA = "weightscope.gate/2"

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
#: A failure the baseline has too (and no worse): listed, not failing.
ACCEPTED = "accepted"

#: The model-level pseudo layer name of rules that are checked once per model.
MODEL = "(model)"

NEEDS_BASELINE = "max-delta-alpha / max-delta-median need a baseline report (--baseline)"


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
            raise WeightscopeError(NEEDS_BASELINE)
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
        from weightscope.report import json_document  # numpy: not for `gate --help`

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


# --- what a failure says -----------------------------------------------------------------


def number(value: float) -> str:
    return f"{value:.4g}"


def advice(name: str) -> str:
    """The one-line fix of a layer finding: its advice in `weightscope.vocabulary` (none
    for a name the vocabulary does not know)."""
    record = vocabulary.finding(name)
    return record.advice if record is not None else ""


#: The fix of the `layers` rule (nothing left to judge), shared by the model and the adapter gate;
#: each other rule that is not a layer finding says its own fix beside its check.
FIX_LAYERS = "Check --include/--exclude and the gate's exclude patterns: together they left no layer to judge."


def accept_hint(name: str) -> str:
    """How to accept a layer the gate fails, e.g. the pooler sentence-transformers never
    train: the exact --ignore flag, or the config's exclude (`re.escape` only escapes,
    and RE2, which matches the patterns, reads its escapes)."""
    pattern = "^" + re.escape(name) + "$"
    return f"To accept it: --ignore '{pattern}', or exclude = ['{pattern}'] in [tool.weightscope.gate]."
