"""LoRA adapters: ΔW = s·B·A from the factors (planted ranks, numpy SVD of the explicit
product as the reference), PEFT's names and config fields, and compare BASE ADAPTER
against the same weights merged by hand (and by the real `peft` when it is installed)."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.helpers import planted_power_law
from weightscope.analysis.pipeline import analyze
from weightscope.checkpoint import write_safetensors
from weightscope.checkpoint.lora import canonical_name
from weightscope.cli import app
from weightscope.commands.compare import compare
from weightscope.execution.plan import Execution
from weightscope.stats.update import lowrank_singular_values

runner = CliRunner()
NO_CACHE = Execution(cache=False, workers=1)
Q, V, UP = "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj", "model.layers.0.mlp.up_proj"
SHAPES = {Q: (160, 128), V: (160, 128), UP: (192, 128)}


def factors(d, k, r, true_rank, seed):
    """B (d×r) and A (r×k) whose product has exactly ``true_rank`` non-zero singular values."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((r, k)).astype(np.float32)
    b = (rng.standard_normal((d, true_rank)) @ rng.standard_normal((true_rank, r))).astype(np.float32)
    return a, b


def write_adapter(directory, modules, config=None, names="saved", extra=None):
    """An adapter directory as PEFT writes it (``names="saved"``) or as a PEFT model's own
    state dict names it (``names="memory"``: ``.lora_A.default.weight``)."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for module, (a, b) in modules.items():
        for part, value in (("lora_A", a), ("lora_B", b)):
            suffix = f"{part}.weight" if names == "saved" else f"{part}.default.weight"
            tensors[f"base_model.model.{module}.{suffix}"] = value
    tensors.update(extra or {})
    write_safetensors(directory / "adapter_model.safetensors", tensors)
    cfg = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj", "up_proj"]}
    cfg.update(config or {})
    (directory / "adapter_config.json").write_text(json.dumps(cfg))
    return directory


def test_lowrank_singular_values_match_numpy_svd_of_the_product():
    rng = np.random.default_rng(0)
    for d, k, r in ((300, 200, 8), (64, 500, 16), (50, 40, 1)):
        a, b = rng.standard_normal((r, k)), rng.standard_normal((d, r))
        reference = np.linalg.svd(0.7 * b @ a, compute_uv=False)[:r]
        np.testing.assert_allclose(lowrank_singular_values(a, b, 0.7), reference, rtol=1e-10, atol=1e-10 * reference[0])


def test_adapter_reports_planted_ranks_and_scales(tmp_path):
    planted = {Q: 2, V: 8, UP: 5}
    modules = {m: factors(*SHAPES[m], 8, planted[m], seed=i) for i, m in enumerate(planted)}
    config = {"use_rslora": True, "rank_pattern": {}, "alpha_pattern": {"v_proj": 32}}
    report = analyze(write_adapter(tmp_path / "ad", modules, config), execution=NO_CACHE)
    assert report.format == "lora (safetensors)"
    assert report.metadata == {
        "peft_type": "LORA",
        "r": 8,
        "lora_alpha": 16.0,
        "use_rslora": True,
        "use_dora": False,
        "base_model": None,
        "modules": 3,
    }
    by_name = {layer.name: layer for layer in report.layers}
    assert set(by_name) == {f"{m}.weight" for m in planted}
    for module, (a, b) in modules.items():
        layer = by_name[f"{module}.weight"]
        scale = (32 if module == V else 16) / math.sqrt(8)  # rsLoRA: alpha / √r
        update = layer.update
        assert update.scale == pytest.approx(scale) and update.lora_rank == 8 and layer.shape == SHAPES[module]
        reference = np.linalg.svd(scale * b.astype(np.float64) @ a, compute_uv=False)
        np.testing.assert_allclose(update.singular_values, reference[:8], rtol=1e-6, atol=1e-9 * reference[0])
        assert update.norm == pytest.approx(np.linalg.norm(reference), rel=1e-6)
        assert update.rank90 <= planted[module] and update.effective_rank <= planted[module] + 1e-6
        assert update.rank_share == pytest.approx(update.effective_rank / 8)
        assert layer.lambda_max == pytest.approx(reference[0] ** 2, rel=1e-6)  # σmax², WeightWatcher's lambda_max
        assert layer.alpha is None and layer.ok


def test_old_peft_names_patterns_embeddings_and_fan_in_fan_out(tmp_path):
    a, b = factors(160, 128, 4, 4, seed=1)
    emb_a, emb_b = factors(96, 300, 4, 4, seed=2)  # A: r×num_embeddings, B: dim×r
    extra = {
        "base_model.model.model.embed_tokens.lora_embedding_A.default": emb_a,
        "base_model.model.model.embed_tokens.lora_embedding_B.default": emb_b,
        "base_model.model.score.modules_to_save.default.weight": planted_power_law(200, 96, 3.0, 0),
    }
    config = {
        "r": 8,
        "rank_pattern": {"q_proj": 4},
        "alpha_pattern": {"embed_tokens": 2},
        "fan_in_fan_out": True,
        "modules_to_save": ["score"],
    }
    report = analyze(
        write_adapter(tmp_path / "old", {Q: (a, b)}, config, names="memory", extra=extra), execution=NO_CACHE
    )
    q, emb = report.layer(f"{Q}.weight"), report.layer("model.embed_tokens.weight")
    assert q.update.scale == pytest.approx(16 / 4) and q.shape == (128, 160)  # Conv1D layout: (B·A)ᵀ
    assert emb.update.scale == pytest.approx(2 / 8) and emb.shape == (300, 96) and emb.kind == "embedding"
    saved = report.layer("base_model.model.score.modules_to_save.default.weight")
    assert saved.alpha is not None and saved.update is None  # a whole replacement, analysed as a layer
    assert canonical_name(saved.name) == "score.weight"


def test_dora_magnitude_is_reported_not_silently_dropped(tmp_path):
    a, b = factors(160, 128, 8, 8, seed=3)
    extra = {f"base_model.model.{Q}.lora_magnitude_vector": np.ones(160, np.float32)}
    report = analyze(write_adapter(tmp_path / "dora", {Q: (a, b)}, {"use_dora": True}, extra=extra), execution=NO_CACHE)
    assert "DoRA" in report.layer(f"{Q}.weight").update.note


@pytest.fixture()
def base_and_adapter(tmp_path):
    base = {m: planted_power_law(*SHAPES[m], 3.0, seed=i) for i, m in enumerate(SHAPES)}
    base["model.layers.2.mlp.down_proj.weight"] = planted_power_law(192, 128, 3.5, seed=9).T.copy()
    base = {(k if k.endswith(".weight") else k + ".weight"): v for k, v in base.items()}
    write_safetensors(tmp_path / "base.safetensors", base)
    modules = {Q: factors(*SHAPES[Q], 8, 3, seed=5), UP: factors(*SHAPES[UP], 8, 8, seed=6)}
    modules = {m: (a, b * 0.02) for m, (a, b) in modules.items()}
    adapter = write_adapter(tmp_path / "adapter", modules)
    return tmp_path, base, modules, adapter


def test_compare_base_adapter_matches_explicitly_merged_weights(base_and_adapter):
    tmp_path, base, modules, adapter = base_and_adapter
    merged = dict(base)
    for module, (a, b) in modules.items():
        merged[f"{module}.weight"] = base[f"{module}.weight"] + 2.0 * (b @ a)  # s = 16 / 8
    write_safetensors(tmp_path / "merged.safetensors", merged)
    explicit = compare(tmp_path / "base.safetensors", tmp_path / "merged.safetensors", execution=NO_CACHE)
    via_adapter = compare(tmp_path / "base.safetensors", adapter, execution=Execution(workers=2))
    assert via_adapter.mode == "adapter"
    assert sorted(via_adapter.unchanged) == sorted({"model.layers.2.mlp.down_proj.weight", f"{V}.weight"})
    assert [c.name for c in via_adapter.layers] == [f"{Q}.weight", f"{UP}.weight"]
    reference = {c.name: c for c in explicit.layers}
    for change in via_adapter.layers:
        twin = reference[change.name]
        assert change.alpha_b == pytest.approx(twin.alpha_b, rel=1e-5)
        assert change.delta_alpha == pytest.approx(twin.delta_alpha, rel=1e-4, abs=1e-6)
        assert change.update.relative_norm == pytest.approx(twin.update.relative_norm, rel=1e-4)
        assert change.update.rank90 == twin.update.rank90
        assert change.update.lora_rank == 8
    assert via_adapter.layers[0].update.rank90 <= 3  # the planted rank


def test_cli_compare_adapter_and_errors(base_and_adapter):
    tmp_path, _, _, adapter = base_and_adapter
    result = runner.invoke(
        app, ["compare", str(tmp_path / "base.safetensors"), str(adapter), "-f", "json", "--no-cache", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "adapter" and len(data["unchanged"]) == 2
    table = runner.invoke(app, ["compare", str(tmp_path / "base.safetensors"), str(adapter), "--no-cache"])
    assert table.exit_code == 0 and "unchanged by the adapter, not recomputed (2)" in table.stdout
    alone = runner.invoke(app, ["analyze", str(adapter), "--no-cache"])
    assert alone.exit_code == 0 and "LoRA updates ΔW = s·B·A" in alone.stdout and "r used" in alone.stdout
    backwards = runner.invoke(app, ["compare", str(adapter), str(tmp_path / "base.safetensors")])
    assert backwards.exit_code == 2 and "give the base model first" in backwards.output
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 0}')
    bad = runner.invoke(app, ["analyze", str(adapter)])
    assert bad.exit_code == 2 and bad.output.startswith("error:") and "r and lora_alpha" in bad.output
    (adapter / "adapter_config.json").write_text('{"peft_type": "IA3"}')
    other = runner.invoke(app, ["analyze", str(adapter)])
    assert other.exit_code == 2 and "IA3" in other.output


def test_real_peft_adapter_and_merge(tmp_path):
    """Fixtures checked against the real `peft`: its saved names, its scale (rank and alpha
    patterns, rsLoRA) and its DoRA merge give the numbers weightscope computes."""
    peft = pytest.importorskip("peft")
    torch = pytest.importorskip("torch")

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.v_proj = torch.nn.Linear(128, 160, bias=False), torch.nn.Linear(128, 128, bias=False)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([Block(), Block()])

    for use_dora in (False, True):
        torch.manual_seed(0)
        model = Model()
        base = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
        write_safetensors(tmp_path / "base.safetensors", base)
        config = peft.LoraConfig(
            r=8,
            lora_alpha=16,
            target_modules=["q_proj", "v_proj"],
            use_rslora=True,
            rank_pattern={"layers.1.q_proj": 4},
            alpha_pattern={"v_proj": 8},
            use_dora=use_dora,
        )
        wrapped = peft.get_peft_model(model, config)
        with torch.no_grad():
            for name, param in wrapped.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.05)
        out = tmp_path / f"peft-{use_dora}"
        wrapped.save_pretrained(out)
        report = analyze(out, execution=NO_CACHE)
        for name, module in wrapped.named_modules():
            if hasattr(module, "get_delta_weight") and name.endswith(("q_proj", "v_proj")):
                layer = report.layer(canonical_name(name) + ".weight")
                delta = module.get_delta_weight("default").detach().double().numpy()
                if not use_dora:
                    np.testing.assert_allclose(
                        layer.update.singular_values,
                        np.linalg.svd(delta, compute_uv=False)[: layer.update.lora_rank],
                        rtol=1e-5,
                    )
        merged = {k: v.detach().numpy().copy() for k, v in wrapped.merge_and_unload().state_dict().items()}
        write_safetensors(tmp_path / "merged.safetensors", merged)
        explicit = compare(tmp_path / "base.safetensors", tmp_path / "merged.safetensors", execution=NO_CACHE)
        via_adapter = compare(tmp_path / "base.safetensors", out, execution=NO_CACHE)
        assert [c.name for c in via_adapter.layers] == [c.name for c in explicit.layers]
        for ours, theirs in zip(via_adapter.layers, explicit.layers):
            assert ours.update.relative_norm == pytest.approx(theirs.update.relative_norm, rel=1e-4)
            assert ours.update.effective_rank == pytest.approx(theirs.update.effective_rank, rel=1e-3)
