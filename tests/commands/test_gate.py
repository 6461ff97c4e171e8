"""The gate: rules from pyproject and flags, checks on a report, exit codes and CI formats."""

import dataclasses
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from weightscope.checkpoint import write_safetensors
from weightscope.cli import app
from weightscope.commands.gate.command import evaluate
from weightscope.commands.gate.rules import (
    FAIL,
    MODEL,
    PASS,
    SKIP,
    WARN,
    GateRules,
    GateSettings,
    load_settings,
    settings_from,
)
from weightscope.errors import WeightscopeError
from weightscope.report import FitTrust, LayerResult, MPBulk, RankInfo, Report, Traps
from weightscope.summary import summarize

runner = CliRunner()

GITHUB_LINE = re.compile(r"^::(error|warning) file=[^,:]+,title=[^,:]+::\S.*$")


MP = MPBulk(sigma2=1.0, bulk_min=0.1, bulk_edge=3.0, spikes_above_edge=5, bulk_edge_ratio=0.5, ks=0.3)


def layer(name, alpha, *, status="ok", traps=None, rank=None, trusted=None, verdict=None, flags=(), kind="q", mp=MP):
    trust = None if trusted is None else FitTrust(True, True, trusted, 0.1, None, None)
    reasons = [f"reason for {flag}." for flag in flags]
    return LayerResult(
        name,
        kind,
        0,
        (128, 96),
        "F32",
        status,
        reason=None if status == "ok" else "weights contain 3 NaN and 0 Inf values",
        alpha=alpha,
        log_norm=1.0,
        log_spectral_norm=0.5,
        traps=traps,
        rank=rank,
        fit_trust=trust,
        verdict=verdict,
        mp=mp if status == "ok" else None,
        flags=list(flags),
        reasons=reasons,
        confidence="solid" if trusted else None,
    )


def report(layers, source="model.safetensors"):
    return Report(source, "safetensors", "0.1.0", {}, layers, [], summarize(layers, []))


def healthy(n=10, alpha=3.0):
    return [
        layer(f"blocks.{i}.q", alpha + 0.1 * i, trusted=True, traps=Traps(0, 1.0, 2.0), rank=RankInfo(96, 0.0, False))
        for i in range(n)
    ]


def statuses(checks, rule):
    return {c.layer: c.status for c in checks if c.rule == rule}


def save(tmp_path, rep, name="report.json"):
    path = tmp_path / name
    path.write_text(json.dumps(rep.to_dict()))
    return path


# --- checks on reports -----------------------------------------------------------------


def test_healthy_report_passes_every_rule():
    checks = evaluate(report(healthy()), GateRules())
    assert {c.status for c in checks} == {PASS}
    rules = {c.rule for c in checks}
    assert rules == {
        "layers",
        "alpha-range",
        "out-of-range",
        "alpha-outlier",
        "looks-untrained",
        "correlation-trap",
        "rank-collapse",
        "trusted-fits",
        "failed-layer",
    }
    per_layer = [c for c in checks if c.rule == "alpha-range"]
    assert len(per_layer) == 10


def test_out_of_range_layers_are_tolerated_up_to_the_share_then_each_fails():
    layers = healthy(10)
    layers[0] = layer("blocks.0.q", 6.5, trusted=True)
    one_out = evaluate(report(layers), GateRules(max_out_of_range_share=0.1, min_trusted_share=0, strict=False))
    assert statuses(one_out, "alpha-range")["blocks.0.q"] == WARN
    assert statuses(one_out, "out-of-range")[MODEL] == PASS
    layers[1] = layer("blocks.1.q", 1.5, trusted=True)
    two_out = evaluate(report(layers), GateRules(max_out_of_range_share=0.1, min_trusted_share=0, strict=False))
    assert statuses(two_out, "alpha-range")["blocks.0.q"] == FAIL
    assert statuses(two_out, "alpha-range")["blocks.1.q"] == FAIL
    assert statuses(two_out, "alpha-range")["blocks.2.q"] == PASS
    model = next(c for c in two_out if c.rule == "out-of-range")
    assert model.status == FAIL and model.value == pytest.approx(0.2)
    # the message says what it is: a tally against the allowance, and that it is too many
    assert model.message == "2 of 10 read alphas are outside the band, at most 1 may be (20%): too many"
    assert model.limit == "at most 1 layer(s) outside [2, 6] (share 0.1)"
    # a count limit tightens the share
    counted = evaluate(
        report([*healthy(10)[:9], layer("x", 7.0)]),
        GateRules(max_out_of_range_share=0.5, max_out_of_range_count=0, min_trusted_share=0, strict=False),
    )
    assert statuses(counted, "alpha-range")["x"] == FAIL


