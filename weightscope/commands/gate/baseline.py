"""A gate against a baseline: only what is new or worse fails. A failure the baseline has
too, no worse, is accepted; new traps and the deltas against the baseline are judged."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from weightscope.commands.compare import Comparison
from weightscope.commands.gate.rules import (
    ACCEPTED,
    FAIL,
    MODEL,
    PASS,
    SKIP,
    WARN,
    Check,
    GateRules,
    advice,
    number,
)
from weightscope.report import LayerResult, Report

#: Fix of the delta rules.
_FIX_DELTA = "See what the update did to this layer with weightscope compare BASELINE MODEL; raise the limit if the change is intended."


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


def new_traps(report: Report, baseline: Report, pairs: list[tuple[str, str, str]], skipped: set[str]) -> list[Check]:
    """Layers whose trap entries are new against the baseline: a count that grew is a
    few outsized weights that were not there, whether or not they move alpha yet."""
    before = {layer.name: layer for layer in baseline.layers}
    now = {layer.name: layer for layer in report.layers}
    checks = []
    for _, name_a, name_b in pairs:
        if name_b in skipped:
            continue
        traps, prior_traps = now[name_b].traps, before[name_a].traps
        if traps is None or prior_traps is None:
            continue
        count, prior = traps.count, prior_traps.count
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


def against_baseline(
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


def delta_checks(comparison: Comparison, report: Report, baseline: Report, rules: GateRules) -> list[Check]:
    checks = []
    if rules.max_delta_alpha is not None:
        limit = f"|Δalpha| ≤ {number(rules.max_delta_alpha)}"
        for change in comparison.layers:
            delta = change.delta_alpha
            if delta is None:
                checks.append(Check("delta-alpha", change.name_b, SKIP, None, limit, "alpha missing on one side"))
                continue
            status = PASS if abs(delta) <= rules.max_delta_alpha else FAIL
            message = f"alpha moved {delta:+.4g} from the baseline ({number(change.alpha_a or 0.0)} → {number(change.alpha_b or 0.0)})"
            checks.append(Check("delta-alpha", change.name_b, status, delta, limit, message, _FIX_DELTA))
    if rules.max_delta_median is not None:
        limit = f"|Δmedian alpha| ≤ {number(rules.max_delta_median)}"
        before, after = baseline.summary.alpha_median, report.summary.alpha_median
        if before is None or after is None:
            checks.append(Check("delta-median", MODEL, SKIP, None, limit, "no median alpha on one side"))
        else:
            delta = after - before
            status = PASS if abs(delta) <= rules.max_delta_median else FAIL
            message = f"median alpha moved {delta:+.4g} from the baseline ({number(before)} → {number(after)})"
            checks.append(Check("delta-median", MODEL, status, delta, limit, message, _FIX_DELTA))
    return checks
