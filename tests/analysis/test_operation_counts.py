"""What an analysis does per layer, counted: reads, Gram products and eigensolves.

A spy, not a timer: a change that reads a tensor twice, forms a matrix's Gram product
twice in one precision, or solves a spectrum twice (in any precision) fails here whatever
the machine's speed. Products and solves are told apart by the bytes of the matrix they
were given. The checkpoint is a small Llama-shaped BF16 model with a config.json, an
untied lm_head and layers whose float32 spectra cannot settle their rank. Under the "auto"
precision its eight square attention projections are solved in float64 outright (one
float64 Gram product and solve each, nothing in float32:
`weightscope.linalg.choices.solve_dtype`); the other layers are solved in float32, and
the float64 stage runs where their rank needs it: one float64 Gram product for the inertia
count of such a layer, and no float64 eigensolve — except on the one rank-collapsed layer
(rank 8 of 64), which "auto" solves again in float64 after the count
(`weightscope.analysis.spectra.layer_esd`): a second Gram product and a second solve
there, and nowhere else.

With the model-level measures on, nothing changes: each measured tensor gives its part
while its layer holds it (a projection's R factors, a token matrix's row cloud from the
Gram matrix its spectrum formed), so no tensor is read twice and no row cloud forms a
Gram product of its own.
"""

from __future__ import annotations

import dataclasses
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
from weightscope.stats import embedding

HIDDEN, FFN, VOCAB, HEADS = 64, 160, 700, 4
COLLAPSED = "model.layers.1.mlp.down_proj.weight"


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
    tensors[COLLAPSED] = rng.standard_normal((HIDDEN, 8)) @ rng.standard_normal((8, FFN)) / np.sqrt(8)
    tensors = {name: (0.02 * value).astype(np.float32) for name, value in tensors.items()}
    write_safetensors(directory / "model.safetensors", tensors, dtypes=dict.fromkeys(tensors, "BF16"))
    (directory / "config.json").write_text(
        json.dumps({"model_type": "llama", "num_attention_heads": HEADS, "num_key_value_heads": HEADS})
    )
    return directory


def fingerprint(matrix) -> tuple[str, int]:
    """(dtype, hash of the contents): which matrix a product or a solve was given."""
    array = np.ascontiguousarray(matrix)
    return array.dtype.name, hash((array.shape, array.tobytes()))


@pytest.fixture
def counted(monkeypatch):
    """Tensor reads (by name); Gram products (by dtype and matrix) and eigensolves (by the
    Gram matrix's dtype and contents)."""
    counts = {"reads": Counter(), "grams": Counter(), "solves": Counter()}

    def spy(module, name, record):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            record(*args, **kwargs)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    spy(SafetensorsReader, "read", lambda self, info: counts["reads"].update([info.name]))
    spy(
        spectrum,
        "gram_matrix",
        lambda matrix, dtype="float64", full=True: counts["grams"].update([(dtype, fingerprint(matrix))]),
    )
    spy(spectrum, "symmetric_eigenvalues", lambda gram: counts["solves"].update([fingerprint(gram)]))
    return counts


def by_dtype(counter: Counter) -> Counter:
    return Counter(key[0] for key in counter.elements())


#: The square (64×64) BF16 attention projections, q, k, v and o of both blocks.
SQUARE = 8