def test_alpha_bands_judge_alphas_with_a_reading_only():
    layers = [
        *healthy(10)[:9],
        layer("blocks.9.q", 9.0, trusted=False, traps=Traps(0, 1.0, 2.0), rank=RankInfo(96, 0.0, False)),
    ]
    checks = evaluate(report(layers), GateRules(max_out_of_range_share=0.0))
    assert "blocks.9.q" not in statuses(checks, "alpha-range") and "blocks.9.q" not in statuses(checks, "alpha-outlier")
    assert all(c.status == PASS for c in checks)


def test_one_broken_layer_is_a_robust_outlier_of_its_kind_even_in_a_shifted_band():
    """Every q layer sits at alpha 7–7.9 (a band the alpha rule tolerates here), one at 3:
    the MAD rule names it; with the kind's alphas near-equal the MAD floor keeps small
    differences from failing."""
    layers = [
        layer(f"blocks.{i}.q", 7.0 + 0.1 * i, trusted=True, traps=Traps(0, 1.0, 2.0), rank=RankInfo(96, 0.0, False))
        for i in range(10)
    ]
    layers[4] = layer("blocks.4.q", 3.0, trusted=True, traps=Traps(0, 1.0, 2.0), rank=RankInfo(96, 0.0, False))
    checks = evaluate(report(layers), GateRules(max_alpha=8.0))
    assert [c.layer for c in checks if c.status == FAIL] == ["blocks.4.q"]
    outlier = next(c for c in checks if c.rule == "alpha-outlier" and c.layer == "blocks.4.q")
    assert outlier.value > 6 and "median 7.4" in outlier.message
    same = [layer(f"blocks.{i}.q", 3.0 + 0.001 * i, trusted=True) for i in range(6)] + [
        layer("blocks.6.q", 3.3, trusted=True)
    ]
    assert all(c.status == PASS for c in evaluate(report(same), GateRules(strict=False)) if c.rule == "alpha-outlier")
    off = evaluate(report(layers), GateRules(max_alpha=8.0, max_alpha_deviation=None))
    assert not any(c.rule == "alpha-outlier" for c in off)


