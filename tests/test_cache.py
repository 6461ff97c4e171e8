"""The spectrum cache: keys, atomic entries, corruption, racy files, and end-to-end reuse."""

import os
import time

import numpy as np
import pytest

import weightscope
import weightscope.layer_spectra as layer_spectra
from weightscope.checkpoint import open_checkpoint, write_safetensors
from weightscope.errors import WeightscopeError
from weightscope.execution.cache import RACY_SECONDS, SpectrumCache, default_cache_dir
from weightscope.execution.plan import Execution


def aged(path, seconds=60):
    """Back-date a file past the racy window, as any checkpoint not just written is."""
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))
    return path


def checkpoint(tmp_path, seed=0, name="m.safetensors"):
    rng = np.random.default_rng(seed)
    tensors = {
        "layers.0.attn.q_proj.weight": (rng.standard_t(3.0, size=(160, 96)) * 0.02).astype(np.float32),
        "layers.0.mlp.up_proj.weight": (rng.standard_t(3.0, size=(96, 240)) * 0.02).astype(np.float32),
    }
    path = tmp_path / name
    write_safetensors(path, tensors)
    return aged(path)


def first_info(path):
    with open_checkpoint(path) as reader:
        return reader.tensors()[0]


def test_default_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("WEIGHTSCOPE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "weightscope"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "weightscope"
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"


def test_round_trip_and_what_the_key_depends_on(tmp_path):
    path = checkpoint(tmp_path)
    cache = SpectrumCache(tmp_path / "cache")
    info = first_info(path)
    key = cache.key(info, "esd", precision="auto")
    assert key is not None and cache.load(key) is None
    evals = np.linspace(0.1, 2.0, 96).astype(np.float32)
    cache.store(key, {"evals": evals})
    loaded = cache.load(key)
    np.testing.assert_array_equal(loaded["evals"], evals)
    assert loaded["evals"].dtype == np.float32
    assert not list((tmp_path / "cache").rglob("*.tmp")), "temporary files must not linger"
    # Every ingredient of the key matters.
    assert cache.key(info, "esd", precision="float64") != key
    assert cache.key(info, "randomized", precision="auto") != key
    with open_checkpoint(path) as reader:
        assert cache.key(reader.tensors()[1], "esd", precision="auto") != key
    stamp = time.time() - 30
    os.utime(path, (stamp, stamp))  # same bytes, other mtime: a different file state
    assert cache.key(info, "esd", precision="auto") != key


def test_a_file_modified_just_now_is_not_cached(tmp_path):
    path = checkpoint(tmp_path)
    os.utime(path)  # now
    assert SpectrumCache(tmp_path / "cache").key(first_info(path), "esd") is None
    aged(path, RACY_SECONDS + 1)
    assert SpectrumCache(tmp_path / "cache").key(first_info(path), "esd") is not None


@pytest.mark.parametrize("damage", [b"", b"not a zip file at all", b"PK\x03\x04" + b"\0" * 40])
def test_a_corrupted_entry_is_ignored_and_removed(tmp_path, damage):
    cache = SpectrumCache(tmp_path / "cache")
    key = cache.key(first_info(checkpoint(tmp_path)), "esd")
    cache.store(key, {"evals": np.ones(96)})
    (entry,) = (tmp_path / "cache").rglob("*.npz")
    entry.write_bytes(damage)
    assert cache.load(key) is None
    assert not entry.exists()


def test_unwritable_cache_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WeightscopeError, match="cannot create cache directory"):
        SpectrumCache(blocker / "cache")


def count_solves(monkeypatch):
    calls = []
    real = layer_spectra.esd
    monkeypatch.setattr(layer_spectra, "esd", lambda matrices, options: calls.append(options.dtype) or real(matrices, options))
    return calls


def test_a_second_analysis_reuses_the_spectra(tmp_path, monkeypatch):
    path = checkpoint(tmp_path)
    calls = count_solves(monkeypatch)
    run = Execution(cache_dir=str(tmp_path / "cache"), workers=1)
    first = weightscope.analyze(path, min_evals=10, execution=run)
    assert len(calls) == 2
    again = weightscope.analyze(path, min_evals=10, execution=run)
    assert len(calls) == 2, "the second analysis must not solve again"
    assert again.to_dict() == first.to_dict()
    # Thresholds do not key the cache: a re-run with another threshold is free too.
    weightscope.analyze(path, min_evals=10, min_tail=12, execution=run)
    assert len(calls) == 2
    # Without the cache, it solves.
    weightscope.analyze(path, min_evals=10, execution=Execution(cache=False, workers=1))
    assert len(calls) == 4


def test_randomized_spectra_are_cached_per_seed(tmp_path, monkeypatch):
    path = checkpoint(tmp_path)
    calls = []
    real = layer_spectra.randomized_esd
    monkeypatch.setattr(layer_spectra, "randomized_esd", lambda *a: calls.append(a[1]) or real(*a))
    run = Execution(cache_dir=str(tmp_path / "cache"), workers=1)
    first = weightscope.analyze(path, min_evals=10, randomize=True, seed=3, execution=run)
    again = weightscope.analyze(path, min_evals=10, randomize=True, seed=3, execution=run)
    weightscope.analyze(path, min_evals=10, randomize=True, seed=4, execution=run)
    assert calls == [3, 3, 4, 4]
    assert again.to_dict() == first.to_dict()


def test_corrupted_entries_are_rebuilt_with_the_same_result(tmp_path, monkeypatch):
    path = checkpoint(tmp_path)
    run = Execution(cache_dir=str(tmp_path / "cache"), workers=1)
    first = weightscope.analyze(path, min_evals=10, execution=run)
    entries = sorted((tmp_path / "cache").rglob("*.npz"))
    assert len(entries) == 2
    entries[0].write_bytes(b"garbage")
    with np.load(entries[1]) as stored:
        np.savez(entries[1], evals=stored["evals"][:5])  # readable, but the wrong size
    calls = count_solves(monkeypatch)
    rebuilt = weightscope.analyze(path, min_evals=10, execution=run)
    assert len(calls) == 2 and rebuilt.to_dict() == first.to_dict()
    assert all(np.load(entry)["evals"].shape == (96,) for entry in entries)


def test_editing_the_checkpoint_misses_the_cache(tmp_path, monkeypatch):
    path = checkpoint(tmp_path)
    run = Execution(cache_dir=str(tmp_path / "cache"), workers=1)
    before = weightscope.analyze(path, min_evals=10, execution=run)
    checkpoint(tmp_path, seed=1)  # same name, same size, other weights (and mtime)
    after = weightscope.analyze(path, min_evals=10, execution=run)
    assert after.layers[0].alpha != before.layers[0].alpha