def assert_once_per_layer(counted, layers: int, solves: int = 1, collapsed: int = 1) -> None:
    """The `SQUARE` layers solved in float64 once each and never in float32; every other
    layer's float32 Gram product on a different matrix; ``solves`` float32 products and
    eigensolves per layer in all (the square layers' shuffled copies included), no Gram
    matrix solved twice; the other float64 products (the inertia count) on matrices that
    also had a float32 one, once each, but twice (count, then solve) on the
    ``collapsed`` layers, which are solved in float64 too."""
    grams, solved = counted["grams"], counted["solves"]
    assert set(solved.values()) == {1}, solved  # no Gram matrix solved twice
    float32_solves = solves * layers - SQUARE
    assert by_dtype(solved) == {"float32": float32_solves, "float64": SQUARE + collapsed}, solved
    float32 = Counter(key[1] for key in grams.elements() if key[0] == "float32")
    float64 = Counter(key[1] for key in grams.elements() if key[0] == "float64")
    assert set(float32.values()) == {1} and len(float32) == float32_solves, float32
    outright = set(float64) - set(float32)
    assert len(outright) == SQUARE and all(float64[key] == 1 for key in outright), float64
    counted_too = Counter({key: uses for key, uses in float64.items() if key in float32})
    assert sorted(counted_too.values()).count(2) == collapsed and set(counted_too.values()) <= {1, 2}, float64


def layers_of(report):
    return [layer for layer in report.layers if layer.status == "ok"]


@pytest.mark.parametrize("workers", [1, 2])
def test_each_tensor_is_read_once_multiplied_once_and_solved_once(model, counted, workers):
    report = analyze(model, measures=False, execution=Execution(workers=workers, cache=False))
    layers = layers_of(report)
    assert len(layers) == 16
    assert [layer.name for layer in layers if layer.rank.collapsed] == [COLLAPSED]
    assert set(counted["reads"].values()) == {1}, counted["reads"]  # every matrix, once
    assert_once_per_layer(counted, len(layers))
    assert 0 < by_dtype(counted["grams"])["float64"] - SQUARE < len(layers) - SQUARE  # the count ran, where needed


@pytest.fixture
def row_clouds_given_gram(monkeypatch):
    """Per row cloud, whether it was handed the Gram matrix its layer's spectrum formed
    (False: it multiplied its own)."""
    given = []
    original = embedding.row_moments

    def spy(w, gram=None):
        given.append(gram is not None)
        return original(w, gram)

    monkeypatch.setattr(embedding, "row_moments", spy)
    return given


@pytest.mark.parametrize("workers", [1, 2])
def test_the_measures_read_and_multiply_nothing_again(model, counted, row_clouds_given_gram, workers):
    report = analyze(model, execution=Execution(workers=workers, cache=False))
    measures = report.measures
    assert measures.attention.status == "ok" and [b.block for b in measures.attention.layers] == [0, 1]
    assert [cloud.name for cloud in measures.embeddings] == ["model.embed_tokens.weight", "lm_head.weight"]
    assert set(counted["reads"].values()) == {1}, counted["reads"]  # the norm gains too
    assert row_clouds_given_gram == [True, True]
    assert_once_per_layer(counted, len(layers_of(report)))
    # the same measures as without the stream: every tensor read for its part alone
    alone = analyze(model, min_evals=1000, execution=Execution(workers=workers, cache=False)).measures
    assert alone.attention == measures.attention and not alone.notes
    for own, streamed in zip(alone.embeddings, measures.embeddings, strict=True):
        # pc1_share from the spectrum's float32 Gram matrix, against one summed in float64
        assert own.pc1_share == pytest.approx(streamed.pc1_share, rel=1e-5)
        assert dataclasses.replace(own, pc1_share=streamed.pc1_share) == streamed


def test_float64_solves_once_per_layer_and_never_in_float32(model, counted):
    report = analyze(model, measures=False, eig_dtype="float64", execution=Execution(workers=1, cache=False))
    layers = layers_of(report)
    assert set(counted["reads"].values()) == {1}
    assert set(counted["grams"].values()) == set(counted["solves"].values()) == {1}
    assert by_dtype(counted["grams"]) == by_dtype(counted["solves"]) == {"float64": len(layers)}


def test_randomised_analysis_adds_one_solve_and_no_read(model, counted):
    report = analyze(model, randomize=True, measures=False, execution=Execution(workers=1, cache=False))
    layers = layers_of(report)
    assert set(counted["reads"].values()) == {1}
    assert_once_per_layer(counted, len(layers), solves=2)  # the layer and its shuffled copy


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