def test_flags_decide_traps_rank_collapse_and_random_like():
    layers = healthy(5)
    layers[0] = layer(
        "trap", 3.0, traps=Traps(2, 9.0, 2.0), rank=RankInfo(96, 0.0, False), trusted=True, flags=["correlation-trap"]
    )
    layers[1] = layer(
        "harmless-trap",
        3.0,
        traps=Traps(1, 9.0, 2.0),
        rank=RankInfo(96, 0.0, False),
        trusted=True,
        flags=["outsized-entries"],
    )
    layers[2] = layer(
        "collapsed",
        3.0,
        traps=Traps(0, 1.0, 2.0),
        rank=RankInfo(40, 0.58, True),
        trusted=False,
        flags=["rank-collapsed"],
    )
    layers[3] = layer("nan", None, status="failed")
    layers[4] = layer(
        "random", 12.0, traps=Traps(0, 1.0, 2.0), rank=RankInfo(96, 0.0, False), trusted=False, flags=["random-like"]
    )
    layers.append(
        layer(
            "untrained",
            12.0,
            traps=Traps(0, 1.0, 2.0),
            rank=RankInfo(96, 0.0, False),
            trusted=False,
            flags=["looks-untrained", "random-like"],
        )
    )
    checks = evaluate(report(layers), GateRules(min_trusted_share=0.9))
    assert statuses(checks, "correlation-trap") == {
        "trap": FAIL,
        "harmless-trap": PASS,
        "collapsed": PASS,
        "nan": PASS,
        "random": PASS,
        "untrained": PASS,
    }
    assert "reason for correlation-trap" in next(
        c.message for c in checks if c.rule == "correlation-trap" and c.layer == "trap"
    )
    assert statuses(checks, "rank-collapse")["collapsed"] == FAIL
    # a random-like spectrum alone is a warning: only looks-untrained fails by default
    assert statuses(checks, "looks-untrained") == {
        "trap": PASS,
        "harmless-trap": PASS,
        "collapsed": PASS,
        "nan": PASS,
        "random": PASS,
        "untrained": FAIL,
    }
    assert "random-like" not in {c.rule for c in checks}
    opted = evaluate(report(layers), GateRules(min_trusted_share=0.9, fail_on_random_like=True))
    # the opt-in rule fails the random-like spectrum; the untrained layer fails once, by its own rule
    assert statuses(opted, "random-like")["random"] == FAIL and "untrained" not in statuses(opted, "random-like")
    assert [c.layer for c in opted if c.status == FAIL and c.rule in ("random-like", "looks-untrained")] == [
        "untrained",
        "random",
    ]
    trust = next(c for c in checks if c.rule == "trusted-fits")
    assert trust.status == FAIL and trust.value == pytest.approx(2 / 5)
    assert statuses(checks, "failed-layer")["nan"] == FAIL
    assert statuses(evaluate(report(layers), GateRules(max_failed=1)), "failed-layer")["nan"] == WARN
    relaxed = evaluate(
        report(layers),
        GateRules(fail_on_traps=False, fail_on_rank_collapse=False, fail_on_untrained=False, min_trusted_share=0),
    )
    assert not {"correlation-trap", "rank-collapse", "looks-untrained", "random-like", "trusted-fits"} & {
        c.rule for c in relaxed
    }


def test_a_rule_that_could_not_be_checked_fails_under_strict_and_is_loud_without():
    """A CI recipe that analyses without --randomize must not pass the trap rule by
    skipping it silently ("30 skipped")."""
    layers = [layer("a", 3.0), layer("b", 4.0)]
    strict = evaluate(report(layers), GateRules())
    assert set(statuses(strict, "correlation-trap").values()) == {FAIL}
    assert "could not be checked" in next(c.message for c in strict if c.rule == "correlation-trap")
    lenient = evaluate(report(layers), GateRules(strict=False))
    assert set(statuses(lenient, "correlation-trap").values()) == {SKIP}
    assert set(statuses(lenient, "rank-collapse").values()) == {SKIP}
    assert statuses(lenient, "trusted-fits")[MODEL] == SKIP
    assert not [c for c in lenient if c.status == FAIL]
    from weightscope.commands.gate.rules import GateResult
    from weightscope.render.gate_views import verdict_line

    line = verdict_line(GateResult("m.json", None, None, GateRules(strict=False), lenient, ["pooler.dense.weight"]))
    assert "passed" in line and "NOT checked: 5 check(s)" in line and "1 layer(s) excluded" in line


def test_nothing_to_judge_fails_whatever_strict_says():
    for rules in (GateRules(), GateRules(strict=False)):
        checks = evaluate(report([]), rules)
        assert statuses(checks, "layers") == {MODEL: FAIL}
    checks = evaluate(report(healthy(3)), GateRules(strict=False), exclude=["blocks"])
    assert statuses(checks, "layers") == {MODEL: FAIL} and "match nothing" in checks[0].message


def untrained_pooler():
    """The layer sentence-transformers never train: random-like and looking like its initial draw."""
    return layer(
        "pooler.dense.weight",
        12.0,
        trusted=False,
        flags=["looks-untrained", "random-like"],
        traps=Traps(0, 1.0, 2.0),
        rank=RankInfo(96, 0.0, False),
    )


def test_excluded_layers_are_not_judged():
    layers = [*healthy(6), untrained_pooler()]
    assert statuses(evaluate(report(layers), GateRules()), "looks-untrained")["pooler.dense.weight"] == FAIL
    checks = evaluate(report(layers), GateRules(), exclude=[r"^pooler\."])
    assert all(c.status == PASS for c in checks) and all(c.layer != "pooler.dense.weight" for c in checks)
    assert "1 excluded by the gate config" in checks[0].message


