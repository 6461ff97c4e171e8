"""The pipeline end to end on synthetic checkpoints with known answers."""

import numpy as np
import pytest

import weightscope
from tests.helpers import gaussian, planted_power_law
from weightscope.checkpoint import write_safetensors
from weightscope.checkpoint.safetensors_reader import SafetensorsReader
from weightscope.errors import CheckpointError, WeightscopeError


@pytest.fixture()
def checkpoint(tmp_path):
    nan_matrix = gaussian(128, 96, 3)
    nan_matrix[5, 7] = np.nan
    nan_matrix[6, 8] = np.inf
    tensors = {
        "model.layers.0.self_attn.q_proj.weight": gaussian(256, 128, 1),
        "model.layers.0.mlp.up_proj.weight": planted_power_law(512, 256, 3.0, 2),
        "model.layers.0.self_attn.k_proj.weight": nan_matrix,
        "model.layers.0.self_attn.v_proj.weight": np.zeros((128, 96), np.float32),
        "model.layers.0.input_layernorm.weight": np.ones(128, np.float32),
        "model.position_ids": np.arange(128 * 64, dtype=np.int64).reshape(128, 64),
        "conv.weight": gaussian(64 * 9, 80, 4).reshape(64, 80, 3, 3),
    }
    path = tmp_path / "model.safetensors"
    write_safetensors(path, tensors)
    return path


def test_report_covers_every_tensor_and_bad_layers_do_not_stop_it(checkpoint):
    report = weightscope.analyze(checkpoint)
    by_name = {layer.name: layer for layer in report.layers}
    assert set(by_name) == {
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.mlp.up_proj.weight",
        "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.self_attn.v_proj.weight",
        "conv.weight",
    }
    nan_layer = by_name["model.layers.0.self_attn.k_proj.weight"]
    assert nan_layer.status == "failed" and nan_layer.alpha is None
    assert nan_layer.reason == "weights contain 1 NaN and 1 Inf values"
    zero_layer = by_name["model.layers.0.self_attn.v_proj.weight"]
    assert zero_layer.status == "failed" and "all-zero" in zero_layer.reason
    skipped = {s.name: s.reason for s in report.skipped}
    assert skipped == {
        "model.layers.0.input_layernorm.weight": "1-D tensor (bias or norm)",
        "model.position_ids": "non-float dtype I64",
    }
    assert (report.summary.analysed, report.summary.failed, report.summary.skipped) == (3, 2, 2)
    assert report.format == "safetensors" and report.schema == "weightscope.report/4"


def test_planted_tail_exponent_is_recovered_and_random_is_light_tailed(checkpoint):
    report = weightscope.analyze(checkpoint)
    planted = report.layer("model.layers.0.mlp.up_proj.weight")
    assert planted.kind == "up" and planted.block == 0
    assert planted.alpha == pytest.approx(3.0, abs=0.3)
    assert planted.num_evals == 256 and planted.num_tail >= 10
    assert planted.sigma == pytest.approx((planted.alpha - 1) / np.sqrt(planted.num_tail))
    assert planted.alpha_weighted == pytest.approx(planted.alpha * np.log10(planted.lambda_max))
    random_layer = report.layer("model.layers.0.self_attn.q_proj.weight")
    assert random_layer.alpha > 4  # an MP bulk has no heavy tail


def test_conv_kernel_pools_one_esd_over_kernel_positions(checkpoint):
    conv = weightscope.analyze(checkpoint, include=["conv"]).layer("conv.weight")
    assert conv.kind == "conv" and conv.status == "ok"
    assert conv.num_evals == 9 * 64


def test_include_reads_no_other_tensor(checkpoint, monkeypatch):
    read = []
    original = SafetensorsReader.read

    def spy(self, info):
        read.append(info.name)
        return original(self, info)

    monkeypatch.setattr(SafetensorsReader, "read", spy)
    report = weightscope.analyze(checkpoint, include=[r"mlp\."])
    assert read == ["model.layers.0.mlp.up_proj.weight"]
    assert [layer.name for layer in report.layers] == read
    assert any(s.reason == "not matched by --include" for s in report.skipped)


def test_bf16_checkpoint_and_float32_eigensolver_agree_with_float64(tmp_path):
    w = planted_power_law(400, 200, 3.5, 7)
    write_safetensors(tmp_path / "a.safetensors", {"w": w}, dtypes={"w": "BF16"})
    f64 = weightscope.analyze(tmp_path / "a.safetensors", min_evals=10).layer("w")
    f32 = weightscope.analyze(tmp_path / "a.safetensors", min_evals=10, eig_dtype="float32").layer("w")
    assert f64.dtype == "BF16"
    assert f32.alpha == pytest.approx(f64.alpha, rel=1e-3)


def test_torch_pickle_gives_the_same_report_as_safetensors(tmp_path):
    torch = pytest.importorskip("torch")
    weights = {"model.layers.1.mlp.down_proj.weight": planted_power_law(300, 150, 4.0, 9)}
    write_safetensors(tmp_path / "m.safetensors", weights)
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in weights.items()}}, tmp_path / "m.ckpt")
    a = weightscope.analyze(tmp_path / "m.safetensors").layers
    b = weightscope.analyze(tmp_path / "m.ckpt").layers
    assert a == b


def test_bad_paths_and_options_raise_user_errors(tmp_path):
    with pytest.raises(CheckpointError):
        weightscope.analyze(tmp_path / "missing.safetensors")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError):
        weightscope.analyze(tmp_path / "notes.txt")
    with pytest.raises(WeightscopeError, match="unknown analysis option"):
        weightscope.analyze(tmp_path, colour="red")
    with pytest.raises(WeightscopeError, match="eigenvalue dtype"):
        weightscope.analyze(tmp_path, eig_dtype="float16")


def test_a_traps_cleaned_copy_is_solved_in_its_layers_precision(tmp_path, monkeypatch):
    """The spectrum without the outsized entries is compared with the layer's own, so it is
    solved alike: under "auto" in float32 (an F32 layer of aspect 0.25), under "float64"
    in float64."""
    from weightscope.checks import traps
    from weightscope.execution.plan import Execution

    w = gaussian(512, 128, 0)
    w[7, 3] = 1000 * float(np.std(w))
    path = tmp_path / "trap.safetensors"
    write_safetensors(path, {"layer.weight": w})
    solved = []
    esd = traps.esd
    monkeypatch.setattr(traps, "esd", lambda matrices, options: solved.append(options.dtype) or esd(matrices, options))
    for precision in ("auto", "float64"):
        report = weightscope.analyze(path, randomize=True, eig_dtype=precision, execution=Execution(cache=False))
        assert report.layers[0].traps is not None and report.layers[0].traps.entries
    assert solved == ["float32", "float64"]
