"""Model-level measures on planted truth: attention-logit bounds, row clouds, update ranks.

References are independent of the code under test: the explicit d × d bilinear form for
the logit bound, brute-force pairwise cosines and a full covariance eigendecomposition
for anisotropy, manifolds of known dimension for the intrinsic dimension, seeded Gaussian
simulations for the random-update baseline.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from weightscope.analysis.model_measures import (
    distance_from_init,
    norm_gain_name,
)
from weightscope.analysis.pipeline import analyze
from weightscope.checkpoint import open_checkpoint, write_safetensors
from weightscope.checkpoint.model_config import read_model_config
from weightscope.cli import app
from weightscope.commands.compare import compare
from weightscope.errors import WeightscopeError
from weightscope.report import Report
from weightscope.stats import attention
from weightscope.stats.attention import check_head_split, head_bounds
from weightscope.stats.embedding import (
    GRAM_MAX_DIM,
    intrinsic_dimension,
    mean_cosine,
    neighbour_distances,
    pc1_share,
    row_cloud,
)
from weightscope.stats.finetune import energy_rank, random_profile, update_ranks

runner = CliRunner()


def orthonormal(rng, rows, cols):
    return np.linalg.qr(rng.standard_normal((rows, cols)))[0]


def planted_heads(rng, d, dh, norms):
    """W_Q^h, W_K^h slices with ‖W_Q^hᵀ W_K^h‖₂/√d_h = norms[h] exactly (by construction)."""
    q, k = [], []
    for target in norms:
        spectrum = np.linspace(0.2, 1.0, dh)[::-1] * target * math.sqrt(dh)  # top singular value: target·√d_h
        split = rng.uniform(0.5, 2.0)
        q.append((orthonormal(rng, d, dh) * (spectrum * split)).T)
        k.append((orthonormal(rng, d, dh) / split).T)
    return q, k


def explicit_bound(q_slice, k_slice, gain=None):
    g = np.ones(q_slice.shape[1]) if gain is None else gain
    return np.linalg.norm((g[:, None] * q_slice.T) @ (k_slice * g[None, :]), 2) / math.sqrt(q_slice.shape[0])


# --- attention-logit bound ---------------------------------------------------------------


def test_planted_per_head_norms_are_recovered():
    rng = np.random.default_rng(0)
    norms = [0.5, 1.0, 2.0, 4.0]
    q, k = planted_heads(rng, d=64, dh=16, norms=norms)
    bounds, rotation = head_bounds(np.vstack(q), np.vstack(k), 4, 4, 16)
    np.testing.assert_allclose(bounds, norms, rtol=1e-10)
    # the any-rotation bound is ‖W_Q^h‖‖W_K^h‖/√d_h ≥ the bound, and holds for a RoPE-like rotation
    assert np.all(rotation >= bounds - 1e-12)
    rotation_matrix = orthonormal(rng, 16, 16)  # RoPE rotates q and k inside the head's d_h space
    for h in range(4):
        rotated = np.linalg.norm(q[h].T @ rotation_matrix @ k[h], 2) / 4.0
        assert rotated <= rotation[h] + 1e-10


def test_head_factors_in_groups_are_the_whole_stacks_bit_for_bit(monkeypatch):
    """The R factors are taken over groups of heads (`HEAD_GROUP_BYTES`) so that a 4096²
    projection needs no whole float64 copy; numpy factorises a stack one matrix at a time,
    so any grouping gives the same bits as one stack."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8 * 16, 40)).astype(np.float32)
    gain = rng.random(40) + 0.5
    whole = np.linalg.qr((w.astype(np.float64).reshape(8, 16, 40) * gain).transpose(0, 2, 1), mode="r")
    for heads_per_group in (1, 3, 8):
        monkeypatch.setattr(attention, "HEAD_GROUP_BYTES", heads_per_group * 16 * 40 * 8)
        assert np.array_equal(attention.head_factors(w, 8, 16, gain), whole)