def test_a_failed_layer_says_how_to_accept_it():
    """The FAIL line of a layer the gate fails (the pooler sentence-transformers never
    train) names the --ignore pattern that accepts it, and that pattern does."""
    layers = [*healthy(6), untrained_pooler()]
    failed = next(c for c in evaluate(report(layers), GateRules()) if c.status == FAIL)
    pattern = re.search(r"--ignore '([^']+)'", failed.message).group(1)
    assert pattern == r"^pooler\.dense\.weight$" and "[tool.weightscope.gate]" in failed.message
    assert all(c.status == PASS for c in evaluate(report(layers), GateRules(), exclude=[pattern]))


def test_alpha_outliers_count_alpha_own_error_and_never_pool_the_catch_all_kind():
    """english_g2 (a real OCR model): α = 2.32 ± 0.17 against 'other' layers of MAD
    0.086 was 7 robust sigmas out by the MAD alone. With √(MAD² + σ_α²) a layer known to
    ±0.17 is no outlier for lying 0.8 away; the same layer with a tight error still is;
    and the catch-all kind 'other' is no reference at all."""

    def member(i, alpha, sigma, kind="q"):
        return dataclasses.replace(layer(f"blocks.{i}.{kind}", alpha, trusted=True, kind=kind), sigma=sigma)

    alphas = [3.10, 3.11, 3.12, 3.13, 3.14, 3.15, 3.16]
    loose = [member(i, a, 0.05) for i, a in enumerate(alphas)] + [member(9, 2.32, 0.17)]
    deviation = next(
        c
        for c in evaluate(report(loose), GateRules(strict=False))
        if c.layer == "blocks.9.q" and c.rule == "alpha-outlier"
    )
    assert deviation.status == PASS and deviation.value < 6
    tight = [member(i, a, 0.05) for i, a in enumerate(alphas)] + [member(9, 2.32, 0.01)]
    assert statuses(evaluate(report(tight), GateRules(strict=False)), "alpha-outlier")["blocks.9.q"] == FAIL
    other = [member(i, a, 0.01, kind="other") for i, a in enumerate(alphas)] + [member(9, 2.32, 0.01, kind="other")]
    assert "alpha-outlier" not in {c.rule for c in evaluate(report(other), GateRules(strict=False))}


def test_baseline_limits_delta_alpha_per_layer_and_median():
    base = report(healthy(4, alpha=3.0))
    moved = report([layer(f"model.blocks.{i}.q", a) for i, a in enumerate([3.0, 3.1, 4.5, 3.3])])
    rules = GateRules(max_delta_alpha=1.0, max_delta_median=0.2, min_trusted_share=0)
    checks = evaluate(moved, rules, baseline=base, strip_prefix=("model.",))
    deltas = {c.layer: (c.status, c.value) for c in checks if c.rule == "delta-alpha"}
    assert deltas["model.blocks.2.q"][0] == FAIL and deltas["model.blocks.2.q"][1] == pytest.approx(1.3)
    assert [s for s, _ in deltas.values()].count(PASS) == 3
    median = next(c for c in checks if c.rule == "delta-median")
    assert median.status == PASS and median.value == pytest.approx(3.2 - 3.15)
    with pytest.raises(WeightscopeError, match="baseline"):
        evaluate(moved, rules)


# --- settings --------------------------------------------------------------------------


def test_settings_merge_config_then_flags():
    table = {
        "min-alpha": 1.5,
        "max_alpha": 7,
        "fail-on-traps": False,
        "max-alpha-deviation": float("inf"),
        "max-failed": 2.0,
        "exclude": ["^pooler"],
    }
    settings = settings_from(table, {"max-alpha": 6.5, "min-alpha": None, "exclude": ["^lm_head"]})
    rules = settings.rules
    assert (rules.min_alpha, rules.max_alpha, rules.fail_on_traps, rules.max_alpha_deviation, rules.max_failed) == (
        1.5,
        6.5,
        False,
        None,
        2,
    )
    assert (
        rules.fail_on_rank_collapse is True and rules.max_out_of_range_share == 1.0
    )  # defaults: out of band is a warning
    assert settings.exclude == ("^pooler", "^lm_head")


