"""Trend over a run: step ordering, the cache, and the three per-layer flags."""

import csv
import dataclasses
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import weightscope.execution.cache as cache_module
from weightscope.analysis.pipeline import analyze
from weightscope.checkpoint import open_checkpoint, write_safetensors
from weightscope.checkpoint.runs import RunEntry, compile_step_pattern, expand_run, order_run
from weightscope.cli import app
from weightscope.commands.trend import (
    FLAG_FALL_THEN_RISE,
    FLAG_JUMP,
    FLAG_STUCK,
    find_fall_then_rise,
    find_jumps,
    is_stuck_untrained,
    trend,
    trend_from_reports,
)
from weightscope.errors import WeightscopeError
from weightscope.execution.plan import Execution
from weightscope.report import LayerResult, Report
from weightscope.summary import summarize

runner = CliRunner()
DEFAULT = compile_step_pattern(None)
EXAMPLE_RUN = Path(__file__).resolve().parents[2] / "examples" / "runs" / "tiny-lm"


def power_law_matrix(alpha, seed, n=128, m=96):
    """A matrix whose ESD is exactly the m quantiles of a Pareto density λ^(−alpha) on [1, ∞)."""
    rng = np.random.default_rng(seed)
    q = (np.arange(m) + 0.5) / m
    evals = (1 - q) ** (-1 / (alpha - 1))
    u, _ = np.linalg.qr(rng.standard_normal((n, m)))
    v, _ = np.linalg.qr(rng.standard_normal((m, m)))
    return ((u * np.sqrt(n * evals)) @ v.T).astype(np.float32)


# --- ordering --------------------------------------------------------------------------


def test_order_by_parsed_step_with_natural_sort_fallback(tmp_path):
    names = ["step-1000", "checkpoint-50", "step-200", "step_2000.safetensors", "global_step3000", "final"]
    ordered = order_run([tmp_path / name for name in names], DEFAULT)
    assert [e.path.name for e in ordered] == [
        "checkpoint-50",
        "step-200",
        "step-1000",
        "step_2000.safetensors",
        "global_step3000",
        "final",
    ]
    assert [e.step for e in ordered] == [50, 200, 1000, 2000, 3000, None]
    natural = order_run([tmp_path / n for n in ("run-b10", "run-b9", "run-a11")], DEFAULT)
    assert [e.path.name for e in natural] == ["run-a11", "run-b9", "run-b10"]


def test_step_from_the_parent_directory_and_a_custom_regex(tmp_path):
    files = [tmp_path / f"step-{s}" / "model.safetensors" for s in (300, 20)]
    assert [e.step for e in order_run(files, DEFAULT)] == [20, 300]
    custom = order_run([tmp_path / "ck-3k", tmp_path / "ck-12k"], compile_step_pattern(r"(\d+)k"))
    assert [e.step for e in custom] == [3, 12]


def test_bad_step_patterns_and_repeated_steps_are_errors(tmp_path):
    with pytest.raises(WeightscopeError, match="not a regular expression weightscope can run"):
        compile_step_pattern("(")
    with pytest.raises(WeightscopeError, match="not a whole number"):
        order_run([tmp_path / "step-x"], compile_step_pattern(r"step-(\w)"))
    with pytest.raises(WeightscopeError, match="step 50 is parsed from both"):
        order_run([tmp_path / "step-50", tmp_path / "checkpoint-50"], DEFAULT)


def test_run_directory_expands_to_its_checkpoints(tmp_path):
    tiny = {"w": np.zeros((2, 2), np.float32)}
    (tmp_path / "step-10").mkdir()
    write_safetensors(tmp_path / "step-10" / "model.safetensors", tiny)
    write_safetensors(tmp_path / "step_20.safetensors", tiny)
    (tmp_path / "notes").mkdir()
    (tmp_path / ".cache").mkdir()
    (tmp_path / "readme.txt").write_text("x")
    assert sorted(p.name for p in expand_run([tmp_path], DEFAULT)) == ["step-10", "step_20.safetensors"]
    assert expand_run([tmp_path / "step-10"], DEFAULT) == [tmp_path / "step-10"]  # one checkpoint stays one
    with pytest.raises(WeightscopeError, match="no checkpoints"):
        expand_run([tmp_path / "notes"], DEFAULT)
    with pytest.raises(WeightscopeError, match="no such file"):
        expand_run([tmp_path / "missing"], DEFAULT)


