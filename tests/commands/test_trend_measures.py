"""Trend's model-level measures on synthetic runs with planted dynamics, and on the example run.

A run whose logit bound grows geometrically in one block must flag that block only; an
embedding whose intrinsic dimension jumps must be flagged at that step; the series
helpers are checked against scipy and closed forms.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from weightscope.checkpoint import write_safetensors
from weightscope.commands.trend import (
    FLAG_ID_RISE,
    FLAG_JUMP,
    GROWTH_WINDOW,
    TrendPoint,
    attention_series,
    initial_descent_end,
    trend,
)
from weightscope.report import AttentionBounds, ModelMeasures
from weightscope.stats.attention import LogitBound
from weightscope.stats.series import (
    high_outliers,
    log_slope,
    peak_phase,
    spearman,
    sudden_rises,
)
from weightscope.summary import summarize

EXAMPLE_RUN = Path(__file__).resolve().parents[2] / "examples" / "runs" / "tiny-lm"
STEPS = [0, 100, 200, 400, 800, 1600]


def test_series_helpers_against_references():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(12).tolist(), rng.standard_normal(12).tolist()
    y[3] = y[5]  # a tie
    assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)
    assert spearman([1.0, None, 3.0], [2.0, 5.0, 1.0]) is None  # too few pairs
    positions = np.log1p(np.array(STEPS, dtype=float))
    assert log_slope([3.0 * np.exp(0.7 * p) for p in positions], positions) == pytest.approx(0.7)
    assert high_outliers([0.1, 0.12, 0.09, 2.0, 0.11], k=5.0, floor=0.5) == [False, False, False, True, False]
    assert high_outliers([0.1, 0.1, 0.1, 0.1], k=5.0, floor=0.5) == [False] * 4  # MAD 0: the floor decides
    assert sudden_rises([10.0, 10.5, 20.0, 19.0], [0.5] * 4, sigmas=4.0, share=0.2) == [2]
    assert peak_phase([10.0, 20.0, 30.0, 15.0], [1.0] * 4) == ("inflation → compression", 2)
    assert peak_phase([30.0, 20.0, 10.0], [1.0] * 3) == ("compression", None)
    assert peak_phase([10.0, 10.5, 10.2], [1.0] * 3) == ("flat", None)
    assert initial_descent_end([None, 8.0, 5.0, 3.0, 3.5, 2.0]) == 3
    assert initial_descent_end([3.0, 3.5, 2.0]) == 0


def write_growth_run(root: Path, grow_block: int = 2, rate: float = 1.6) -> None:
    """Four blocks whose q/k drift mildly; block ``grow_block``'s q grows by ``rate`` per checkpoint."""
    heads, d = 4, 64
    for index, step in enumerate(STEPS):
        rng = np.random.default_rng(100 + index)
        tensors = {}
        for block in range(4):
            base = np.random.default_rng(block)  # the same weights at every step, plus a small drift
            scale = rate**index if block == grow_block else 1.0 + 0.05 * index
            q = base.standard_normal((d, d)) * scale + 0.05 * rng.standard_normal((d, d))
            k = base.standard_normal((d, d)) + 0.05 * rng.standard_normal((d, d))
            tensors[f"model.layers.{block}.self_attn.q_proj.weight"] = q.astype(np.float32)
            tensors[f"model.layers.{block}.self_attn.k_proj.weight"] = k.astype(np.float32)
        # the embedding: rows on a 3-D subspace, then on a 12-D one from step 400 on (a sudden rise)
        dim = 3 if step < 400 else 12
        basis = np.linalg.qr(np.random.default_rng(7).standard_normal((d, 12)))[0][:, :dim]
        tensors["model.embed_tokens.weight"] = (rng.standard_normal((1500, dim)) @ basis.T).astype(np.float32)
        directory = root / f"step-{step}"
        directory.mkdir(parents=True)
        write_safetensors(directory / "model.safetensors", tensors)
        (directory / "config.json").write_text(json.dumps({"num_attention_heads": heads, "hidden_size": d}))


def test_geometric_logit_growth_in_one_block_is_flagged_there_only(tmp_path):
    write_growth_run(tmp_path)
    result = trend([tmp_path], min_evals=10**6)  # no spectral layer needed: measures only
    assert [a.block for a in result.attention] == [0, 1, 2, 3]
    assert [a.flagged for a in result.attention] == [False, False, True, False]
    assert [a.block for a in result.growing_blocks] == [2]
    grown = result.attention[2]
    # the bound scales with q: rate**index, so its growth per ln(1 + step) is large; the others ~0
    assert grown.bounds[-1] / grown.bounds[0] == pytest.approx(1.6**5, rel=0.05)
    assert all(abs(a.growth) < 0.1 for a in result.attention if a.block != 2)
    (embedding,) = result.embeddings
    assert embedding.twonn[0] == pytest.approx(3.0, rel=0.15) and embedding.twonn[-1] == pytest.approx(12.0, rel=0.15)
    assert embedding.rises == [STEPS.index(400)] and embedding.flags == [FLAG_ID_RISE]
    assert embedding.phase == "inflation"
    data = json.loads(json.dumps(result.to_dict()))
    assert data["attention"][2]["flagged"] and data["embeddings"][0]["rises"] == [3]


