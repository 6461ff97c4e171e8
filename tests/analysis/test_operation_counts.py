"""What an analysis does per layer, counted: reads, Gram products and eigensolves.

A spy, not a timer: a change that reads a tensor twice, multiplies a matrix twice in one
precision or solves a spectrum twice in one precision fails here whatever the machine's
speed. The checkpoint is a small Llama-shaped BF16 model with a config.json, an untied
lm_head and square layers whose float32 spectra cannot settle their rank, so the "auto"
precision's float64 stage runs too (at most once per layer).
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

import weightscope.linalg.spectrum as spectrum
from weightscope.analysis.pipeline import analyze
from weightscope.checkpoint.safetensors_reader import SafetensorsReader
from weightscope.checkpoint.writer import write_safetensors
from weightscope.execution import cache as cache_module
from weightscope.execution.plan import Execution

HIDDEN, FFN, VOCAB, HEADS = 64, 160, 700, 4


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    rng = np.random.default_rng(0)
    directory = tmp_path_factory.mktemp("counted")
    tensors = {
        "model.embed_tokens.weight": rng.standard_normal((VOCAB, HIDDEN)),
        "lm_head.weight": rng.standard_normal((VOCAB, HIDDEN)),
    }
    for block in range(2):
        prefix = f"model.layers.{block}."
        tensors |= {f"{prefix}self_attn.{p}_proj.weight": rng.standard_normal((HIDDEN, HIDDEN)) for p in "qkvo"}
        tensors |= {
            f"{prefix}mlp.gate_proj.weight": rng.standard_normal((FFN, HIDDEN)),
            f"{prefix}mlp.up_proj.weight": rng.standard_normal((FFN, HIDDEN)),
        }
        tensors[f"{prefix}mlp.down_proj.weight"] = rng.standard_normal((HIDDEN, FFN))
        tensors[f"{prefix}input_layernorm.weight"] = 1.0 + 0.1 * rng.standard_normal(HIDDEN)
    tensors = {name: (0.02 * value).astype(np.float32) for name, value in tensors.items()}
    write_safetensors(directory / "model.safetensors", tensors, dtypes=dict.fromkeys(tensors, "BF16"))
    (directory / "config.json").write_text(
        json.dumps({"model_type": "llama", "num_attention_heads": HEADS, "num_key_value_heads": HEADS})
    )
    return directory


@pytest.fixture
def counted(monkeypatch):
    """Counters of tensor reads (by name), Gram products and eigensolves (by dtype)."""
    counts = {"reads": Counter(), "grams": Counter(), "solves": Counter()}

    def spy(module, name, record):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            record(*args, **kwargs)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    spy(SafetensorsReader, "read", lambda self, info: counts["reads"].update([info.name]))
    spy(spectrum, "gram_matrix", lambda matrix, dtype="float64": counts["grams"].update([dtype]))
    spy(spectrum, "symmetric_eigenvalues", lambda gram: counts["solves"].update([gram.dtype.name]))
    return counts


def layers_of(report):
    return [layer for layer in report.layers if layer.status == "ok"]


@pytest.mark.parametrize("workers", [1, 2])
def test_each_tensor_is_read_once_multiplied_once_and_solved_once(model, counted, workers):
    report = analyze(model, measures=False, execution=Execution(workers=workers, cache=False))
    layers = layers_of(report)
    assert len(layers) == 16
    assert set(counted["reads"].values()) == {1}, counted["reads"]  # every matrix, once
    assert counted["solves"]["float32"] == counted["grams"]["float32"] == len(layers)  # once per layer
    assert 0 < counted["solves"]["float64"] == counted["grams"]["float64"] <= len(layers)  # the float64 stage


def test_randomised_analysis_adds_one_solve_and_no_read(model, counted):
    report = analyze(model, randomize=True, measures=False, execution=Execution(workers=1, cache=False))
    layers = layers_of(report)
    assert set(counted["reads"].values()) == {1}
    assert (
        counted["solves"]["float32"] == counted["grams"]["float32"] == 2 * len(layers)
    )  # the layer and its shuffled copy


def test_a_cached_spectrum_is_neither_multiplied_nor_solved(model, counted, tmp_path, monkeypatch):
    # The module's checkpoint was written moments ago: inside the cache's racy window a
    # file is not cached at all (execution.cache.RACY_SECONDS), so on a fast machine the
    # second run would solve again. The window is not what this test is about.
    monkeypatch.setattr(cache_module, "RACY_SECONDS", 0.0)
    execution = Execution(workers=1, cache_dir=str(tmp_path))
    analyze(model, measures=False, execution=execution)
    counted["solves"], counted["grams"] = Counter(), Counter()
    analyze(model, measures=False, execution=execution)
    assert not counted["solves"] and not counted["grams"]


def test_root_help_lists_each_command_by_its_own_first_line():
    """`weightscope --help` lists the commands from a table, without importing them; the
    table's lines must be the commands' own."""
    import typer.main

    from weightscope.cli.app import COMMANDS, app

    for module, _ in COMMANDS.values():
        __import__(f"weightscope.cli.{module}")
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]  # a multi-command app builds a Group
    for name, (_, summary) in COMMANDS.items():
        assert (commands[name].help or "").strip().splitlines()[0] == summary, name
