"""`weightscope gate`: `evaluate` runs the rules on a report, `gate` and `accept` are the
command (the package docstring says what the rules judge and why)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

from weightscope.checkpoint.names import align_names
from weightscope.commands.compare import compare_checkpoints, compare_reports
from weightscope.commands.gate.adapter import adapter_checks
from weightscope.commands.gate.baseline import against_baseline, delta_checks, new_traps
from weightscope.commands.gate.layers import rule_checks
from weightscope.commands.gate.rules import (
    FAIL,
    NEEDS_BASELINE,
    PASS,
    SKIP,
    Check,
    GateResult,
    GateRules,
    GateSettings,
)
from weightscope.commands.sources import report_for
from weightscope.errors import WeightscopeError
from weightscope.execution.plan import Execution
from weightscope.options import AnalysisOptions
from weightscope.patterns import compile_pattern
from weightscope.report import Report

#: Fix of a rule that could not be checked, under ``strict``.
_FIX_STRICT = "Analyse with --randomize (the input this rule needs), or pass --no-strict."


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

    With a ``baseline`` (the same model before a change, or the report written by
    ``gate --write-baseline``) the same rules run on it, its layers are paired with the
    report's (`weightscope.checkpoint.names.align_names`: fewer than half paired is an
    error), and a failure it has too, no worse, is ACCEPTED; a new trap fails, and the
    delta rules compare the two. Under ``rules.strict`` a skipped check (its input
    missing) becomes a failure that says so; with no layer left to judge the gate fails
    whatever ``strict`` says or the baseline has.
    """
    if rules.needs_baseline and baseline is None:
        raise WeightscopeError(NEEDS_BASELINE)
    exclude = tuple(exclude)
    skipped = set(excluded_layers(report, exclude))
    checks = rule_checks(report, rules, skipped)
    judged = checks[0].status == PASS  # the "layers" check: something is left to judge
    if baseline is not None and judged:
        alignment = align_names(
            [layer.name for layer in baseline.layers], [layer.name for layer in report.layers], strip_prefix
        )
        alignment.check()
        before = rule_checks(baseline, rules, set(excluded_layers(baseline, exclude)))
        checks = against_baseline(
            checks, before, alignment.pairs, {layer.name: layer for layer in report.layers}, rules
        )
        if rules.fail_on_traps:
            checks += new_traps(report, baseline, alignment.pairs, skipped)
        if rules.needs_baseline:
            checks += delta_checks(
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
