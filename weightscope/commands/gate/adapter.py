"""The rules for a LoRA adapter: what an update can break (its rank, its size against the
adapter's median, dominance), and each merged layer's reading against the base layer's."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from weightscope import vocabulary
from weightscope.commands.compare import Comparison
from weightscope.commands.gate.rules import (
    FAIL,
    FIX_LAYERS,
    MODEL,
    PASS,
    WARN,
    Check,
    GateRules,
    advice,
    number,
)
from weightscope.patterns import compile_pattern
from weightscope.stats.update import UpdateStats

#: Fixes of the update rules.
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
        limit = f"{what} ≤ {number(rules.max_update_ratio)} × the adapter's median"
        for update, size in zip(updates, sizes):
            ratio = float(size / median) if math.isfinite(size) else math.inf
            status = FAIL if not ratio <= rules.max_update_ratio else PASS
            message = (
                f"{what} = {number(size)} is {number(ratio)} × the median {number(median)} of the adapter's {len(updates)} modules"
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
        limit = f"≤ {number(rules.max_update_share)} of {squared}"
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
            FIX_LAYERS,
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
