"""The gate against a baseline: only what is new or worse fails, what the baseline has is
listed as accepted, names line up, and today's state can be accepted once."""

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.commands.test_gate import healthy, layer, report, save
from weightscope.checkpoint import write_safetensors
from weightscope.cli import app
from weightscope.commands.gate.command import evaluate
from weightscope.commands.gate.rules import ACCEPTED, FAIL, PASS, GateRules, advice
from weightscope.errors import WeightscopeError
from weightscope.report import RankInfo, Traps

runner = CliRunner()

UNTRAINED = {"verdict": "looks-untrained", "flags": ["looks-untrained", "random-like"]}


def with_pooler(layers, **pooler):
    """A model whose untrained pooler looks untrained, as all-MiniLM-L6-v2's does."""
    extra = layer(
        "pooler.dense.weight",
        9.0,
        kind="pooler",
        traps=Traps(0, 1.0, 2.0),
        rank=RankInfo(96, 0.0, False),
        **{**UNTRAINED, **pooler},
    )
    return [*layers, extra]


def by_rule(checks, rule):
    return {c.layer: c for c in checks if c.rule == rule}


def test_a_finding_the_baseline_has_is_accepted_and_listed_a_new_one_fails():
    model = report(with_pooler(healthy()))
    alone = evaluate(model, GateRules())
    assert by_rule(alone, "looks-untrained")["pooler.dense.weight"].status == FAIL
    checks = evaluate(model, GateRules(), baseline=model)
    assert [c.status for c in checks].count(FAIL) == 0
    accepted = [c for c in checks if c.status == ACCEPTED]
    assert [(c.rule, c.layer) for c in accepted] == [("looks-untrained", "pooler.dense.weight")]
    assert "the baseline has it too" in accepted[0].message
    broken = with_pooler(healthy())
    broken[3] = dataclasses.replace(broken[3], **UNTRAINED)
    checks = evaluate(report(broken), GateRules(), baseline=model)
    failed = [c for c in checks if c.status == FAIL]
    assert [(c.rule, c.layer) for c in failed] == [("looks-untrained", "blocks.3.q")]
    assert failed[0].fix == advice("looks-untrained") != ""
    assert by_rule(checks, "looks-untrained")["pooler.dense.weight"].status == ACCEPTED


def test_an_accepted_outlier_fails_again_once_it_moves_further_out():
    layers = healthy(10)
    rules = GateRules(max_alpha=9.0)
    layers[4] = dataclasses.replace(layers[4], alpha=7.0)
    base = report(layers)
    outlier = by_rule(evaluate(base, rules), "alpha-outlier")["blocks.4.q"]
    assert outlier.status == FAIL and outlier.value == pytest.approx(7.8, abs=0.1)

    def moved_to(alpha):
        moved = [dataclasses.replace(x, alpha=alpha) if x.name == "blocks.4.q" else x for x in layers]
        return by_rule(evaluate(report(moved), rules, baseline=base), "alpha-outlier")["blocks.4.q"]

    assert moved_to(7.1).status == ACCEPTED  # within one robust sigma of where it was
    further = moved_to(8.0)
    assert further.status == FAIL and further.value > outlier.value + 1


def test_no_layer_to_judge_is_never_accepted():
    model = report(healthy())
    checks = evaluate(model, GateRules(), baseline=model, exclude=["."])
    assert [(c.rule, c.status) for c in checks] == [("layers", FAIL)]


def test_a_new_trap_fails_against_the_baseline_even_when_it_moves_nothing():
    base = report(healthy())
    trapped = healthy()
    trapped[2] = dataclasses.replace(trapped[2], traps=Traps(1, 9.0, 2.0))
    checks = evaluate(report(trapped), GateRules(), baseline=base)
    assert by_rule(checks, "new-trap")["blocks.2.q"].status == FAIL
    assert by_rule(checks, "correlation-trap")["blocks.2.q"].status == PASS  # no verdict: alpha unmoved
    assert {c.status for c in evaluate(report(trapped), GateRules(fail_on_traps=False), baseline=base)} == {PASS}


