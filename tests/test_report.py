"""The report's JSON round-trips and its summary is robust."""

import json

import pytest

from weightscope.errors import WeightscopeError
from weightscope.report import (
    SCHEMA,
    FitTrust,
    LayerResult,
    LikelihoodRatio,
    MPBulk,
    Report,
    SkippedTensor,
    TrapEntry,
    Traps,
)
from weightscope.summary import summarize


def layer(name, alpha, status="ok", **kw):
    return LayerResult(name, "q", 0, (128, 64), "BF16", status, alpha=alpha, **kw)


def make_report():
    layers = [
        layer("a", 2.5, mp=MPBulk(1.0, 0.1, 2.0, 3, 0.4), flags=["x"], reasons=["why"]),
        layer("b", 7.5, traps=Traps(1, 5.0, 2.0, [TrapEntry(3, 4, 9.5, 40.0)])),
        layer("c", 1.5, fit_trust=FitTrust(True, False, True, 0.2, LikelihoodRatio(1.5, 0.03), None, False)),
        LayerResult("d", "o", 1, (64, 64), "F32", "failed", reason="weights contain 1 NaN and 0 Inf values"),
        layer("e", 9.5, verdict="random-like"),
        layer("f", 3.5, verdict="healthy"),
    ]
    skipped = [SkippedTensor("bias", (64,), "F32", "1-D tensor (bias or norm)")]
    return Report(
        "m.safetensors", "safetensors", "0.1.0", {"min_evals": 50}, layers, skipped, summarize(layers, skipped)
    )


def test_json_round_trip_is_exact():
    report = make_report()
    text = json.dumps(report.to_dict())
    data = json.loads(text)
    assert data["schema"] == SCHEMA and next(iter(data)) == "schema"
    assert Report.from_dict(data) == report


def test_summary_counts_and_robust_figures():
    s = make_report().summary
    assert (s.analysed, s.failed, s.skipped) == (5, 1, 1)
    # robust set: a (2.5), b (7.5), f (3.5); c is untrusted, e has alpha > 8
    assert (s.robust_layers, s.excluded_untrusted, s.excluded_above_8) == (3, 1, 1)
    assert s.alpha_median == 3.5 and s.alpha_mad == 1.0
    assert s.alpha_median_by_kind == {"q": 3.5} and s.alpha_median_by_block == {"0": 3.5}
    assert (s.below_2, s.in_2_6, s.above_6) == (1, 2, 2)
    assert s.alpha_mean == pytest.approx((2.5 + 7.5 + 1.5 + 9.5 + 3.5) / 5)
    assert s.verdicts == {"random-like": 1, "healthy": 1}


def test_from_dict_rejects_other_documents():
    with pytest.raises(WeightscopeError, match="schema"):
        Report.from_dict({"schema": "something/9"})
    with pytest.raises(WeightscopeError, match="not a weightscope report"):
        Report.from_dict([1, 2])
