"""Adapters judged as adapters, with real `peft`: the gate on an adapter directory and on a
base + adapter, an in-memory PEFT model read as base + adapter, and what `analyze` prints."""

import copy
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from weightscope.analysis.pipeline import analyze
from weightscope.checkpoint import write_safetensors
from weightscope.cli import app
from weightscope.commands.compare import compare

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

runner = CliRunner()

BROKEN = "layers.1.value"  # the module the broken adapters break


class Block(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.query, self.key, self.value, self.out = (torch.nn.Linear(dim, dim) for _ in range(4))


class Tiny(torch.nn.Module):
    """Three attention-like blocks: small enough for a test, named as models are."""

    def __init__(self, dim=96, blocks=3):
        super().__init__()
        self.layers = torch.nn.ModuleList(Block(dim) for _ in range(blocks))


def peft_model(base, trained=True):
    """``base`` (copied) with a rank-8 LoRA on query and value; ``trained`` gives B factors
    of a trained adapter's scale (PEFT initialises B to zero)."""
    model = peft.get_peft_model(
        copy.deepcopy(base), peft.LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"])
    )
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if trained and "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return model


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """A base model file and peft-saved adapters: sane, B ×1e4 in one module, a NaN in
    one module's B, and an untrained one (B = 0)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("adapters")
    base = Tiny()
    write_safetensors(root / "base.safetensors", {k: v.numpy() for k, v in base.state_dict().items()})
    peft_model(base).save_pretrained(root / "sane")
    peft_model(base, trained=False).save_pretrained(root / "untrained")
    factors = safetensors_numpy.load_file(root / "sane" / "adapter_model.safetensors")
    key = f"base_model.model.{BROKEN}.lora_B.weight"
    for name, change in (
        ("big", lambda b: b * 1e4),
        ("nan", lambda b: np.where(np.arange(b.size).reshape(b.shape) == 7, np.nan, b)),
    ):
        shutil.copytree(root / "sane", root / name)
        safetensors_numpy.save_file(
            {**factors, key: change(factors[key]).astype(np.float32)}, root / name / "adapter_model.safetensors"
        )
    return root, base


def gate_lines(*args):
    result = runner.invoke(app, ["gate", *map(str, args)])
    return result.exit_code, [line for line in result.stdout.splitlines() if line.startswith("FAIL")], result.output


def test_a_sane_adapter_passes_without_any_power_law_rule(adapters):
    root, _ = adapters
    code, _fails, output = gate_lines(root / "sane")
    assert code == 0, output
    assert "alpha" not in output and "not computed" not in output


@pytest.mark.parametrize("broken, rules", [("big", {"update-size", "update-share"}), ("nan", {"failed-layer"})])
def test_a_broken_module_fails_by_name(adapters, broken, rules):
    root, _ = adapters
    code, fails, _ = gate_lines(root / broken)
    assert code == 1
    assert {line.split("]")[0].removeprefix("FAIL [") for line in fails} == rules
    assert all(f"{BROKEN}.weight" in line and "Fix: " in line for line in fails)


def test_an_untrained_adapter_fails_every_module(adapters):
    root, _ = adapters
    code, fails, _ = gate_lines(root / "untrained")
    assert code == 1 and len(fails) == 6 and all("[update-rank]" in line and "zero update" in line for line in fails)


def test_base_plus_adapter_judges_the_update_against_the_base_weights(adapters):
    root, _ = adapters
    assert gate_lines(root / "base.safetensors", "--adapter", root / "sane")[0] == 0
    for broken in ("big", "nan"):
        code, fails, _ = gate_lines(root / "base.safetensors", "--adapter", root / broken)
        assert code == 1 and fails and all(f"{BROKEN}.weight" in line for line in fails)


def test_analyze_of_an_adapter_prints_no_empty_alpha_lines_and_no_qk_notes(adapters):
    root, _ = adapters
    result = runner.invoke(app, ["analyze", str(root / "sane")])
    assert result.exit_code == 0
    assert "median alpha" not in result.stdout and "alpha <" not in result.stdout
    assert "q/k" not in result.stdout and "attention-logit" not in result.stdout


def test_an_in_memory_peft_model_is_base_plus_adapter(adapters):
    _, base = adapters
    model = peft_model(base)
    report = analyze(model)
    assert report.metadata["read_as"].startswith("a PEFT model in memory")
    assert sorted(layer.name for layer in report.layers) == sorted(
        f"layers.{i}.{m}.weight" for i in range(3) for m in ("query", "value")
    )
    comparison = compare(base, model)
    assert comparison.mode == "adapter" and len(comparison.layers) == 6 and comparison.only_b == []
    assert any("PEFT model in memory" in note for note in comparison.aligned)
    for change in comparison.layers:
        module = model.base_model.model.get_submodule(change.name.removesuffix(".weight"))
        delta = (module.lora_B["default"].weight @ module.lora_A["default"].weight).detach().numpy() * 2.0
        w = base.get_submodule(change.name.removesuffix(".weight")).weight.detach().numpy()
        assert change.update.relative_norm == pytest.approx(np.linalg.norm(delta) / np.linalg.norm(w), rel=1e-5)
