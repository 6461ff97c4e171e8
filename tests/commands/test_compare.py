"""Compare: name matching, Δalpha/Δnorms/verdicts, and the update ΔW against planted truth."""

import csv
import io
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

import weightscope.commands.compare as compare_module
from weightscope.analysis.pipeline import analyze
from weightscope.checkpoint import write_safetensors
from weightscope.checkpoint.layers import layer_matrices
from weightscope.checkpoint.names import align_names
from weightscope.cli import app
from weightscope.commands.compare import (
    compare,
    compare_reports,
    got_worse,
)
from weightscope.errors import WeightscopeError
from weightscope.execution.plan import Execution
from weightscope.report import LayerResult, Report
from weightscope.stats.update import update_stats
from weightscope.summary import summarize

runner = CliRunner()

NAMES = [
    f"model.layers.{i}.{kind}.weight"
    for i, kind in enumerate(["self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj", "lm_head"])
]
#: Planted update per layer: (rank r, ‖ΔW‖_F / ‖W_A‖_F).
PLANTED = dict(zip(NAMES, [(1, 0.01), (2, 0.05), (4, 0.02), (8, 0.2), (16, 0.1)]))


def base_weights(seed=0, n=128, m=96):
    """Heavy-tailed-ish matrices: Gaussian plus a few strong directions, so fits succeed."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name in NAMES:
        spikes = rng.standard_normal((n, 6)) @ (rng.standard_normal((6, m)) * np.linspace(4, 1, 6)[:, None])
        weights[name] = (rng.standard_normal((n, m)) + spikes).astype(np.float32)
    return weights


def planted_update(w, rank, relative, rng):
    """ΔW = U S Vᵀ with `rank` equal singular values, scaled so ‖ΔW‖_F = relative · ‖W‖_F."""
    u, _ = np.linalg.qr(rng.standard_normal((w.shape[0], rank)))
    v, _ = np.linalg.qr(rng.standard_normal((w.shape[1], rank)))
    sigma = relative * np.linalg.norm(w.astype(np.float64)) / math.sqrt(rank)
    return (u * sigma) @ v.T


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    weights = base_weights()
    rng = np.random.default_rng(1)
    tuned = {name: (w + planted_update(w, *PLANTED[name], rng)).astype(np.float32) for name, w in weights.items()}
    tuned["model.layers.9.extra.weight"] = np.ones((128, 96), np.float32)  # only in B
    paths = {"a": root / "a.safetensors", "b": root / "b.safetensors", "prefixed": root / "prefixed.safetensors"}
    write_safetensors(paths["a"], weights)
    write_safetensors(paths["b"], tuned)
    write_safetensors(paths["prefixed"], {f"base_model.{name}": w for name, w in weights.items()})
    return paths


def test_checkpoint_against_itself_changes_nothing(models):
    result = compare(models["a"], models["a"])
    assert result.weights and len(result.layers) == 5 and not result.only_a and not result.only_b
    for change in result.layers:
        assert change.alpha_a is not None
        assert (change.delta_alpha, change.delta_log_norm, change.delta_log_spectral_norm) == (0.0, 0.0, 0.0)
        assert change.update.relative_norm == 0.0
        assert (change.update.stable_rank, change.update.effective_rank, change.update.rank90) == (0.0, 0.0, 0)
        assert not change.worse
    assert result.summary.delta_alpha_median == 0.0 and result.summary.worse == []


def test_planted_rank_r_update_is_measured(models):
    result = compare(models["a"], models["b"], top=2)
    assert result.only_b == ["model.layers.9.extra.weight"] and result.only_a == []
    for change in result.layers:
        rank, relative = PLANTED[change.name]
        update = change.update
        assert update.relative_norm == pytest.approx(relative, rel=1e-4)
        assert update.effective_rank == pytest.approx(rank, rel=1e-3)
        assert update.stable_rank == pytest.approx(rank, rel=1e-3)
        assert update.rank90 == math.ceil(0.9 * rank)
        assert update.dim == 96
    assert result.summary.changed_most == ["model.layers.3.mlp.down_proj.weight", "model.layers.4.lm_head.weight"]
    # the same layers analysed on their own give the same alphas
    alone = {layer.name: layer.alpha for layer in analyze(models["b"]).layers}
    assert all(change.alpha_b == alone[change.name] for change in result.layers)


def test_a_renamed_copy_lines_up_without_options_and_says_so(models):
    aligned = compare(models["a"], models["prefixed"])
    assert [c.name for c in aligned.layers] == NAMES and aligned.only_a == aligned.only_b == []
    assert aligned.aligned == ["removed the prefix 'base_model.' from B's layer names"]
    result = compare(models["prefixed"], models["a"], strip_prefix=["base_model."])
    assert result.aligned == []
    assert [c.name for c in result.layers] == NAMES
    assert {c.name_a for c in result.layers} == {f"base_model.{n}" for n in NAMES}
    assert all(c.update.relative_norm == 0.0 and c.delta_alpha == 0.0 for c in result.layers)


def test_a_task_heads_prefix_lines_up_on_the_command_line_and_is_said(models, tmp_path):
    head = tmp_path / "head.safetensors"
    weights = base_weights()
    write_safetensors(
        head, {**{f"bert.{name}": w for name, w in weights.items()}, "classifier.weight": np.ones((2, 96), np.float32)}
    )
    result = runner.invoke(app, ["compare", str(models["a"]), str(head), "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [c["name"] for c in data["layers"]] == NAMES and data["aligned"] == [
        "removed the prefix 'bert.' from B's layer names"
    ]
    assert "aligned names: removed the prefix 'bert.' from B's layer names" in result.stderr


def test_checkpoints_sharing_no_names_are_an_error_with_the_hint(models, tmp_path):
    other = tmp_path / "other.safetensors"
    write_safetensors(other, {f"net.{i}.proj.weight": w for i, w in enumerate(base_weights().values())})
    result = runner.invoke(app, ["compare", str(models["a"]), str(other)])
    assert result.exit_code == 2
    assert "only 0 of A's 5 layers matched" in result.output and "--strip-prefix" in result.output
    assert "net.0.proj.weight" in result.output and "Traceback" not in result.output
    with pytest.raises(WeightscopeError, match="strip_prefix= in Python"):
        compare(models["a"], other)
    half = align_names(["x.a", "x.b", "x.c", "x.d"], ["x.a", "x.b", "y.c"])
    half.check()  # 2 of 4 and 2 of 3 paired: at least half of each side
    lopsided = align_names(["x.a", "x.b", "x.c", "x.d"], ["x.a", "x.b", "y.c", "y.d", "y.e"])
    with pytest.raises(WeightscopeError, match="only 2 of B's 5 layers"):
        lopsided.check()
    lopsided.check(side_b=False)


def test_prefixes_are_only_removed_from_one_side():
    """Stripping encoder. from one side and decoder. from the other would pair different weights."""
    result = align_names(["encoder.0.w", "encoder.1.w"], ["decoder.0.w", "decoder.1.w"])
    assert result.pairs == [] and (result.prefix_a, result.prefix_b) == ("", "")


def test_stripping_into_a_collision_is_an_error():
    with pytest.raises(WeightscopeError, match="two layers named 'x'"):
        align_names(["a.x", "b.x"], ["x"], ["a.", "b."])
    assert align_names(["base_model.model.x"], ["model.x"], ["model.", "base_model.model."]).pairs == [
        ("x", "base_model.model.x", "model.x")
    ]


def test_saved_report_side_gives_alpha_deltas_only(models, tmp_path):
    saved = tmp_path / "a.json"
    saved.write_text(json.dumps(analyze(models["a"]).to_dict()))
    result = compare(saved, models["b"])
    with_weights = compare(models["a"], models["b"])
    assert not result.weights and all(c.update is None for c in result.layers)
    assert [c.delta_alpha for c in result.layers] == [c.delta_alpha for c in with_weights.layers]
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "weightscope.compare/1"}))
    with pytest.raises(WeightscopeError, match="not a weightscope report"):
        compare(other, models["b"])


def test_compare_streams_one_pair_at_a_time(models, monkeypatch):
    """Each tensor is read once, and with one worker at most the pair being analysed and
    A's tensor of the next pair (read one ahead, as `analyze` does) are alive."""
    import weakref

    opened = compare_module.open_checkpoint
    alive, reads, peak = [], [], [0]

    def counting_open(path):
        reader = opened(path)
        plain_read = reader.read

        def read(info):
            alive[:] = [ref for ref in alive if ref() is not None]
            peak[0] = max(peak[0], len(alive))
            array = plain_read(info)
            alive.append(weakref.ref(array))
            reads.append((str(path), info.name))
            return array

        reader.read = read
        return reader

    monkeypatch.setattr(compare_module, "open_checkpoint", counting_open)
    compare(models["a"], models["b"], execution=Execution(workers=1, cache=False))
    assert len(reads) == len(set(reads)) == 10
    assert peak[0] <= 3