@pytest.mark.parametrize(
    "table, message",
    [
        ({"max-alpah": 6}, "unknown key"),
        ({"max-alpha": "six"}, "must be a number"),
        ({"fail-on-traps": 1}, "true or false"),
        ({"max-alpha": float("nan")}, "got NaN"),
        ({"exclude": "pooler"}, "list of strings"),
        ({"exclude": ["("]}, "not a regular expression"),
        ({"max-failed": 1.5}, "whole number"),
        ({"min-alpha": float("inf")}, "cannot be inf"),
        ({"min-alpha": 7}, "must be below"),
        ({"max-out-of-range-share": 1.5}, r"\[0, 1\]"),
        ({"max-delta-alpha": 1.0}, "baseline"),
        ({"strip-prefix": "model."}, "list of strings"),
    ],
)
def test_bad_settings_are_one_line_errors(table, message):
    with pytest.raises(WeightscopeError, match=message):
        settings_from(table, {})


def test_config_file_must_hold_the_table(tmp_path):
    (tmp_path / "gate.toml").write_text("[tool.other]\nx = 1\n")
    with pytest.raises(WeightscopeError, match=r"no \[tool.weightscope.gate\]"):
        load_settings({}, config=tmp_path / "gate.toml")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert load_settings({}, cwd=tmp_path) == GateSettings(GateRules())
    (tmp_path / "pyproject.toml").write_text("[tool.weightscope.gate\n")
    with pytest.raises(WeightscopeError, match="not valid TOML"):
        load_settings({}, cwd=tmp_path)


def test_config_baseline_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "gate.toml").write_text(
        '[tool.weightscope.gate]\nbaseline = "base.json"\nmax-delta-median = 0.5\n'
    )
    settings = load_settings({}, config=tmp_path / "ci" / "gate.toml")
    assert settings.baseline == str(tmp_path / "ci" / "base.json")
    assert load_settings({"baseline": "other.json"}, config=tmp_path / "ci" / "gate.toml").baseline == "other.json"


# --- the command -----------------------------------------------------------------------


