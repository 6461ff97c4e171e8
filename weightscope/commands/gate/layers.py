"""The rules on a report's layers: alpha band and outliers against the layer's kind, the
flag rules (random-like, traps, rank collapse), trusted fits and failed layers; `rule_checks`
runs them all (and the adapter rules on a report's LoRA updates)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable

import numpy as np

from weightscope.checkpoint.layers import OTHER_KIND
from weightscope.commands.gate.adapter import Update, update_checks
from weightscope.commands.gate.rules import (
    FAIL,
    FIX_LAYERS,
    MODEL,
    PASS,
    SKIP,
    WARN,
    Check,
    GateRules,
    accept_hint,
    advice,
    number,
)
from weightscope.report import LayerResult, Report
from weightscope.stats.outliers import MAD_TO_SIGMA

#: Fixes of the model-level rules (each says once what to do when it fails).
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
    band = f"[{number(rules.min_alpha)}, {number(rules.max_alpha)}]"
    tally = f"{len(outside)} of {len(judged)} read alphas are outside the band, at most {allowed} may be"

    def in_range(layer: LayerResult) -> tuple[str, float | None, str]:
        alpha = layer.alpha
        assert alpha is not None
        if rules.min_alpha <= alpha <= rules.max_alpha:
            return PASS, alpha, f"alpha {number(alpha)} is within {band}"
        if too_many:
            return FAIL, alpha, f"alpha {number(alpha)} is outside {band}, and too many are: {tally}"
        return WARN, alpha, f"alpha {number(alpha)} is outside {band}; tolerated: {tally}"

    checks = _per_layer(
        "alpha-range", judged, in_range, band, lambda layer: advice(_band_finding(layer.alpha or 0.0, rules))
    )
    share = len(outside) / len(judged) if judged else 0.0
    limit = f"at most {allowed} layer(s) outside {band} (share {number(rules.max_out_of_range_share)}" + (
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
    limit = f"within {number(limit_sigmas)} robust sigmas (MAD and alpha's own error) of the kind's median alpha"
    for kind, members in by_kind.items():
        if len(members) < _MIN_KIND_LAYERS:
            continue
        alphas = np.array([layer.alpha for layer in members], dtype=float)
        median = float(np.median(alphas))
        spread = MAD_TO_SIGMA * max(float(np.median(np.abs(alphas - median))), _MIN_MAD)
        for layer, alpha in zip(members, alphas):
            if not layer.has_reading:
                continue
            sigma = math.hypot(spread, layer.sigma or 0.0)
            deviation = abs(alpha - median) / sigma
            status = FAIL if deviation > limit_sigmas else PASS
            message = (
                f"alpha {number(alpha)} ± {number(layer.sigma or 0.0)} is {deviation:.1f} robust sigmas from the median "
                f"{number(median)} of the {len(members)} '{kind}' layers"
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


def _trust_check(layers: list[LayerResult], minimum: float) -> Check:
    judged = [layer for layer in layers if layer.ok and layer.alpha is not None and layer.fit_trust is not None]
    limit = f"≥ {number(minimum)}"
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


def rule_checks(report: Report, rules: GateRules, skipped: set[str]) -> list[Check]:
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
            FIX_LAYERS,
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