def _layer(name, alpha, verdict=None, status="ok"):
    return LayerResult(
        name, "q", 0, (128, 96), "F32", status, alpha=alpha, log_norm=1.0, log_spectral_norm=0.5, verdict=verdict
    )


def _report(layers):
    return Report("r", "safetensors", "0.1.0", {}, layers, [], summarize(layers, []))


def test_verdict_changes_and_the_summary():
    a = _report(
        [_layer("x", 3.0, "healthy"), _layer("y", 4.0, "healthy"), _layer("z", 7.0), _layer("w", 3.0, "under-trained")]
    )
    b = _report(
        [
            _layer("x", 1.5, "over-trained"),
            _layer("y", 4.2, "healthy"),
            _layer("z", None, status="failed"),
            _layer("w", 3.5, "over-trained"),
        ]
    )
    result = compare_reports(a, b, top=1)
    by_name = {c.name: c for c in result.layers}
    assert by_name["x"].worse and by_name["x"].delta_alpha == -1.5
    assert not by_name["y"].worse
    assert by_name["z"].worse and by_name["z"].verdict_b == "failed" and by_name["z"].delta_alpha is None
    assert not by_name["w"].worse  # a change between problems of the same weight is not a regression
    assert result.summary.worse == ["x", "z"]
    assert result.summary.moved_most == ["x"]
    assert result.summary.delta_alpha_median == pytest.approx(0.2)
    assert not got_worse(None, "failed") and not got_worse("healthy", None)