def test_growth_is_read_over_the_latest_checkpoints():
    # block 1 grew fast early and settled; block 3 starts growing only in the last checkpoints
    steps = [0, 10, 20, 50, 100, 200, 400, 800, 1600, 3200]
    series = {
        0: [1.0] * 10,
        1: [1.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0],
        2: [1.0 + 0.01 * i for i in range(10)],
        3: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 4.0, 8.0, 16.0],
    }
    points = []
    for index, step in enumerate(steps):
        bounds = [
            LogitBound(block, f"b{block}.q", f"b{block}.k", None, [v[index]], v[index], v[index], v[index])
            for block, v in series.items()
        ]
        measures = ModelMeasures(AttentionBounds("ok", layers=bounds))
        points.append(TrendPoint(step, f"step-{step}", "analysed", summarize([], []), None, {}, measures))
    found = attention_series(points, steps, jump_k=5.0)
    assert [a.flagged for a in found] == [False, False, False, True]
    assert len(steps) > GROWTH_WINDOW and found[1].growth == pytest.approx(0.0, abs=1e-12)


def test_cached_reruns_read_no_weights_for_the_distances(tmp_path, monkeypatch):
    import weightscope.commands.trend as trend_module
    import weightscope.execution.cache as cache_module

    monkeypatch.setattr(cache_module, "RACY_SECONDS", 0.0)  # a test cannot back-date ctimes
    run = tmp_path / "run"
    write_growth_run(run)
    first = trend([run], cache=tmp_path / "cache", min_evals=60)
    distances = {s.name: s.distance_from_init for s in first.layers}
    assert len(distances) == 9 and all(d[0] == 0.0 and d[-1] > 0 for d in distances.values())

    def no_reading(*args, **kwargs):
        raise AssertionError("weights read again on a cached rerun")

    monkeypatch.setattr(trend_module, "distance_from_init", no_reading)
    again = trend([run], cache=tmp_path / "cache", min_evals=60)
    assert {c.origin for c in again.checkpoints} == {"cache"}
    assert {s.name: s.distance_from_init for s in again.layers} == distances
    assert len(list((tmp_path / "cache" / "distances").glob("*/*.json"))) == len(STEPS) - 1


def test_a_steady_run_flags_no_block(tmp_path):
    write_growth_run(tmp_path, rate=1.0)
    result = trend([tmp_path], min_evals=10**6)
    assert not result.growing_blocks


def test_example_run_the_fall_from_random_is_no_event():
    run = sorted(EXAMPLE_RUN.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    result = trend(run)
    assert not any(FLAG_JUMP in s.flags for s in result.layers)  # was 25 of 30 before flags read trusted fits only
    assert all(a.bounds[-1] > 10 * a.bounds[0] for a in result.attention) and len(result.attention) == 4
    assert {e.name for e in result.embeddings} == {"model.embed_tokens.weight", "lm_head.weight"}
    head = next(e for e in result.embeddings if e.name == "lm_head.weight")
    assert head.mean_cosine[-1] > 0.3 and head.pc1_share[-1] > 0.5  # the shared direction of unused bytes
    distances = {s.name: s.distance_from_init for s in result.layers}
    assert all(d[0] == 0.0 and d[-1] > d[1] > 0 for d in distances.values())


def test_cli_views_show_the_measures(tmp_path):
    from typer.testing import CliRunner

    from weightscope.cli import app

    run = tmp_path / "run"
    write_growth_run(run)
    runner = CliRunner()
    args = ["trend", str(run), "--min-evals", "60"]
    table = runner.invoke(
        app, [*args, "--plot", str(tmp_path / "t.png"), "--html", str(tmp_path / "t.html")], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0, table.output
    assert "attention-logit bound" in table.stdout and "block 2" in table.stdout and "LOGIT-GROWTH" in table.stdout
    assert "id-rise" in table.stdout and "distance from init" in table.stdout
    html = (tmp_path / "t.html").read_text()
    assert "Model-level measures over the run" in html and "LOGIT-GROWTH" in html
    assert (tmp_path / "t.png").stat().st_size > 10_000
    csv_text = runner.invoke(app, [*args, "-f", "csv"]).stdout
    assert "dist_init@1600" in csv_text.splitlines()[0]
