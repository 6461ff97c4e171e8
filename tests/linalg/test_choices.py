"""Which dtype a layer is solved in first (`weightscope.linalg.choices.solve_dtype`), and
what the scheduler budgets for it (`weightscope.execution.plan`)."""

from __future__ import annotations

import pytest

from weightscope.checkpoint.base import TensorInfo
from weightscope.checkpoint.layers import LayerSpec
from weightscope.execution.plan import float64_stage_bytes, working_set
from weightscope.linalg.choices import solve_dtype
from weightscope.options import AnalysisOptions


@pytest.mark.parametrize(
    ("stored", "shape", "solved"),
    [
        ("BF16", (4096, 4096), "float64"),  # the Llama block's attention projections
        ("F16", (4096, 4096), "float64"),
        ("BF16", (3584, 4096), "float64"),  # aspect 0.875
        ("BF16", (11008, 4096), "float32"),  # its MLP: aspect 0.37, no eigenvalue near zero
        ("BF16", (4096, 11008), "float32"),
        ("BF16", (64, 64, 3, 3), "float64"),  # a conv kernel: its channel matrices are square
        ("F32", (4096, 4096), "float32"),  # matrix_rank's thresholds: float32 settles them as a rule
        ("F8_E4M3", (4096, 4096), "float32"),
        ("BF16", (0, 0), "float32"),
    ],
)
def test_auto_solves_near_square_16_bit_layers_in_float64(stored, shape, solved):
    assert solve_dtype("auto", stored, shape) == solved


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_a_fixed_precision_is_what_is_solved(precision):
    assert solve_dtype(precision, "BF16", (4096, 4096)) == precision
    assert solve_dtype(precision, "F32", (11008, 4096)) == precision


def _spec(shape: tuple[int, int], dtype: str = "BF16") -> LayerSpec:
    info = TensorInfo("layers.0.w", shape, dtype, "m.safetensors", shape[0] * shape[1] * 2)
    return LayerSpec(info, "attn", 0)


def test_the_plan_budgets_the_float64_gram_of_a_layer_solved_in_float64():
    auto, float32 = AnalysisOptions(), AnalysisOptions(eig_dtype="float32")
    square, tall = _spec((1024, 1024)), _spec((2816, 1024))
    gram = 1024 * 1024
    # the float64 Gram matrix in the layer's own working set, and no float64 stage beside it
    assert working_set(square, auto) - working_set(square, float32) == 4 * gram
    assert float64_stage_bytes(square, auto, "cpu") == 0
    # a float32-solved layer: its float32 Gram matrix, and the stage's room for the count
    assert working_set(tall, auto) == working_set(tall, float32)
    assert float64_stage_bytes(tall, auto, "cpu") >= 4 * gram