def test_flat_run_of_step_files_versus_a_sharded_model(tmp_path):
    tiny = {"w": np.zeros((2, 2), np.float32)}
    flat, sharded = tmp_path / "flat", tmp_path / "sharded"
    flat.mkdir()
    sharded.mkdir()
    for step in (1000, 2000):
        write_safetensors(flat / f"step_{step}.safetensors", tiny)
    for shard in (1, 2):
        write_safetensors(sharded / f"model-0000{shard}-of-00002.safetensors", {f"w{shard}": tiny["w"]})
    assert [p.name for p in expand_run([flat], DEFAULT)] == ["step_1000.safetensors", "step_2000.safetensors"]
    assert expand_run([sharded], DEFAULT) == [sharded]


def _write_step(path: Path, suffix: str, seed: int) -> None:
    """One step of a run in a format other than safetensors: GGUF (F32) or npz."""
    rng = np.random.default_rng(seed)
    weights = {
        "model.layers.0.mlp.up_proj.weight": rng.standard_normal((128, 64)).astype(np.float32),
        "model.layers.0.mlp.down_proj.weight": rng.standard_normal((64, 128)).astype(np.float32),
    }
    if suffix == ".gguf":
        pytest.importorskip("gguf")
        from tests.gguf_fixtures import write_gguf

        write_gguf(path, weights, "F32", heads=1, kv_heads=1, blocks=1)
    else:
        np.savez(path, **weights)


@pytest.mark.parametrize("suffix", [".gguf", ".npz"])
def test_a_run_of_gguf_or_npz_steps_is_a_run(tmp_path, suffix):
    """Every format analyze reads is a step of a run: files named by step, and step
    directories each holding one such file."""
    files, dirs = tmp_path / "files", tmp_path / "dirs"
    files.mkdir()
    for step in (200, 100):
        _write_step(files / f"step-{step}{suffix}", suffix, step)
        (dirs / f"checkpoint-{step}").mkdir(parents=True)
        _write_step(dirs / f"checkpoint-{step}" / f"model{suffix}", suffix, step)
    assert [p.name for p in expand_run([files], DEFAULT)] == [f"step-100{suffix}", f"step-200{suffix}"]
    assert [p.name for p in expand_run([dirs], DEFAULT)] == ["checkpoint-100", "checkpoint-200"]
    for run in (files, dirs):
        result = trend([run], execution=Execution(cache=False, workers=1))
        assert [point.step for point in result.checkpoints] == [100, 200]
        assert {point.origin for point in result.checkpoints} == {"analysed"}
        assert len(result.layers) == 2 and all(
            all(alpha is not None for alpha in series.alphas) for series in result.layers
        ), result.layers


# --- flags -----------------------------------------------------------------------------


def test_jump_is_far_outside_the_layers_usual_changes():
    steps = [0, 1, 2, 3, 4, 5]
    (jump,) = find_jumps([4.0, 3.9, 3.85, 3.7, 6.5, 6.4], steps, jump_k=5.0, min_swing=0.3)
    assert (jump.at, jump.delta) == (4, pytest.approx(2.8))
    # a steady drift is the layer's usual change, not a jump
    assert find_jumps([6.0, 5.0, 4.0, 3.0, 2.0], steps, jump_k=5.0, min_swing=0.3) == []
    # changes below min_swing never count, however regular the rest
    assert find_jumps([3.0, 3.0, 3.0, 3.2], steps, jump_k=5.0, min_swing=0.3) == []
    # a pause in a steady fall stands out from the median change but is no jump
    assert find_jumps([6.0, 5.0, 4.0, 3.0, 2.0, 1.95], steps, jump_k=5.0, min_swing=0.3) == []
    # missing alphas are skipped: the jump is between the known neighbours
    (gap,) = find_jumps([3.0, 3.05, None, 3.1, 5.0, 5.05], steps, jump_k=5.0, min_swing=0.3)
    assert gap.at == 4


