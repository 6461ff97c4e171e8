"""Layer selection, kinds and block indices, from metadata alone."""

import numpy as np
import pytest

from weightscope.checkpoint.base import TensorInfo
from weightscope.checkpoint.layers import (
    block_index,
    layer_kind,
    layer_matrices,
    select_layers,
)
from weightscope.errors import WeightscopeError


def info(name, shape, dtype="F32"):
    return TensorInfo(name, tuple(shape), dtype, "x.safetensors", 4 * int(np.prod(shape)))


@pytest.mark.parametrize(
    "name, kind, block",
    [
        ("model.embed_tokens.weight", "embedding", None),
        ("model.layers.3.self_attn.q_proj.weight", "q", 3),
        ("model.layers.3.self_attn.k_proj.weight", "k", 3),
        ("model.layers.3.self_attn.v_proj.weight", "v", 3),
        ("model.layers.3.self_attn.o_proj.weight", "o", 3),
        ("model.layers.12.mlp.gate_proj.weight", "gate", 12),
        ("model.layers.12.mlp.up_proj.weight", "up", 12),
        ("model.layers.12.mlp.down_proj.weight", "down", 12),
        ("lm_head.weight", "lm_head", None),
        ("bert.embeddings.word_embeddings.weight", "embedding", None),
        ("bert.encoder.layer.5.attention.self.query.weight", "q", 5),
        ("bert.encoder.layer.5.attention.self.key.weight", "k", 5),
        ("bert.encoder.layer.5.attention.self.value.weight", "v", 5),
        ("bert.encoder.layer.5.attention.output.dense.weight", "o", 5),
        ("bert.encoder.layer.5.intermediate.dense.weight", "up", 5),
        ("bert.encoder.layer.5.output.dense.weight", "down", 5),
        ("transformer.wte.weight", "embedding", None),
        ("transformer.h.7.attn.c_attn.weight", "qkv", 7),
        ("transformer.h.7.attn.c_proj.weight", "o", 7),
        ("transformer.h.7.mlp.c_fc.weight", "up", 7),
        ("transformer.h.7.mlp.c_proj.weight", "down", 7),
        ("shared.weight", "embedding", None),
        ("encoder.block.2.layer.0.SelfAttention.q.weight", "q", 2),
        ("encoder.block.2.layer.0.SelfAttention.o.weight", "o", 2),
        ("encoder.block.2.layer.1.DenseReluDense.wi.weight", "up", 2),
        ("encoder.block.2.layer.1.DenseReluDense.wo.weight", "down", 2),
        ("decoder.block.1.layer.2.DenseReluDense.wi_0.weight", "gate", 1),
        ("model.layers.0.block_sparse_moe.experts.3.w2.weight", "down", 0),
        ("something.unknown", "other", None),
    ],
)
def test_kind_and_block_from_common_naming_schemes(name, kind, block):
    assert layer_kind(name, 2) == kind
    assert block_index(name) == block


def test_conv_kernels_are_kind_conv_and_sliced_per_kernel_position():
    assert layer_kind("features.3.weight", 4) == "conv"
    kernel = np.arange(64 * 32 * 3 * 3, dtype=np.float32).reshape(64, 32, 3, 3)
    slices = layer_matrices(kernel)
    assert len(slices) == 9
    assert all(s.shape == (64, 32) for s in slices)
    np.testing.assert_array_equal(slices[4], kernel[:, :, 1, 1])


def test_selection_skips_with_reasons_and_filters_before_reading():
    tensors = [
        info("model.layers.0.self_attn.q_proj.weight", (128, 128)),
        info("model.layers.0.self_attn.q_proj.bias", (128,)),
        info("model.layers.0.tiny.weight", (128, 49)),
        info("model.layers.0.ids", (128, 128), "I64"),
        info("model.layers.1.self_attn.q_proj.weight", (128, 128)),
        info("model.layers.0.empty", (0, 128)),
        info("model.layers.0.scale", ()),
    ]
    selection = select_layers(tensors, include=(r"layers\.0\.",), exclude=("ids",), min_evals=50)
    assert [s.name for s in selection.layers] == ["model.layers.0.self_attn.q_proj.weight"]
    reasons = {s.name: s.reason for s in selection.skipped}
    assert reasons == {
        "model.layers.0.self_attn.q_proj.bias": "1-D tensor (bias or norm)",
        "model.layers.0.tiny.weight": "smaller side 49 < min_evals 50",
        "model.layers.0.ids": "matched by --exclude",
        "model.layers.1.self_attn.q_proj.weight": "not matched by --include",
        "model.layers.0.empty": "empty tensor",
        "model.layers.0.scale": "scalar",
    }


def test_integer_tensors_are_skipped_with_their_dtype():
    selection = select_layers([info("pos_ids", (512, 512), "I64")])
    assert selection.skipped[0].reason == "non-float dtype I64"


def test_bad_regex_is_a_one_line_user_error():
    with pytest.raises(WeightscopeError, match="--include"):
        select_layers([], include=("(",))
