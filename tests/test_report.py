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
        layer(
            "c",
            1.5,
            fit_trust=FitTrust(True, False, False, 0.2, LikelihoodRatio(1.5, 0.03), None),
            verdict="no-reading",
            confidence=None,
            advice="alpha carries no information",
        ),
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
    # robust set: a (2.5), b (7.5), f (3.5); c has no reading, e has alpha > 8
    assert (s.robust_layers, s.excluded_no_reading, s.excluded_above_8) == (3, 1, 1)
    assert s.alpha_median == 3.5 and s.alpha_mad == 1.0
    assert s.alpha_median_by_kind == {"q": 3.5} and s.alpha_median_by_block == {"0": 3.5}
    assert (s.below_2, s.in_2_6, s.above_6) == (1, 2, 2)
    assert s.alpha_mean == pytest.approx((2.5 + 7.5 + 1.5 + 9.5 + 3.5) / 5)
    assert s.verdicts == {"no-reading": 1, "random-like": 1, "healthy": 1}


def test_from_dict_rejects_other_documents():
    with pytest.raises(WeightscopeError, match="schema"):
        Report.from_dict({"schema": "something/9"})
    with pytest.raises(WeightscopeError, match="not a weightscope report"):
        Report.from_dict([1, 2])


def test_a_report_2_document_still_loads_with_the_new_vocabulary():
    """Saved reports of the previous schema keep working in gate, compare and trend:
    ``untrusted-fit`` reads as ``no-reading`` (no reading, with its advice), a trusted
    healthy fit as a solid reading, and the summary's counts follow."""
    data = make_report().to_dict()
    data["schema"] = "weightscope.report/2"
    trust = {
        "tail_ok": True,
        "ks_ok": True,
        "stable": True,
        "alpha_spread": 0.1,
        "vs_lognormal": None,
        "vs_exponential": None,
        "trusted": True,
    }
    for entry in data["layers"]:
        del entry["confidence"], entry["advice"]
    data["layers"][0].update(verdict="untrusted-fit", flags=["bulk-edge-tail"], fit_trust=trust)
    data["layers"][5].update(fit_trust=trust)
    summary = data["summary"]
    summary["excluded_untrusted"] = summary.pop("excluded_no_reading")
    summary["verdicts"] = {"untrusted-fit": 1, "random-like": 1, "healthy": 1}
    report = Report.from_dict(data)
    first, healthy = report.layer("a"), report.layer("f")
    assert (first.verdict, first.confidence, first.has_reading) == ("no-reading", None, False)
    assert "no information" in first.advice
    assert (healthy.verdict, healthy.confidence, healthy.has_reading, healthy.advice) == ("healthy", "solid", True, "")
    assert report.summary.verdicts == {"no-reading": 1, "random-like": 1, "healthy": 1}
    assert report.schema == SCHEMA


def test_a_report_3_document_reads_its_old_names_as_weightscopes_own():
    """report/3 called weightscope's KS distance to the shuffled ESD ``rand_distance`` and
    its TW-margin MP edge ``mp.bulk_max`` (with ``num_spikes``, ``mp_softrank``,
    ``traps.bulk_max``): those names are WeightWatcher's columns now, so an old file's
    values land in the renamed fields and WeightWatcher's stay None."""
    data = make_report().to_dict()
    data["schema"] = "weightscope.report/3"
    first, second = data["layers"][0], data["layers"][1]
    first["mp"] = {"sigma2": 1.0, "bulk_min": 0.1, "bulk_max": 2.0, "num_spikes": 3, "mp_softrank": 0.4, "ks": 0.2}
    first["rand_distance"] = 0.31
    for key in ("bulk_max", "num_spikes", "mp_softrank", "shuffle_ks_distance"):
        first.pop(key, None)
    second["traps"] = {**{k: v for k, v in second["traps"].items() if k != "bulk_edge"}, "bulk_max": 2.5}
    report = Report.from_dict(data)
    layer_a, layer_b = report.layer("a"), report.layer("b")
    assert layer_a.mp == MPBulk(1.0, 0.1, 2.0, 3, 0.4, 0.2)
    assert (layer_a.shuffle_ks_distance, layer_a.rand_distance) == (0.31, None)
    assert (layer_a.bulk_max, layer_a.num_spikes, layer_a.mp_softrank) == (None, None, None)
    assert layer_b.traps.bulk_edge == 2.5 and report.schema == SCHEMA


def test_a_recorded_rand_distance_max_threshold_reads_as_shuffle_ks_max():
    data = make_report().to_dict()
    data["schema"] = "weightscope.report/3"
    data["options"] = {"thresholds": {"rand_distance_max": 0.07}}
    assert Report.from_dict(data).thresholds.shuffle_ks_max == 0.07
