"""Fused tensors cut into their parts: each part's report equals the report of that part
stored on its own (the planted truth: the fused tensor is built from separate ones)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.helpers import planted_power_law
from weightscope.analysis.pipeline import analyze
from weightscope.checkpoint import write_safetensors
from weightscope.cli import app
from weightscope.execution.plan import Execution

runner = CliRunner()
NO_CACHE = Execution(cache=False, workers=1)
HIDDEN, HEADS, KV_HEADS = 128, 8, 2
HEAD_DIM = HIDDEN // HEADS


def parts():
    q = planted_power_law(HIDDEN, HIDDEN, 3.0, 1)
    k = planted_power_law(HIDDEN, KV_HEADS * HEAD_DIM, 3.5, 2).T.copy()
    v = planted_power_law(HIDDEN, KV_HEADS * HEAD_DIM, 4.0, 3).T.copy()
    gate, up = planted_power_law(256, HIDDEN, 3.0, 4), planted_power_law(256, HIDDEN, 5.0, 5)
    return q, k, v, gate, up


def alphas(report):
    return {layer.name: layer.alpha for layer in report.layers}


def test_gqa_qkv_proj_and_gate_up_split_from_config_json(tmp_path):
    q, k, v, gate, up = parts()
    fused = tmp_path / "fused"
    fused.mkdir()
    write_safetensors(
        fused / "model.safetensors",
        {
            "model.layers.0.self_attn.qkv_proj.weight": np.concatenate([q, k, v]),
            "model.layers.0.mlp.gate_up_proj.weight": np.concatenate([gate, up]),
        },
    )
    (fused / "config.json").write_text(
        json.dumps({"model_type": "phi3", "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS})
    )
    write_safetensors(tmp_path / "separate.safetensors", {"q": q, "k": k, "v": v, "gate": gate, "up": up})
    separate = alphas(analyze(tmp_path / "separate.safetensors", execution=NO_CACHE, min_evals=16))
    report = analyze(fused, execution=NO_CACHE, min_evals=16)
    got = {layer.name: layer for layer in report.layers}
    for part in ("q", "k", "v"):
        layer = got[f"model.layers.0.self_attn.qkv_proj.weight[{part}]"]
        assert layer.kind == part and layer.block == 0 and layer.alpha == pytest.approx(separate[part], rel=1e-6)
    assert got["model.layers.0.self_attn.qkv_proj.weight[k]"].shape == (KV_HEADS * HEAD_DIM, HIDDEN)
    for part in ("gate", "up"):
        assert got[f"model.layers.0.mlp.gate_up_proj.weight[{part}]"].alpha == pytest.approx(separate[part], rel=1e-6)
    whole = analyze(fused, execution=NO_CACHE, min_evals=16, split=False)
    assert [layer.kind for layer in whole.layers] == ["qkv", "gate_up"]


def test_gpt2_c_attn_columns_and_neox_interleave_with_head_flags(tmp_path):
    q, _, _, _gate, _up = parts()
    k, v = planted_power_law(HIDDEN, HIDDEN, 3.5, 7), planted_power_law(HIDDEN, HIDDEN, 4.5, 8)
    write_safetensors(
        tmp_path / "gpt2.safetensors", {"h.0.attn.c_attn.weight": np.concatenate([q.T, k.T, v.T], axis=1)}
    )
    per_head = np.stack(
        [q.reshape(HEADS, HEAD_DIM, HIDDEN), k.reshape(HEADS, HEAD_DIM, HIDDEN), v.reshape(HEADS, HEAD_DIM, HIDDEN)],
        axis=1,
    )
    write_safetensors(
        tmp_path / "neox.safetensors",
        {"gpt_neox.layers.0.attention.query_key_value.weight": per_head.reshape(3 * HIDDEN, HIDDEN)},
    )
    write_safetensors(tmp_path / "separate.safetensors", {"q": q, "k": k, "v": v})
    separate = alphas(analyze(tmp_path / "separate.safetensors", execution=NO_CACHE))
    write_safetensors(
        tmp_path / "conv1d.safetensors", {"q": q.T.copy(), "k": k.T.copy(), "v": v.T.copy()}
    )  # Conv1D layout
    conv1d = alphas(analyze(tmp_path / "conv1d.safetensors", execution=NO_CACHE))
    gpt2 = alphas(analyze(tmp_path / "gpt2.safetensors", execution=NO_CACHE))
    for part in "qkv":
        assert gpt2[f"h.0.attn.c_attn.weight[{part}]"] == pytest.approx(conv1d[part], rel=1e-9)
    result = runner.invoke(
        app, ["analyze", str(tmp_path / "neox.safetensors"), "--heads", str(HEADS), "-f", "json", "--no-cache"]
    )
    assert result.exit_code == 0, result.output
    neox = {layer["name"]: layer["alpha"] for layer in json.loads(result.stdout)["layers"]}
    for part in "qkv":
        assert neox[f"gpt_neox.layers.0.attention.query_key_value.weight[{part}]"] == pytest.approx(
            separate[part], rel=1e-6
        )
    unknown = alphas(analyze(tmp_path / "neox.safetensors", execution=NO_CACHE))  # no head count: whole
    assert list(unknown) == ["gpt_neox.layers.0.attention.query_key_value.weight"]