def test_fall_then_rise_needs_both_swings_around_an_inner_low():
    dip = find_fall_then_rise([4.5, 3.5, 2.5, 3.5, 4.5], [10, 20, 30, 40, 50], min_swing=0.3)
    assert (dip.low_at, dip.low_step, dip.fall, dip.rise) == (2, 30, pytest.approx(2.0), pytest.approx(2.0))
    assert find_fall_then_rise([5.0, 4.0, 3.0, 2.9, 3.0], [1, 2, 3, 4, 5], min_swing=0.3) is None
    assert find_fall_then_rise([3.0, 4.0, 5.0], [1, 2, 3], min_swing=0.3) is None


def test_stuck_random_like_uses_verdicts_else_alpha():
    assert is_stuck_untrained([8.0, 7.5, 9.0], [None, None, None])
    assert not is_stuck_untrained([8.0, 5.5, 9.0], [None, None, None])
    assert is_stuck_untrained([5.0, 5.0], ["random-like", "under-trained"])
    assert not is_stuck_untrained([8.0, 8.0], ["random-like", "healthy"])
    assert not is_stuck_untrained([8.0, None], [None, None])  # one judged checkpoint is no trend


def _report(alphas):
    layers = [LayerResult(name, "q", 0, (128, 96), "F32", "ok", alpha=a, log_norm=1.0) for name, a in alphas.items()]
    return Report("x", "safetensors", "0.1.0", {}, layers, [], summarize(layers, []))


def test_trend_from_reports_aligns_layers_by_name():
    run = [
        (RunEntry(Path("step-1"), 1), _report({"a": 3.0, "b": 8.0}), "report"),
        (RunEntry(Path("step-2"), 2), _report({"a": 3.1, "c": 4.0}), "report"),
    ]
    result = trend_from_reports(run)
    assert [(s.name, s.alphas) for s in result.layers] == [("a", [3.0, 3.1]), ("b", [8.0, None]), ("c", [None, 4.0])]
    assert result.checkpoints[0].verdict_shares == {"unjudged": 1.0}


# --- whole runs ------------------------------------------------------------------------

#: Planted alpha per layer and step: a jump at step 400, a dip, a layer that stays random.
PLANTED = {
    "blocks.0.attn.q_proj.weight": [3.0, 3.1, 3.2, 5.2, 5.3],
    "blocks.1.mlp.up_proj.weight": [4.6, 3.6, 2.6, 3.6, 4.6],
    "blocks.2.mlp.down_proj.weight": [8.0, 8.2, 8.1, 8.3, 8.0],
    "blocks.3.attn.o_proj.weight": [4.0, 3.9, 3.8, 3.7, 3.6],
}
STEPS = [100, 200, 300, 400, 500]


def write_run(directory):
    """Checkpoints named so that only parsed steps order them right (checkpoint-100 < step-200 …)."""
    names = ["checkpoint-100", "step-200", "step_300.safetensors", "global_step400", "step-500"]
    for index, name in enumerate(names):
        tensors = {layer: power_law_matrix(alphas[index], seed=i) for i, (layer, alphas) in enumerate(PLANTED.items())}
        if name.endswith(".safetensors"):
            write_safetensors(directory / name, tensors)
        else:
            (directory / name).mkdir()
            write_safetensors(directory / name / "model.safetensors", tensors)
    return names