def test_a_reshaped_layer_has_no_update_and_says_why(tmp_path):
    rng = np.random.default_rng(5)
    write_safetensors(tmp_path / "a.safetensors", {"w": rng.standard_normal((128, 96)).astype(np.float32)})
    write_safetensors(tmp_path / "b.safetensors", {"w": rng.standard_normal((128, 100)).astype(np.float32)})
    (change,) = compare(tmp_path / "a.safetensors", tmp_path / "b.safetensors").layers
    assert change.update is None and change.note == "shapes differ (128×96 vs 128×100)"
    assert change.alpha_a is not None and change.alpha_b is not None


def test_update_of_a_zero_matrix_has_no_relative_size():
    zero = np.zeros((64, 32), np.float32)
    stats = update_stats(zero, np.eye(64, 32, dtype=np.float32), layer_matrices)
    assert stats.relative_norm is None
    assert stats.effective_rank == pytest.approx(32) and stats.rank90 == 29


def test_cli_formats(models, tmp_path):
    table = runner.invoke(app, ["compare", str(models["a"]), str(models["b"])], env={"COLUMNS": "220"})
    assert table.exit_code == 0, table.output
    assert "largest updates" in table.stdout and "only in B (1)" in table.stdout
    as_json = json.loads(runner.invoke(app, ["compare", str(models["a"]), str(models["b"]), "-f", "json"]).stdout)
    assert as_json["schema"] == "weightscope.compare/1"
    required = {
        "name",
        "alpha_a",
        "alpha_b",
        "delta_alpha",
        "delta_log_norm",
        "delta_log_spectral_norm",
        "verdict_a",
        "verdict_b",
    }
    assert all(required <= set(layer) for layer in as_json["layers"])
    assert set(as_json["layers"][0]["update"]) >= {"relative_norm", "stable_rank", "effective_rank", "rank90"}
    rows = list(
        csv.DictReader(
            io.StringIO(runner.invoke(app, ["compare", str(models["a"]), str(models["b"]), "-f", "csv"]).stdout)
        )
    )
    assert [r["name"] for r in rows] == NAMES and float(rows[3]["update.effective_rank"]) == pytest.approx(8, rel=1e-3)
    out = tmp_path / "diff.md"
    assert runner.invoke(app, ["compare", str(models["a"]), str(models["b"]), "-o", str(out)]).exit_code == 0
    assert out.read_text().startswith("# weightscope compare") and "| rank90 |" in out.read_text()
    missing = runner.invoke(app, ["compare", str(models["a"]), str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "error:" in missing.output
