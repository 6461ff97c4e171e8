"""The spectrum cache: same numbers, no second eigensolve, corrupt entries rebuilt."""

import numpy as np

import weightscope
from weightscope import pipeline
from weightscope.checkpoint import write_safetensors

from .helpers import gaussian, planted_power_law


def checkpoint(tmp_path):
    path = tmp_path / "m.safetensors"
    write_safetensors(path, {"a": planted_power_law(300, 150, 3.0, 1), "b": gaussian(200, 100, 2)})
    return path


def count_solves(monkeypatch):
    calls = []
    original = pipeline.esd

    def counting(matrices, options):
        calls.append(1)
        return original(matrices, options)

    monkeypatch.setattr(pipeline, "esd", counting)
    return calls


def test_second_run_reuses_spectra_and_gives_the_same_report(tmp_path, monkeypatch):
    path, cache = checkpoint(tmp_path), tmp_path / "cache"
    calls = count_solves(monkeypatch)
    first = weightscope.analyze(path, cache_dir=str(cache))
    assert len(calls) == 2
    second = weightscope.analyze(path, cache_dir=str(cache), thresholds=weightscope.AnalysisOptions().thresholds)
    assert len(calls) == 2  # nothing solved again
    assert second.layers == first.layers
    assert weightscope.analyze(path).layers == first.layers  # and the cache changes no number


def test_touching_the_file_or_changing_precision_invalidates(tmp_path, monkeypatch):
    path, cache = checkpoint(tmp_path), tmp_path / "cache"
    calls = count_solves(monkeypatch)
    weightscope.analyze(path, cache_dir=str(cache))
    weightscope.analyze(path, cache_dir=str(cache), eig_dtype="float32")
    assert len(calls) == 4
    write_safetensors(path, {"a": planted_power_law(300, 150, 3.0, 9), "b": gaussian(200, 100, 2)})
    weightscope.analyze(path, cache_dir=str(cache))
    assert len(calls) == 6


def test_corrupt_entries_are_ignored_and_rebuilt(tmp_path, monkeypatch):
    path, cache = checkpoint(tmp_path), tmp_path / "cache"
    reference = weightscope.analyze(path, cache_dir=str(cache))
    entries = sorted(cache.rglob("*.npy"))
    assert len(entries) == 2
    entries[0].write_bytes(b"not a numpy file")
    np.save(entries[1], np.array([3.0, 2.0, 1.0]))  # wrong size, not ascending
    calls = count_solves(monkeypatch)
    again = weightscope.analyze(path, cache_dir=str(cache))
    assert len(calls) == 2 and again.layers == reference.layers
    assert all(np.load(e).size in (150, 100) for e in entries)  # rewritten