def test_planted_run_is_ordered_and_flagged(tmp_path):
    names = write_run(tmp_path)
    result = trend([tmp_path])
    assert [c.step for c in result.checkpoints] == STEPS
    assert [Path(c.path).name for c in result.checkpoints] == names
    series = {s.name: s for s in result.layers}
    for name, planted in PLANTED.items():
        np.testing.assert_allclose(series[name].alphas, planted, atol=0.35)
    assert series["blocks.0.attn.q_proj.weight"].flags == [FLAG_JUMP]
    assert [(j.at, j.step) for j in series["blocks.0.attn.q_proj.weight"].jumps] == [(3, 400)]
    assert series["blocks.1.mlp.up_proj.weight"].flags == [FLAG_FALL_THEN_RISE]
    assert series["blocks.1.mlp.up_proj.weight"].fall_then_rise.low_step == 300
    assert series["blocks.2.mlp.down_proj.weight"].flags == [FLAG_STUCK]
    assert series["blocks.3.attn.o_proj.weight"].flags == []

    data = json.loads(json.dumps(result.to_dict()))
    assert data["schema"] == "weightscope.trend/2"
    assert [c["step"] for c in data["checkpoints"]] == STEPS
    assert all({"step", "path", "summary"} <= set(c) for c in data["checkpoints"])
    assert data["layers"][0]["alphas"] == series["blocks.0.attn.q_proj.weight"].alphas


def test_cache_costs_one_checkpoint_per_new_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "RACY_SECONDS", 0.0)  # a test cannot back-date ctimes
    run, cache = tmp_path / "run", tmp_path / "run" / ".weightscope"
    run.mkdir()
    write_run(run)
    first = trend([run], cache=cache)
    assert [c.origin for c in first.checkpoints] == ["analysed"] * 5
    again = trend([run], cache=cache)
    assert [c.origin for c in again.checkpoints] == ["cache"] * 5
    assert again.layers == first.layers and [c.summary for c in again.checkpoints] == [
        c.summary for c in first.checkpoints
    ]

    write_safetensors(run / "step-600.safetensors", {n: power_law_matrix(3.0, i) for i, n in enumerate(PLANTED)})
    grown = trend([run], cache=cache)
    assert [c.origin for c in grown.checkpoints] == ["cache"] * 5 + ["analysed"]

    entries = {json.loads(p.read_text())["source"]: p for p in cache.glob("reports/*/*.json")}
    assert len(entries) == 6
    entries[str(run / "step-200")].write_text("{ not json")  # a corrupt entry is ignored, removed and rebuilt
    touched = run / "step-500" / "model.safetensors"
    os.utime(
        touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns - 10**9)
    )  # not into the future: that is never cached
    rebuilt = trend([run], cache=cache)
    assert [c.origin for c in rebuilt.checkpoints].count("analysed") == 2
    assert len(list(cache.glob("reports/*/*.json"))) == 7  # the touched checkpoint's old entry waits for eviction
    assert all(Report.from_dict(json.loads(p.read_text())) for p in cache.glob("reports/*/*.json"))

    other_options = trend([run], cache=cache, min_evals=60)
    assert {c.origin for c in other_options.checkpoints} == {"analysed"}


def test_saved_reports_join_a_run(tmp_path):
    write_run(tmp_path)
    saved = tmp_path / "step-700.json"
    saved.write_text(json.dumps(analyze(tmp_path / "step-200").to_dict()))
    result = trend([tmp_path / "step-200", saved])
    assert [(c.step, c.origin) for c in result.checkpoints] == [(200, "analysed"), (700, "report")]