def test_names_line_up_with_a_task_heads_prefix_and_a_disjoint_baseline_is_an_error():
    base = report(with_pooler(healthy()))
    head = report([dataclasses.replace(x, name=f"bert.{x.name}") for x in with_pooler(healthy())])
    checks = evaluate(head, GateRules(), baseline=base)
    assert by_rule(checks, "looks-untrained")["bert.pooler.dense.weight"].status == ACCEPTED
    other = report([dataclasses.replace(x, name=f"other{i}") for i, x in enumerate(healthy())])
    with pytest.raises(WeightscopeError, match="--strip-prefix"):
        evaluate(other, GateRules(), baseline=base)


def tiny_model(path, seed=0, broken=None):
    """Eight heavy-tailed layers (a planted low-rank signal in noise) and an untrained
    (standard normal) pooler; ``broken`` names a layer replaced by noise of the same scale."""
    rng = np.random.default_rng(seed)
    weights = {}
    for i in range(8):
        w = rng.standard_normal((160, 96)) + rng.standard_normal((160, 5)) @ (
            rng.standard_normal((5, 96)) * np.array([[9.0], [7.0], [5.0], [4.0], [3.0]])
        )
        weights[f"blocks.{i}.q.weight"] = w.astype(np.float32)
    weights["pooler.weight"] = rng.standard_normal((160, 96)).astype(np.float32)
    if broken is not None:
        weights[broken] = (rng.standard_normal((160, 96)) * weights[broken].std()).astype(np.float32)
    write_safetensors(path, weights)
    return path


def test_write_baseline_accepts_today_once_then_only_new_breaks_fail(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tiny_model(tmp_path / "model.safetensors")
    first = runner.invoke(app, ["gate", str(model)])
    assert first.exit_code == 1 and "FAIL [looks-untrained] pooler.weight" in first.stdout
    assert "--write-baseline" in first.stdout and "Fix: " in first.stdout
    accept = runner.invoke(app, ["gate", str(model), "--write-baseline", "baseline.json"])
    assert accept.exit_code == 0, accept.output
    assert "ACCEPTED [looks-untrained] pooler.weight" in accept.stdout
    assert json.loads((tmp_path / "baseline.json").read_text())["schema"].startswith("weightscope.report")
    again = runner.invoke(app, ["gate", str(model), "--baseline", "baseline.json"])
    assert again.exit_code == 0 and "ACCEPTED [looks-untrained] pooler.weight" in again.stdout
    github = runner.invoke(app, ["gate", str(model), "--baseline", "baseline.json", "-f", "github"]).stdout
    assert any(line.startswith("::notice ") and "pooler.weight" in line for line in github.splitlines())
    checks = json.loads(runner.invoke(app, ["gate", str(model), "--baseline", "baseline.json", "-f", "json"]).stdout)[
        "checks"
    ]
    assert {(c["rule"], c["layer"]) for c in checks if c["status"] == "accepted"} >= {
        ("looks-untrained", "pooler.weight")
    }
    broken = tiny_model(tmp_path / "broken.safetensors", broken="blocks.5.q.weight")
    red = runner.invoke(app, ["gate", str(broken), "--baseline", "baseline.json"])
    assert red.exit_code == 1
    fails = [line for line in red.stdout.splitlines() if line.startswith("FAIL")]
    assert fails and all("blocks.5.q.weight" in line and "Fix: " in line for line in fails)
    assert (
        runner.invoke(app, ["gate", str(model), "--baseline", "baseline.json", "--include", "nomatch"]).exit_code == 1
    )


def test_write_baseline_never_writes_over_an_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tiny_model(tmp_path / "model.safetensors")
    before = model.read_bytes()
    result = runner.invoke(app, ["gate", str(model), "--write-baseline", str(model)])
    assert result.exit_code == 2 and "input" in result.output
    assert model.read_bytes() == before
    base = save(tmp_path, report(healthy()), "base.json")
    kept = base.read_text()
    assert (
        runner.invoke(app, ["gate", str(base), "--baseline", str(base), "--write-baseline", str(base)]).exit_code == 2
    )
    assert base.read_text() == kept