def test_exit_codes_pass_fail_bad_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = save(tmp_path, report(healthy()))
    ok = runner.invoke(app, ["gate", str(path)])
    assert ok.exit_code == 0, ok.output
    assert "gate passed" in ok.stdout
    bad = runner.invoke(app, ["gate", str(path), "--max-alpha", "3.5", "--max-out-of-range-share", "0"])
    assert bad.exit_code == 1
    violations = [line for line in bad.stdout.splitlines() if line.startswith("FAIL")]
    assert len(violations) == 4 + 1  # blocks.6..9 above 3.5 (3.5 itself is in range), and the share
    assert "FAIL [alpha-range] blocks.9.q: alpha 3.9 is outside [2, 3.5]" in bad.stdout
    assert "(limit [2, 3.5])" in bad.stdout
    missing = runner.invoke(app, ["gate", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code == 2 and "error:" in missing.output
    contradictory = runner.invoke(app, ["gate", str(path), "--min-alpha", "7"])
    assert contradictory.exit_code == 2 and "must be below" in contradictory.output
    malformed = tmp_path / "bad.json"
    malformed.write_text('{"schema": "weightscope.report/2", "layers": 3}')
    assert runner.invoke(app, ["gate", str(malformed)]).exit_code == 2


def test_pyproject_config_is_honoured_and_flags_override_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = save(tmp_path, report(healthy()))
    (tmp_path / "pyproject.toml").write_text("[tool.weightscope.gate]\nmax-alpha = 3.5\nmax-out-of-range-share = 0.0\n")
    assert runner.invoke(app, ["gate", str(path)]).exit_code == 1
    assert runner.invoke(app, ["gate", str(path), "--max-alpha", "6"]).exit_code == 0
    (tmp_path / "pyproject.toml").write_text("[tool.weightscope.gate]\nmax-alpah = 3.5\n")
    broken = runner.invoke(app, ["gate", str(path)])
    assert broken.exit_code == 2 and "unknown key" in broken.output
    for text in ('tool = "x"\n', "[tool.weightscope.gate]\nmax-alpha = nan\n"):
        (tmp_path / "pyproject.toml").write_text(text)
        bad = runner.invoke(app, ["gate", str(path)])
        assert bad.exit_code == 2 and bad.output.startswith("error:") and len(bad.output.splitlines()) == 1, bad.output
    (tmp_path / "pyproject.toml").unlink()
    for flags in (["--set", "alpha_high=nan"], ["--max-alpha", "nan"]):
        nan_flag = runner.invoke(app, ["gate", str(path), *flags])
        assert nan_flag.exit_code == 2 and "NaN" in nan_flag.output, nan_flag.output
    (tmp_path / "strict.toml").write_text("[tool.weightscope.gate]\nmin-alpha = 3.4\nmax-out-of-range-share = 0.0\n")
    assert runner.invoke(app, ["gate", str(path), "--config", "strict.toml"]).exit_code == 1
    assert runner.invoke(app, ["gate", str(path), "--config", "missing.toml"]).exit_code == 2


def test_baseline_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = save(tmp_path, report(healthy(alpha=3.0)), "base.json")
    new = save(tmp_path, report(healthy(alpha=4.5)), "new.json")
    result = runner.invoke(app, ["gate", str(new), "--baseline", str(base), "--max-delta-alpha", "1", "-f", "json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert [c["layer"] for c in data["checks"] if c["status"] == "fail"] == [f"blocks.{i}.q" for i in range(10)]
    assert runner.invoke(app, ["gate", str(new), "--baseline", str(base)]).exit_code == 0  # nothing new or worse
    assert runner.invoke(app, ["gate", str(new), "--max-delta-alpha", "1"]).exit_code == 2  # no baseline


def test_formats_parse_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    layers = healthy(10)
    layers[3] = layer(
        "blocks.3.q",
        3.3,
        trusted=True,
        traps=Traps(1, 8.0, 2.0),
        rank=RankInfo(96, 0.0, False),
        flags=["correlation-trap"],
    )
    layers[5] = layer(
        "blocks.5.q",
        3.5,
        trusted=True,
        traps=Traps(0, 1.0, 2.0),
        rank=RankInfo(96, 0.0, False),
        flags=["looks-untrained", "random-like"],
    )
    path = save(tmp_path, report(layers), "a,b:c.json")

    as_json = runner.invoke(app, ["gate", str(path), "--format", "json"])
    assert as_json.exit_code == 1
    data = json.loads(as_json.stdout)
    assert data["schema"] == "weightscope.gate/2" and data["passed"] is False
    failed = {(c["rule"], c["layer"]) for c in data["checks"] if c["status"] == "fail"}
    assert failed == {("looks-untrained", "blocks.5.q"), ("correlation-trap", "blocks.3.q")}
    assert data["counts"]["warn"] == 0 and data["rules"]["max_alpha"] == 6.0

    github = runner.invoke(app, ["gate", str(path), "--format", "github"])
    lines = github.stdout.splitlines()
    annotations = [line for line in lines if line.startswith("::")]
    assert len(annotations) == 2 and all(GITHUB_LINE.match(line) for line in annotations)
    assert sum(line.startswith("::error") for line in annotations) == 2
    assert f"file={tmp_path}/a%2Cb%3Ac.json," in annotations[0]  # property escaping

    junit = runner.invoke(app, ["gate", str(path), "--format", "junit"])
    root = ET.fromstring(junit.stdout.encode())
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(data["checks"]) == int(root.get("tests"))
    failures = [(c.get("classname"), c.get("name")) for c in cases if c.find("failure") is not None]
    assert sorted(failures) == [
        ("weightscope.correlation-trap", "blocks.3.q"),
        ("weightscope.looks-untrained", "blocks.5.q"),
    ]
    assert root.get("failures") == "2"
    assert len({(c.get("classname"), c.get("name")) for c in cases}) == len(cases)  # one per rule × layer

    out = tmp_path / "gate.xml"
    to_file = runner.invoke(app, ["gate", str(path), "-o", str(out)])
    assert to_file.exit_code == 1 and ET.parse(out).getroot().tag == "testsuites"
    assert "gate FAILED" in to_file.output


def test_ci_formats_escape_what_their_syntax_reserves(tmp_path, monkeypatch):
    """Layer names come from a checkpoint's header: a newline, %, a colon, a comma or an
    ESC must neither break a GitHub workflow command nor make the JUnit XML invalid."""
    monkeypatch.chdir(tmp_path)
    nasty = "blocks.0.q\n::error::fake 100% \r\x1b[31m,x:y\x00"
    layers = [
        *healthy(4),
        layer(
            nasty,
            3.0,
            trusted=True,
            traps=Traps(0, 1.0, 2.0),
            rank=RankInfo(96, 0.0, False),
            flags=["looks-untrained", "random-like"],
        ),
    ]
    path = save(tmp_path, report(layers), "odd%name:1,2.json")
    github = runner.invoke(app, ["gate", str(path), "--format", "github"]).stdout
    annotations = [line for line in github.splitlines() if line.startswith("::")]
    assert len(annotations) == 1 and GITHUB_LINE.match(annotations[0])
    assert (
        "\\n\\x3a:error\\x3a:fake 100%25 \\r\\x1b[31m" in annotations[0] and "odd%25name%3A1%2C2.json" in annotations[0]
    )
    junit = runner.invoke(app, ["gate", str(path), "--format", "junit"]).stdout
    root = ET.fromstring(junit.encode())  # parses: no raw control characters left
    names = [case.get("name") for case in root.iter("testcase")]
    assert any("\\x1b[31m" in name and "\\x00" in name for name in names)


def test_a_checkpoint_and_its_saved_report_gate_alike(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)
    weights = {
        f"model.layers.{i}.mlp.up_proj.weight": rng.standard_t(3, size=(128, 96)).astype(np.float32) for i in range(4)
    }
    weights["model.layers.4.mlp.up_proj.weight"] = np.full((128, 96), np.nan, np.float32)
    checkpoint = tmp_path / "model.safetensors"
    write_safetensors(checkpoint, weights)
    # the gate randomises by default (trap rule); the saved report must have been made alike
    assert (
        runner.invoke(app, ["analyze", str(checkpoint), "--randomize", "-o", str(tmp_path / "r.json")]).exit_code == 0
    )
    flags = ["--format", "json", "--min-trusted-share", "0"]
    direct = runner.invoke(app, ["gate", str(checkpoint), *flags])
    saved = runner.invoke(app, ["gate", str(tmp_path / "r.json"), *flags])
    assert direct.exit_code == saved.exit_code == 1
    assert json.loads(direct.stdout)["checks"] == json.loads(saved.stdout)["checks"]
    failed = [c for c in json.loads(direct.stdout)["checks"] if c["rule"] == "failed-layer" and c["status"] == "fail"]
    assert [c["layer"] for c in failed] == ["model.layers.4.mlp.up_proj.weight"] and "NaN" in failed[0]["message"]


def test_severity_decides_what_the_default_gate_fails():
    """A finding is not a failure: out-of-band alphas (over-/under-trained: warnings in
    the vocabulary) only warn by default, however many; failure-severity findings fail."""
    from weightscope import vocabulary

    layers = [
        layer(f"blocks.{i}.q", 7.0 + 0.01 * i, trusted=True, traps=Traps(0, 1.0, 2.0), rank=RankInfo(96, 0.0, False))
        for i in range(10)
    ]
    checks = evaluate(report(layers), GateRules())
    assert {c.status for c in checks if c.rule == "alpha-range"} == {WARN} and not [
        c for c in checks if c.status == FAIL
    ]
    assert vocabulary.severity("under-trained") is vocabulary.Severity.WARNING
    rules = GateRules()
    for verdict, switch in (
        ("looks-untrained", rules.fail_on_untrained),
        ("random-like", rules.fail_on_random_like),
        ("correlation-trap", rules.fail_on_traps),
        ("rank-collapsed", rules.fail_on_rank_collapse),
    ):
        assert switch == (vocabulary.severity(verdict) is vocabulary.Severity.FAILURE)