def test_cli_table_json_csv(tmp_path):
    write_run(tmp_path)
    table = runner.invoke(app, ["trend", str(tmp_path)])
    assert table.exit_code == 0, table.output
    assert "jump@400" in table.stdout and "fall-then-rise" in table.stdout and "stuck-random-like" in table.stdout
    as_json = runner.invoke(app, ["trend", str(tmp_path), "-f", "json"])
    assert [c["step"] for c in json.loads(as_json.stdout)["checkpoints"]] == STEPS
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["trend", str(tmp_path), "-f", "csv"]).stdout)))
    assert [r["name"] for r in rows] == list(PLANTED)
    assert float(rows[0]["alpha@400"]) == pytest.approx(5.2, abs=0.35)
    bad = runner.invoke(app, ["trend", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "no such file" in bad.output


def _plant(checkpoint, name, alpha):
    """Rewrite ``checkpoint`` with layer ``name`` replaced by a same-norm matrix of ESD exponent ``alpha``."""
    with open_checkpoint(checkpoint) as reader:
        infos = reader.tensors()
        tensors = {info.name: reader.read(info) for info in infos}
    original = tensors[name]
    n, m = max(original.shape), min(original.shape)
    planted = power_law_matrix(alpha, seed=7, n=n, m=m)
    planted = planted if planted.shape == original.shape else planted.T
    tensors[name] = planted * (np.linalg.norm(original) / np.linalg.norm(planted))
    write_safetensors(checkpoint, tensors, dtypes={info.name: info.dtype for info in infos})


def test_example_run_is_ordered_by_step_and_a_planted_jump_is_found(tmp_path):
    assert EXAMPLE_RUN.is_dir(), f"the example run {EXAMPLE_RUN} is missing"
    originals = sorted(EXAMPLE_RUN.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    steps = [int(p.name.split("-")[1]) for p in originals]
    forms = ["step-{}", "checkpoint-{}", "step_{}", "global_step{}"]
    run = tmp_path / "run"
    for index, (path, step) in enumerate(zip(originals, steps)):
        shutil.copytree(path, run / forms[index % len(forms)].format(step))
    include = (r"layers\.0\.",)  # block 0 keeps trusted fits to the end (later blocks' late fits are not)

    before = trend([run], include=include)
    assert [c.step for c in before.checkpoints] == steps
    assert [Path(c.path).name for c in before.checkpoints] != sorted(Path(c.path).name for c in before.checkpoints)
    late = len(steps) - 2  # plant in the calm late phase, between two ordinary checkpoints
    calm = [
        s
        for s in before.layers
        if not s.flags and s.alphas[late] is not None and s.alphas[late] < 4.0 and all(s.trusted[late - 1 : late + 2])
    ]
    assert calm, "no unflagged layer to plant a jump in"
    target = calm[0]

    _plant(run / forms[late % len(forms)].format(steps[late]) / "model.safetensors", target.name, alpha=7.5)
    after = {s.name: s for s in trend([run], include=include).layers}
    planted = after[target.name]
    assert planted.alphas[late] > target.alphas[late] + 3.0
    assert steps[late] in [jump.step for jump in planted.jumps]
    assert FLAG_JUMP in planted.flags
    assert all(after[s.name].flags == s.flags for s in before.layers if s.name != target.name)


def test_a_random_spectrum_leaves_the_co_movement_whatever_its_verdict():
    """A run's first checkpoint is an initial draw: its verdict is looks-untrained (with the
    random-like flag), and its alpha says nothing, as a random-like layer's does; the
    co-movement of alpha over the run starts after it. Planted: the first point would make
    the correlation with log λmax +1 were it kept, the rest give −1."""
    from weightscope.commands.trend import _comovement

    def point(alpha, log_lambda, flags=()):
        return LayerResult(
            "q",
            "q",
            0,
            (128, 96),
            "F32",
            "ok",
            alpha=alpha,
            log_norm=1.0,
            log_spectral_norm=log_lambda,
            flags=list(flags),
        )

    start = dataclasses.replace(point(9.0, 5.0, ["looks-untrained", "random-like"]), verdict="looks-untrained")
    run = [start, point(4.0, 1.0), point(3.0, 2.0), point(2.5, 3.0), point(2.0, 4.0)]
    assert _comovement(run, [None] * 5)["log_spectral_norm"] == pytest.approx(-1.0)
    kept = dataclasses.replace(start, flags=[], verdict="under-trained")
    assert _comovement([kept, *run[1:]], [None] * 5)["log_spectral_norm"] > -1.0
