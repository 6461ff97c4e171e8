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

The modules of this package: `rules` (rules, settings, `Check`, the result), `layers` (the
rules on a report's layers), `adapter` (LoRA updates), `baseline` (new or worse); here,
`evaluate` runs them and `gate` / `accept` are the command.
"""

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