def test_gqa_groups_query_heads_onto_their_kv_head():
    rng = np.random.default_rng(1)
    d, dh, heads, kv = 48, 8, 8, 2
    wq, wk = rng.standard_normal((heads * dh, d)), rng.standard_normal((kv * dh, d))
    bounds, _ = head_bounds(wq, wk, heads, kv, dh)
    expected = [explicit_bound(wq[h * dh : (h + 1) * dh], wk[(h // 4) * dh : (h // 4 + 1) * dh]) for h in range(heads)]
    np.testing.assert_allclose(bounds, expected, rtol=1e-10)
    interleaved = [
        explicit_bound(wq[h * dh : (h + 1) * dh], wk[(h % kv) * dh : (h % kv + 1) * dh]) for h in range(heads)
    ]
    assert not np.allclose(bounds, interleaved, rtol=1e-3)  # the grouping matters, and it is repeat_kv's


def test_norm_gain_is_folded_into_both_sides():
    rng = np.random.default_rng(2)
    d, dh = 32, 8
    wq, wk = rng.standard_normal((2 * dh, d)), rng.standard_normal((2 * dh, d))
    gain = rng.uniform(0.1, 3.0, d)
    bounds, _ = head_bounds(wq, wk, 2, 2, dh, gain)
    expected = [explicit_bound(wq[h * dh : (h + 1) * dh], wk[h * dh : (h + 1) * dh], gain) for h in range(2)]
    np.testing.assert_allclose(bounds, expected, rtol=1e-10)
    # a uniform gain c scales the bilinear form by c²
    scaled, _ = head_bounds(wq, wk, 2, 2, dh, np.full(d, 3.0))
    unscaled, _ = head_bounds(wq, wk, 2, 2, dh)
    np.testing.assert_allclose(scaled, 9.0 * unscaled, rtol=1e-10)


def test_bad_layouts_are_user_errors():
    with pytest.raises(WeightscopeError):
        check_head_split(6, 4, 8)
    with pytest.raises(WeightscopeError):
        head_bounds(np.zeros((24, 16)), np.zeros((24, 16)), 4, 4, 8)


def test_norm_gain_names_of_pre_and_post_norm_blocks():
    llama = {"model.layers.3.input_layernorm.weight", "model.layers.3.post_attention_layernorm.weight"}
    assert norm_gain_name("model.layers.3.self_attn.q_proj.weight", llama) == "model.layers.3.input_layernorm.weight"
    assert (
        norm_gain_name("transformer.h.0.attn.q_proj.weight", {"transformer.h.0.ln_1.weight"})
        == "transformer.h.0.ln_1.weight"
    )
    bert = {
        "embeddings.LayerNorm.weight",
        "encoder.layer.0.output.LayerNorm.weight",
        "encoder.layer.0.attention.output.LayerNorm.weight",
    }
    assert norm_gain_name("encoder.layer.0.attention.self.query.weight", bert) == "embeddings.LayerNorm.weight"
    assert (
        norm_gain_name("encoder.layer.1.attention.self.query.weight", bert) == "encoder.layer.0.output.LayerNorm.weight"
    )
    assert norm_gain_name("model.layers.5.self_attn.q_proj.weight", llama) is None
    assert norm_gain_name("blk.7.attn_q.weight", {"blk.7.attn_norm.weight"}) == "blk.7.attn_norm.weight"
    clip = {"vision_model.encoder.layers.2.layer_norm1.weight"}
    assert norm_gain_name("vision_model.encoder.layers.2.self_attn.q_proj.weight", clip) == next(iter(clip))
    opt = {"model.decoder.layers.1.self_attn_layer_norm.weight"}
    assert norm_gain_name("model.decoder.layers.1.self_attn.q_proj.weight", opt) == next(iter(opt))
    distil = {"distilbert.embeddings.LayerNorm.weight", "distilbert.transformer.layer.0.output_layer_norm.weight"}
    assert (
        norm_gain_name("distilbert.transformer.layer.1.attention.q_lin.weight", distil)
        == "distilbert.transformer.layer.0.output_layer_norm.weight"
    )
    assert (
        norm_gain_name("distilbert.transformer.layer.0.attention.q_lin.weight", distil)
        == "distilbert.embeddings.LayerNorm.weight"
    )


def stored(array):
    """What a float32 checkpoint holds of ``array``, back in float64."""
    return array.astype(np.float32).astype(np.float64)


def write_llama(directory, *, heads=8, kv=2, d=64, blocks=2, seed=0, config=True, scale=None):
    """A small Llama-shaped GQA checkpoint with planted per-head bounds and gains."""
    rng = np.random.default_rng(seed)
    dh = d // heads
    tensors, planted = {"model.embed_tokens.weight": rng.standard_normal((300, d)).astype(np.float32)}, {}
    for block in range(blocks):
        wq = rng.standard_normal((heads * dh, d)) * (scale[block] if scale else 1.0)
        wk = rng.standard_normal((kv * dh, d))
        gain = rng.uniform(0.5, 1.5, d)
        prefix = f"model.layers.{block}."
        tensors |= {
            prefix + "input_layernorm.weight": gain.astype(np.float32),
            prefix + "self_attn.q_proj.weight": wq.astype(np.float32),
            prefix + "self_attn.k_proj.weight": wk.astype(np.float32),
            prefix + "self_attn.v_proj.weight": rng.standard_normal((kv * dh, d)).astype(np.float32),
            prefix + "mlp.up_proj.weight": rng.standard_normal((2 * d, d)).astype(np.float32),
        }
        planted[block] = [
            explicit_bound(
                stored(wq[h * dh : (h + 1) * dh]),
                stored(wk[(h // (heads // kv)) * dh : (h // (heads // kv) + 1) * dh]),
                stored(gain),
            )
            for h in range(heads)
        ]
    directory.mkdir(parents=True, exist_ok=True)
    write_safetensors(directory / "model.safetensors", tensors)
    if config:
        (directory / "config.json").write_text(
            json.dumps(
                {"model_type": "llama", "hidden_size": d, "num_attention_heads": heads, "num_key_value_heads": kv}
            )
        )
    return planted


def test_checkpoint_bounds_from_config_json_with_gqa_and_gains(tmp_path):
    planted = write_llama(tmp_path / "m")
    report = analyze(tmp_path / "m" / "model.safetensors")
    attention = report.measures.attention
    assert (attention.status, attention.heads, attention.kv_heads, attention.head_dim) == ("ok", 8, 2, 8)
    assert attention.source.endswith("config.json")
    for bound in attention.layers:
        assert bound.gain == f"model.layers.{bound.block}.input_layernorm.weight"
        np.testing.assert_allclose(bound.heads, planted[bound.block], rtol=1e-6)
        assert bound.max == pytest.approx(max(planted[bound.block])) and bound.median == pytest.approx(
            np.median(planted[bound.block])
        )
    assert attention.max == pytest.approx(max(max(p) for p in planted.values()))
    again = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.measures == report.measures and again.to_dict() == report.to_dict()


def test_gguf_pre_attention_norm_gain_is_folded_in(tmp_path):
    """llama.cpp names the norm before attention ``blk.N.attn_norm``. Before, it was not
    recognised: SmolLM2-135M's bound read max 132.7 (gain: null, no note); with it, 1.61."""
    from tests.gguf_fixtures import write_gguf

    planted = write_llama(tmp_path / "hf", config=False)
    from weightscope.checkpoint import open_checkpoint

    reader = open_checkpoint(tmp_path / "hf" / "model.safetensors")
    weights = {info.name: reader.read(info) for info in reader.tensors()}
    write_gguf(tmp_path / "m.gguf", weights, "F32", heads=8, kv_heads=2, blocks=2)
    report = analyze(tmp_path / "m.gguf")
    attention = report.measures.attention
    assert attention.status == "ok" and not report.measures.notes
    for bound in attention.layers:
        assert bound.gain == f"blk.{bound.block}.attn_norm.weight"
        np.testing.assert_allclose(bound.heads, planted[bound.block], rtol=1e-5)


def test_a_missing_norm_gain_is_a_visible_note(tmp_path):
    write_llama(tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    from weightscope.checkpoint import open_checkpoint

    reader = open_checkpoint(path)
    write_safetensors(path, {info.name: reader.read(info) for info in reader.tensors() if "layernorm" not in info.name})
    result = runner.invoke(app, ["analyze", str(path), "-f", "json"])
    notes = json.loads(result.stdout)["measures"]["notes"]
    assert [note for note in notes if note.startswith("no norm gain found before q in block(s) 0, 1")]
    table = runner.invoke(app, ["analyze", str(path)])
    assert "no norm gain found before q" in " ".join(table.stdout.split())


def test_without_heads_the_bound_is_unavailable_and_says_why(tmp_path):
    planted = write_llama(tmp_path / "m", config=False)
    attention = analyze(tmp_path / "m" / "model.safetensors").measures.attention
    assert attention.status == "unavailable" and "--heads" in attention.reason and not attention.layers
    flagged = analyze(tmp_path / "m" / "model.safetensors", heads=8, kv_heads=2).measures.attention
    assert flagged.status == "ok" and flagged.source == "flags"
    np.testing.assert_allclose(flagged.layers[0].heads, planted[0], rtol=1e-6)
    # a head count that does not split q is a note per block, never a traceback
    bad = runner.invoke(app, ["analyze", str(tmp_path / "m" / "model.safetensors"), "--heads", "3", "-f", "json"])
    assert bad.exit_code == 0, bad.output
    data = json.loads(bad.stdout)["measures"]
    assert data["attention"]["status"] == "unavailable" and any("block 0" in note for note in data["notes"])
    assert runner.invoke(app, ["analyze", str(tmp_path / "m"), "--heads", "0"]).exit_code == 2
    write_llama(tmp_path / "c", kv=8)
    config = tmp_path / "c" / "config.json"
    config.write_text(config.read_text().replace('"num_key_value_heads": 8', '"num_key_value_heads": 2'))
    assert analyze(tmp_path / "c" / "model.safetensors").measures.attention.status == "unavailable"  # k does not split
    overridden = analyze(tmp_path / "c" / "model.safetensors", kv_heads=8).measures.attention  # --kv-heads alone
    assert overridden.status == "ok" and overridden.kv_heads == 8 and overridden.source.endswith("+ --kv-heads")
    off = analyze(tmp_path / "m" / "model.safetensors", measures=False)
    assert off.measures is None


def test_config_json_variants(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps({"text_config": {"num_attention_heads": 16, "num_key_value_heads": 4, "hidden_size": 1024}})
    )
    assert read_model_config(tmp_path) == {"head_count": 16, "head_count_kv": 4}
    path.write_text(json.dumps({"n_head": 12, "n_embd": 768, "head_dim": 64}))
    assert read_model_config(tmp_path) == {"head_count": 12, "head_count_kv": 12, "head_dim": 64}
    path.write_text("{ not json")
    assert read_model_config(tmp_path) == {}  # unknown, not an error: the bound says so


# --- embedding row clouds ----------------------------------------------------------------


def test_mean_cosine_and_pc1_share_against_brute_force():
    rng = np.random.default_rng(3)
    direction = rng.standard_normal(40)
    rows = 2.0 * direction / np.linalg.norm(direction) + rng.standard_normal((600, 40)) * 0.3
    rows[:, 0] += rng.standard_normal(600) * 1.5  # one dominant direction after centring
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    cosines = unit @ unit.T
    brute = (cosines.sum() - np.trace(cosines)) / (600 * 599)
    assert mean_cosine(rows.astype(np.float32)) == pytest.approx(brute, abs=1e-6)
    eigen = np.linalg.eigvalsh(np.cov(rows.T, bias=True))
    assert pc1_share(rows.astype(np.float32)) == pytest.approx(eigen[-1] / eigen.sum(), rel=1e-5)
    isotropic = rng.standard_normal((5000, 50)).astype(np.float32)
    assert abs(mean_cosine(isotropic)) < 1e-3
    assert pc1_share(isotropic) < 1.5 / 50  # ~1/d, plus sampling noise


def test_wide_matrices_use_the_subspace_iteration_and_agree_with_the_exact_share():
    rng = np.random.default_rng(12)
    d = GRAM_MAX_DIM + 76
    rows = rng.standard_normal((3000, d)) * 0.1
    rows += np.outer(rng.standard_normal(3000) * 3.0, orthonormal(rng, d, 1)[:, 0])  # a planted spike
    rows = rows.astype(np.float32)
    centred = rows.astype(np.float64) - rows.mean(axis=0, dtype=np.float64)
    singular = np.linalg.svd(centred, compute_uv=False) ** 2
    assert pc1_share(rows) == pytest.approx(singular[0] / singular.sum(), rel=1e-4)


def test_cone_anisotropy_follows_the_planted_mean():
    rng = np.random.default_rng(4)
    d, sigma = 64, 0.125
    mean = rng.standard_normal(d)
    mean *= 3.0 / np.linalg.norm(mean)
    rows = mean + rng.standard_normal((4000, d)) * sigma
    # for a large cloud, cos ≈ ‖μ‖² / (‖μ‖² + d σ²)
    assert mean_cosine(rows) == pytest.approx(9.0 / (9.0 + d * sigma**2), abs=0.01)


@pytest.mark.parametrize("dim", [2, 5, 10])
def test_intrinsic_dimension_of_a_linear_subspace(dim):
    rng = np.random.default_rng(dim)
    rows = rng.standard_normal((3000, dim)) @ orthonormal(rng, 64, dim).T
    twonn, twonn_se, mle, mle_se, used = intrinsic_dimension(rows, seed=0)
    assert used == 1000
    assert twonn == pytest.approx(dim, rel=0.12) and abs(twonn - dim) < 4 * twonn_se + 0.05 * dim
    assert mle == pytest.approx(dim, rel=0.15)
    assert 0 < twonn_se < 0.1 * dim and 0 < mle_se < 0.1 * dim


def test_intrinsic_dimension_error_bars_cover_the_sample_to_sample_spread():
    """The reported SE against the spread of the reported value over independent seeds
    (before: a bootstrap over one sample's points, 0.5–0.9× the spread on real embeddings)."""
    rng = np.random.default_rng(7)
    rows = rng.standard_normal((20_000, 40)) @ orthonormal(rng, 128, 40).T
    results = [intrinsic_dimension(rows, seed=seed, sample=400) for seed in range(10)]
    for value, error in ((0, 1), (2, 3)):
        spread = np.std([r[value] for r in results], ddof=1)
        assert 0.5 * spread < np.mean([r[error] for r in results]) < 2.0 * spread


def test_intrinsic_dimension_of_fewer_rows_than_a_sample_has_an_error_bar():
    """A vocabulary smaller than the sample: the samples must differ, or their spread is
    exactly 0 (the 256-token example model read "TwoNN 25.2 ± 1.6e-15")."""
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((600, 10)) @ orthonormal(rng, 64, 10).T
    twonn, twonn_se, mle, mle_se, used = intrinsic_dimension(rows, seed=0)
    assert used == 300
    assert twonn == pytest.approx(10, rel=0.2) and mle == pytest.approx(10, rel=0.2)
    assert 0.01 < twonn_se < 1.0 and 0.01 < mle_se < 1.0


def test_intrinsic_dimension_of_curved_manifolds():
    rng = np.random.default_rng(5)
    # a 2-torus, curved in 4-D and embedded in 50-D by a random rotation
    u, v = rng.uniform(0, 2 * np.pi, (2, 4000))
    torus = np.stack([np.cos(u), np.sin(u), np.cos(v), np.sin(v)], axis=1) @ orthonormal(rng, 50, 4).T
    assert intrinsic_dimension(torus)[0] == pytest.approx(2.0, rel=0.12)
    # a 3-sphere through a nonlinear feature map into 40-D
    sphere = rng.standard_normal((4000, 4))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    features = np.concatenate([sphere, np.sin(2 * sphere), sphere**2], axis=1) @ rng.standard_normal((12, 40))
    assert intrinsic_dimension(features)[0] == pytest.approx(3.0, rel=0.12)


def test_float32_neighbours_match_float64():
    rng = np.random.default_rng(6)
    rows = rng.standard_normal((400, 3)) @ orthonormal(rng, 30, 3).T + 5.0  # off-centre: centring matters
    fast = neighbour_distances(rows, 5)
    x = rows - rows.mean(axis=0)
    exact = np.sort(np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2) + np.diag(np.full(400, np.inf)), axis=1)[
        :, :5
    ]
    np.testing.assert_allclose(fast, exact, rtol=1e-3)
    ratios_fast, ratios_exact = np.log(fast[:, 1] / fast[:, 0]), np.log(exact[:, 1] / exact[:, 0])
    assert abs(ratios_fast.sum() - ratios_exact.sum()) / ratios_exact.sum() < 1e-3


def test_row_cloud_is_seeded_and_tied_heads_are_measured_once(tmp_path):
    rng = np.random.default_rng(7)
    embedding = rng.standard_normal((500, 32)).astype(np.float32)
    assert row_cloud("e", embedding, seed=3) == row_cloud("e", embedding, seed=3)
    write_safetensors(
        tmp_path / "tied.safetensors", {"model.embed_tokens.weight": embedding, "lm_head.weight": embedding}
    )
    measures = analyze(tmp_path / "tied.safetensors").measures
    assert [c.name for c in measures.embeddings] == ["model.embed_tokens.weight"]
    assert any("tied" in note for note in measures.notes)
    untied = embedding + rng.standard_normal(embedding.shape).astype(np.float32)
    write_safetensors(
        tmp_path / "untied.safetensors", {"model.embed_tokens.weight": embedding, "lm_head.weight": untied}
    )
    assert len(analyze(tmp_path / "untied.safetensors").measures.embeddings) == 2


# --- the intrinsic dimension of a fine-tune -----------------------------------------------


def test_planted_low_rank_update_against_the_random_baseline():
    rng = np.random.default_rng(8)
    n, m = 256, 128
    for rank in (1, 4, 20):
        update = orthonormal(rng, n, rank) @ orthonormal(rng, m, rank).T  # equal singular values
        evals = np.linalg.svd(update, compute_uv=False) ** 2
        ranks = update_ranks(evals, n, m)
        assert (ranks.rank90, ranks.rank99) == (math.ceil(0.9 * rank), math.ceil(0.99 * rank))
        assert ranks.concentrated and ranks.random_rank90 == energy_rank(random_profile(n, m), 0.9)


@pytest.mark.parametrize("shape", [(64, 64), (256, 128), (512, 96)])
def test_gaussian_updates_sit_on_the_marchenko_pastur_baseline(shape):
    rng = np.random.default_rng(9)
    baseline = energy_rank(random_profile(*shape), 0.9)
    for _ in range(8):
        evals = np.linalg.svd(rng.standard_normal(shape), compute_uv=False) ** 2
        ranks = update_ranks(evals * 123.0, *shape)  # the norm drops out
        assert abs(ranks.rank90 - baseline) <= 2 and not ranks.concentrated


def test_compare_sums_the_update_dimension_over_layers(tmp_path):
    rng = np.random.default_rng(10)
    base = {f"model.layers.{i}.mlp.up_proj.weight": rng.standard_normal((128, 64)).astype(np.float32) for i in range(3)}
    ranks = [2, 5, 10]
    tuned = {
        name: w + (orthonormal(rng, 128, r) @ orthonormal(rng, 64, r).T).astype(np.float32)
        for (name, w), r in zip(base.items(), ranks)
    }
    write_safetensors(tmp_path / "a.safetensors", base)
    write_safetensors(tmp_path / "b.safetensors", tuned)
    result = compare(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    dimension = result.summary.finetune
    expected = [math.ceil(0.9 * r) for r in ranks]
    assert [c.update.rank90 for c in result.layers] == expected
    assert dimension.directions90 == sum(expected) and dimension.params == 3 * 128 * 64
    assert dimension.params90 == sum(expected) * (128 + 64) and dimension.concentrated == 3
    assert dimension.share == pytest.approx(sum(expected) * 192 / (3 * 128 * 64))
    table = runner.invoke(
        app, ["compare", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")], env={"COLUMNS": "200"}
    )
    assert "intrinsic dimension of the update" in table.stdout


# --- distance from init --------------------------------------------------------------------


def test_distance_from_init_is_the_planted_relative_change(tmp_path):
    rng = np.random.default_rng(11)
    w0 = rng.standard_normal((64, 80)).astype(np.float32)
    step = rng.standard_normal((64, 80)).astype(np.float32)
    write_safetensors(tmp_path / "0.safetensors", {"w": w0, "only0": w0})
    write_safetensors(tmp_path / "1.safetensors", {"w": w0 + 0.5 * step, "only1": w0})
    with (
        open_checkpoint(tmp_path / "1.safetensors") as reader,
        open_checkpoint(tmp_path / "0.safetensors") as reference,
    ):
        found = distance_from_init(reader, reference, ["w", "only1"])
    expected = np.linalg.norm(0.5 * step.astype(np.float64)) / np.linalg.norm(w0.astype(np.float64))
    assert found["w"] == pytest.approx(expected, rel=1e-5) and found["only1"] is None


def test_a_bad_block_or_embedding_is_a_note_not_a_lost_report(tmp_path):
    rng = np.random.default_rng(13)
    q = rng.standard_normal((64, 64)).astype(np.float32)
    q[3, 4] = np.nan
    embedding = rng.standard_normal((300, 64)).astype(np.float32)
    embedding[5, 5] = np.inf
    tensors = {
        "model.layers.0.self_attn.q_proj.weight": q,
        "model.layers.0.self_attn.k_proj.weight": rng.standard_normal((64, 64)).astype(np.float32),
        "model.layers.1.self_attn.q_proj.weight": rng.standard_normal((64, 64)).astype(np.float32),
        "model.layers.1.self_attn.k_proj.weight": rng.standard_normal((64, 64)).astype(np.float32),
        "model.embed_tokens.weight": embedding,
    }
    write_safetensors(tmp_path / "m.safetensors", tensors)
    measures = analyze(tmp_path / "m.safetensors", heads=4).measures
    assert measures.attention.status == "ok" and [b.block for b in measures.attention.layers] == [1]
    assert "block 0: no logit bound (non-finite weights)" in measures.notes
    assert measures.embeddings == [] and any("embed_tokens" in note and "non-finite" in note for note in measures.notes)


def write_gemma_shaped(directory, offsets, model_type="gemma"):
    """Blocks whose q and k are the 64×64 identity, one head of size 64, and a norm weight
    of one value per block: the bound is g²/√64 for an effective gain g, by hand."""
    eye = np.eye(64, dtype=np.float32)
    tensors = {"model.embed_tokens.weight": np.random.default_rng(0).standard_normal((300, 64)).astype(np.float32)}
    for block, w in enumerate(offsets):
        prefix = f"model.layers.{block}."
        tensors |= {
            prefix + "input_layernorm.weight": np.full(64, w, dtype=np.float32),
            prefix + "self_attn.q_proj.weight": eye,
            prefix + "self_attn.k_proj.weight": eye,
        }
    directory.mkdir(parents=True, exist_ok=True)
    write_safetensors(directory / "model.safetensors", tensors)
    config = {"model_type": model_type, "hidden_size": 64, "num_attention_heads": 1, "num_key_value_heads": 1}
    (directory / "config.json").write_text(json.dumps({**config, "head_dim": 64}))
    return tensors


def test_gemma_norm_weights_are_offsets_of_the_effective_gain(tmp_path):
    """Gemma's RMSNorm multiplies by (1 + w) and stores w: stored 0.5 and −0.5 are gains 1.5
    and 0.5, so the identity q/k give 1.5²/8 and 0.5²/8 (read as stored: 0.5²/8 both)."""
    write_gemma_shaped(tmp_path / "gemma", [0.5, -0.5])
    bounds = analyze(tmp_path / "gemma" / "model.safetensors").measures.attention.layers
    assert [b.max for b in bounds] == pytest.approx([1.5**2 / 8, 0.5**2 / 8], rel=1e-6)
    assert bounds[0].gain == "1 + model.layers.0.input_layernorm.weight"
    write_gemma_shaped(tmp_path / "llama", [0.5, -0.5], model_type="llama")
    bounds = analyze(tmp_path / "llama" / "model.safetensors").measures.attention.layers
    assert [b.max for b in bounds] == pytest.approx([0.5**2 / 8, 0.5**2 / 8], rel=1e-6)
    assert bounds[0].gain == "model.layers.0.input_layernorm.weight"


def test_a_gemma_gguf_norm_is_read_as_stored(tmp_path):
    """llama.cpp's converter writes Gemma's norms as 1 + w, so a GGUF's attn_norm is the
    effective gain already, whatever the architecture says."""
    import gguf

    tensors = write_gemma_shaped(tmp_path / "hf", [1.5, 0.5])
    mapping = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA, 2)
    writer = gguf.GGUFWriter(str(tmp_path / "hf" / "m.gguf"), "gemma")  # beside a Gemma config.json
    writer.add_block_count(2)
    writer.add_head_count(1)
    writer.add_head_count_kv(1)
    writer.add_embedding_length(64)
    for name, w in tensors.items():
        writer.add_tensor(mapping.get_name(name, try_suffixes=(".weight",)), w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    report = analyze(tmp_path / "hf" / "m.gguf")
    bounds = report.measures.attention.layers
    assert report.metadata.get("architecture") == "gemma"
    assert [b.max for b in bounds] == pytest.approx([1.5**2 / 8, 0.5**2 / 8], rel=1e-6)
    assert bounds[0].gain == "blk.0.attn_norm.weight"
