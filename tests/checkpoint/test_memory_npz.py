"""Models in memory and .npz archives give the report their saved file gives."""

import dataclasses

import numpy as np
import pytest
from typer.testing import CliRunner

import weightscope
from tests.helpers import planted_power_law
from weightscope.checkpoint import open_checkpoint, write_safetensors
from weightscope.cli import app
from weightscope.errors import CheckpointError
from weightscope.execution.plan import Execution

runner = CliRunner()
NO_CACHE = Execution(cache=False, workers=1)


def weights():
    return {
        "model.layers.0.self_attn.q_proj.weight": planted_power_law(160, 128, 3.0, 1),
        "model.layers.0.mlp.up_proj.weight": planted_power_law(256, 128, 4.0, 2),
        "model.layers.0.input_layernorm.weight": np.ones(128, np.float32),
    }


def same_numbers(a, b):
    assert [dataclasses.replace(layer) for layer in a.layers] == list(b.layers)
    assert a.skipped == b.skipped and a.summary == b.summary


def test_state_dict_of_numpy_arrays_and_npz_match_the_safetensors_file(tmp_path):
    state = weights()
    write_safetensors(tmp_path / "m.safetensors", state)
    np.savez(tmp_path / "m.npz", **state)
    np.savez_compressed(tmp_path / "c.npz", **state)
    from_file = weightscope.analyze(tmp_path / "m.safetensors", execution=NO_CACHE)
    from_memory = weightscope.analyze(state, execution=NO_CACHE)
    assert from_memory.source == "<state dict in memory>" and from_memory.format == "memory"
    same_numbers(from_memory, from_file)
    for name in ("m.npz", "c.npz"):
        from_npz = weightscope.analyze(tmp_path / name, execution=NO_CACHE)
        assert from_npz.format == "npz"
        same_numbers(from_npz, from_file)


def test_torch_module_and_its_state_dict_match_the_saved_file(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 192), torch.nn.ReLU(), torch.nn.Linear(192, 96)).to(torch.bfloat16)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.safetensors")
    torch.save(model.state_dict(), tmp_path / "m.pt")
    from_file = weightscope.analyze(tmp_path / "m.safetensors", execution=NO_CACHE)
    assert [layer.dtype for layer in from_file.layers] == ["BF16", "BF16"]
    for obj in (model, model.state_dict(), {"state_dict": model.state_dict()}):
        same_numbers(weightscope.analyze(obj, execution=NO_CACHE), from_file)
    same_numbers(weightscope.analyze(tmp_path / "m.pt", execution=NO_CACHE), from_file)
    assert weightscope.analyze(model, execution=NO_CACHE).source == "<Sequential in memory>"
    comparison = weightscope.compare(model.state_dict(), tmp_path / "m.safetensors", execution=NO_CACHE)
    assert all(change.update.relative_norm == 0 for change in comparison.layers)


def test_bad_objects_and_npz_are_one_error_line(tmp_path):
    with pytest.raises(CheckpointError, match="cannot analyse a int"):
        open_checkpoint(3)
    with pytest.raises(CheckpointError, match="holds no tensors"):
        open_checkpoint({"lr": 0.1})
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}] * 64, dtype=object).reshape(8, 8))
    report = weightscope.analyze(tmp_path / "obj.npz", execution=NO_CACHE)  # listed, never unpickled
    assert not report.layers and report.skipped[0].reason == "non-float dtype object"
    np.savez(tmp_path / "ok.npz", w=planted_power_law(128, 64, 3.0, 0))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:-200])
    cut = runner.invoke(app, ["analyze", str(tmp_path / "cut.npz")])
    assert cut.exit_code == 2 and cut.output.startswith("error:")


def test_to_pandas_one_row_per_layer_with_weightwatcher_columns():
    pandas = pytest.importorskip("pandas")
    report = weightscope.analyze(weights(), execution=NO_CACHE)
    frame = report.to_pandas()
    assert isinstance(frame, pandas.DataFrame) and len(frame) == len(report.layers) == 2
    for column in (
        "layer_id",
        "longname",
        "alpha",
        "alpha_weighted",
        "D",
        "xmin",
        "xmax",
        "num_pl_spikes",
        "N",
        "M",
        "matrix_rank",
        "lambda_max",
        "log_norm",
        "log_spectral_norm",
        "stable_rank",
        "num_evals",
    ):
        assert column in frame.columns, column
    first = report.layers[0]
    row = frame.iloc[0]
    assert row["longname"] == first.name and row["alpha"] == first.alpha and row["num_pl_spikes"] == first.num_tail
    assert (row["N"], row["M"]) == (160, 128) and row["matrix_rank"] == first.rank.numerical_rank
