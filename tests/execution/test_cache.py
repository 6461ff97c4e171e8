"""The cache: keys, atomic entries, corruption, racy files, size cap and LRU eviction,
concurrent users, best effort when unusable, `weightscope cache info|clear`, and reuse."""

import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

import weightscope
import weightscope.analysis.spectra as layer_spectra
import weightscope.execution.cache as cache_module
from weightscope.checkpoint import open_checkpoint, write_safetensors
from weightscope.cli import app
from weightscope.commands.trend import trend
from weightscope.errors import WeightscopeError
from weightscope.execution.cache import (
    DEFAULT_MAX_BYTES,
    CacheStore,
    SpectrumCache,
    default_cache_dir,
    open_store,
    parse_size,
)
from weightscope.execution.plan import Execution
from weightscope.report import SCHEMA

runner = CliRunner()


@pytest.fixture
def settled(monkeypatch):
    """Files count as settled at once (tests cannot back-date a ctime; see RACY_SECONDS)."""
    monkeypatch.setattr(cache_module, "RACY_SECONDS", 0.0)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees its own first warning (the module warns once per directory)."""
    monkeypatch.setattr(cache_module, "_warned", set())


def checkpoint(tmp_path, seed=0, name="m.safetensors"):
    rng = np.random.default_rng(seed)
    tensors = {
        "layers.0.attn.q_proj.weight": (rng.standard_t(3.0, size=(160, 96)) * 0.02).astype(np.float32),
        "layers.0.mlp.up_proj.weight": (rng.standard_t(3.0, size=(96, 240)) * 0.02).astype(np.float32),
    }
    path = tmp_path / name
    write_safetensors(path, tensors)
    return path


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


def test_round_trip_and_what_the_key_depends_on(tmp_path, settled):
    path = checkpoint(tmp_path)
    cache = SpectrumCache.open(tmp_path / "cache")
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


def test_cp_p_over_a_same_size_file_changes_the_key(tmp_path, settled):
    """`cp -p` keeps the target's inode and size and copies the source's mtime: only the
    ctime tells the bytes changed (issue 11: a stale alpha was served)."""
    path = checkpoint(tmp_path)
    other = checkpoint(tmp_path, seed=1, name="other.safetensors")
    assert path.stat().st_size == other.stat().st_size
    stamp = time.time() - 60
    os.utime(path, (stamp, stamp))
    os.utime(other, (stamp, stamp))
    cache = SpectrumCache.open(tmp_path / "cache")
    before = cache.key(first_info(path), "esd")
    inode = path.stat().st_ino
    time.sleep(0.02)  # past the kernel's coarse timestamp tick
    shutil.copy2(other, path)  # what cp -p does: same inode, same size, same mtime
    assert path.stat().st_ino == inode and path.stat().st_mtime_ns == other.stat().st_mtime_ns
    assert cache.key(first_info(path), "esd") != before


def test_a_file_changed_just_now_is_not_cached(tmp_path, monkeypatch):
    path = checkpoint(tmp_path)
    stamp = time.time() - 60
    os.utime(path, (stamp, stamp))  # an old mtime, but the ctime says "just now"
    cache = SpectrumCache.open(tmp_path / "cache")
    assert cache.key(first_info(path), "esd") is None
    later = time.time() + cache_module.RACY_SECONDS + 1

    class Clock:
        @staticmethod
        def time():
            return later

    monkeypatch.setattr(cache_module, "time", Clock)
    assert cache.key(first_info(path), "esd") is not None


@pytest.mark.parametrize("damage", [b"", b"not a zip file at all", b"PK\x03\x04" + b"\0" * 40])
def test_a_corrupted_entry_is_ignored_and_removed(tmp_path, damage, settled):
    cache = SpectrumCache.open(tmp_path / "cache")
    key = cache.key(first_info(checkpoint(tmp_path)), "esd")
    cache.store(key, {"evals": np.ones(96)})
    (entry,) = (tmp_path / "cache").rglob("*.npz")
    entry.write_bytes(damage)
    assert cache.load(key) is None
    assert not entry.exists()


def test_sizes_parse_and_a_bad_cap_in_the_environment_is_the_default(monkeypatch):
    assert parse_size("2G") == 2 * 10**9 and parse_size("500M") == 5 * 10**8 and parse_size("0") == 0
    assert parse_size("1.5gb") == 15 * 10**8 and parse_size("4096") == 4096 and parse_size("2GiB") == 2 * 10**9
    assert parse_size("1e9") == 10**9 and parse_size("2.5E3k") == 2_500_000
    for bad in ("lots", "1e999", "inf", "nan"):
        with pytest.raises(WeightscopeError, match=r"not a size|beyond any disk"):
            parse_size(bad)
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_MAX", "-3")
    assert CacheStore("x").max_bytes == DEFAULT_MAX_BYTES  # best effort: a warning, not a failure
    with pytest.raises(WeightscopeError, match="≥ 0"):
        Execution(cache_max_bytes=-1)


def entry_bytes(n):
    return {"evals": np.arange(n, dtype=np.float64)}


def test_lru_eviction_keeps_the_recently_used_entries_under_the_cap(tmp_path):
    store = open_store(tmp_path / "cache", max_bytes=10**9)
    keys = [f"{i:040x}" for i in range(6)]
    for age, key in enumerate(keys):
        store.store_arrays(key, entry_bytes(1000))  # ~8.3 kB each
        old = time.time() - 1000 + age
        os.utime(store.path("spectra", key), (old, old))
    size = store.info().size
    assert size > 6 * 8000
    assert store.load_arrays(keys[0]) is not None  # a hit: now the most recently used
    store.max_bytes = size  # the next entry takes the store over the cap
    store.store_arrays("f" * 40, entry_bytes(1000))
    left = {entry.path.stem for entry in store.entries()}
    assert store.info().size <= size
    assert keys[0] in left and "f" * 40 in left, "the entry just used and the new one stay"
    assert keys[1] not in left, "the least recently used goes first"
    assert keys[5] in left


def test_a_zero_cap_keeps_nothing(tmp_path):
    store = open_store(tmp_path / "cache", max_bytes=0)
    store.store_arrays("a" * 40, entry_bytes(10))
    assert list(store.entries()) == []


#: A cap of about twenty entries for the concurrency tests (an entry is ~8.3 kB).
SMALL_CAP = 20 * 8400


def churn(directory, seed, rounds):
    """Read random keys of a 40-key space, storing the missing ones, under `SMALL_CAP`;
    returns the keys whose entry came back with another's content (never, if sound)."""
    store = open_store(directory, max_bytes=SMALL_CAP)
    rng = np.random.default_rng(seed)
    wrong = []
    for _ in range(rounds):
        key = f"{int(rng.integers(0, 40)):040x}"
        found = store.load_arrays(key)
        if found is None:
            store.store_arrays(key, {"evals": np.full(1000, int(key, 16), dtype=np.float64)})
        elif not np.all(found["evals"] == int(key, 16)):
            wrong.append(key)
    return wrong


def assert_sound(directory, writers):
    store = CacheStore(directory, max_bytes=SMALL_CAP)
    assert 0 < store.info().size <= writers * SMALL_CAP  # each writer overshoots by at most its own writes
    assert all(open_store(directory).load_arrays(e.path.stem) is not None for e in store.entries())
    assert not list(directory.rglob("*.tmp"))


def test_concurrent_users_of_one_store_never_see_half_an_entry(tmp_path):
    """Four independent stores on one directory (as four processes would be), storing,
    reading and evicting at once."""
    results = []
    threads = [
        threading.Thread(target=lambda s=seed: results.append(churn(tmp_path / "cache", s, 60))) for seed in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [[]] * 4  # a thread that raised would leave no result
    assert_sound(tmp_path / "cache", 4)


@pytest.mark.slow
def test_concurrent_processes_share_one_store(tmp_path):
    """The same with three real processes: separate counters, separate file handles."""
    import subprocess
    import sys

    script = "import sys; from tests.execution.test_cache import churn; sys.exit(1 if churn(sys.argv[1], int(sys.argv[2]), 150) else 0)"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "cache"), str(seed)],
            cwd=root,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(3)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0 and "warning" not in err, err
    assert_sound(tmp_path / "cache", 3)


def count_solves(monkeypatch):
    calls = []
    real = layer_spectra.esd
    monkeypatch.setattr(
        layer_spectra,
        "esd",
        lambda matrices, options, on_gram=None: calls.append(options.dtype) or real(matrices, options, on_gram),
    )
    return calls


def test_a_second_analysis_reuses_the_spectra(tmp_path, monkeypatch, settled):
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


def test_randomized_spectra_are_cached_per_seed(tmp_path, monkeypatch, settled):
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


def test_corrupted_entries_are_rebuilt_with_the_same_result(tmp_path, monkeypatch, settled):
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


def test_editing_the_checkpoint_misses_the_cache(tmp_path, monkeypatch, settled):
    path = checkpoint(tmp_path)
    run = Execution(cache_dir=str(tmp_path / "cache"), workers=1)
    before = weightscope.analyze(path, min_evals=10, execution=run)
    time.sleep(0.02)
    checkpoint(tmp_path, seed=1)  # same name, same size, other weights
    after = weightscope.analyze(path, min_evals=10, execution=run)
    assert after.layers[0].alpha != before.layers[0].alpha


# --- an unusable cache is one warning, and the run goes on uncached ---------------------


def _file(tmp_path):
    (tmp_path / "file").write_text("x")
    return tmp_path / "file"


def _dangling(tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    return tmp_path / "dangling"


def _loop(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return tmp_path / "loop" / "cache"


def _under_a_file(tmp_path):
    return _file(tmp_path) / "cache"


UNUSABLE = {"a file": _file, "a dangling symlink": _dangling, "a symlink loop": _loop, "below a file": _under_a_file}


@pytest.mark.parametrize("make", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_an_unusable_cache_directory_is_one_warning_and_the_run_goes_on(tmp_path, make, monkeypatch, settled):
    path = checkpoint(tmp_path)
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(make(tmp_path)))
    result = runner.invoke(
        app, ["analyze", str(path), "--min-evals", "10", "-f", "json", "-o", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "continuing without it" in warnings[0]
    assert len(json.loads((tmp_path / "r.json").read_text())["layers"]) == 2


def test_an_unwritable_home_is_one_warning(tmp_path, monkeypatch, settled):
    """/proc refuses new directories even to root, like a read-only HOME."""
    path = checkpoint(tmp_path)
    for name in ("WEIGHTSCOPE_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/proc/no-such-home")
    result = runner.invoke(app, ["trend", str(path), str(path), "--min-evals", "10", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("warning:")] == [
        "warning: cache /proc/no-such-home/.cache/weightscope is unusable (No such file or directory); continuing without it"
    ]


def full_disk(monkeypatch, cache_dir):
    """Every write under ``cache_dir`` goes to /dev/full, which answers ENOSPC like a full disk."""
    real = cache_module.tempfile.mkstemp

    def mkstemp(dir=None, prefix=None, suffix=None):  # tempfile's argument names
        if str(dir).startswith(str(cache_dir)):
            return os.open("/dev/full", os.O_WRONLY), os.path.join(dir, f"{prefix}full{suffix}")
        return real(dir=dir, prefix=prefix, suffix=suffix)

    monkeypatch.setattr(cache_module.tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize("command", ["analyze", "trend"])
def test_a_full_disk_while_storing_is_one_warning(tmp_path, monkeypatch, command, settled):
    path = checkpoint(tmp_path)
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    full_disk(monkeypatch, tmp_path / "cache")
    args = [command, str(path), "--min-evals", "10", "-f", "json"]
    if command == "trend":
        args[2:2] = [str(checkpoint(tmp_path, seed=2, name="step-2.safetensors"))]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: cache {tmp_path / 'cache'} is unusable (No space left on device); continuing without it"
    ]
    assert not list((tmp_path / "cache").rglob("*.npz")) and not list((tmp_path / "cache").rglob("*.json"))


def test_after_a_failed_store_the_entries_are_still_read(tmp_path, monkeypatch, caplog):
    store = open_store(tmp_path / "cache")
    store.store_arrays("a" * 40, entry_bytes(10))
    full_disk(monkeypatch, tmp_path / "cache")
    store.store_arrays("b" * 40, entry_bytes(10))
    store.store_arrays("c" * 40, entry_bytes(10))
    assert [r.getMessage() for r in caplog.records if r.name == "weightscope.cache"] == [
        f"cache {tmp_path / 'cache'} is unusable (No space left on device); continuing without it"
    ]
    assert store.load_arrays("a" * 40) is not None and store.load_arrays("b" * 40) is None
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_a_bad_cap_in_the_environment_is_one_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_MAX", "a lot")
    result = runner.invoke(app, ["analyze", str(checkpoint(tmp_path)), "--min-evals", "10"])
    assert result.exit_code == 0 and "cache size 'a lot' is not a size" in result.stderr
    assert "WEIGHTSCOPE_CACHE_MAX" in result.stderr and "error:" not in result.stderr


# --- one mechanism: trend's reports live in the same store ------------------------------


def test_trend_reports_and_spectra_share_the_store(tmp_path, monkeypatch, settled):
    run = tmp_path / "run"
    run.mkdir()
    for step in (1, 2):
        checkpoint(run, seed=step, name=f"step-{step}.safetensors")
    store = tmp_path / "cache"
    calls = count_solves(monkeypatch)
    first = trend([run], cache=store, min_evals=10)
    assert [c.origin for c in first.checkpoints] == ["analysed"] * 2 and len(calls) == 4
    assert CacheStore(store).info().entries == {"spectra": 4, "reports": 2, "distances": 1}
    again = trend([run], cache=store, min_evals=10)
    assert [c.origin for c in again.checkpoints] == ["cache"] * 2 and len(calls) == 4
    # Damaged report entries are misses, removed and rebuilt from the cached spectra.
    first_entry, second_entry = sorted((store / "reports").rglob("*.json"))
    first_entry.write_text(json.dumps({"schema": "weightscope.report/1", "layers": [1]}))
    second_entry.write_text('{"schema": "weightscope.report/1", "summary": NaN')
    rebuilt = trend([run], cache=store, min_evals=10)
    assert [c.origin for c in rebuilt.checkpoints] == ["analysed"] * 2 and len(calls) == 4
    assert rebuilt.layers == first.layers
    # A cached report of an older schema lacks what this version computes: rebuilt, not upgraded.
    older = sorted((store / "reports").rglob("*.json"))[0]
    older.write_text(older.read_text().replace(f'"{SCHEMA}"', '"weightscope.report/3"'))
    assert [c.origin for c in trend([run], cache=store, min_evals=10).checkpoints].count("analysed") == 1
    # Another threshold misses the report but not the spectra: no new solve.
    other = trend([run], cache=store, min_evals=10, min_tail=12)
    assert [c.origin for c in other.checkpoints] == ["analysed"] * 2 and len(calls) == 4


# --- weightscope cache info | clear -----------------------------------------------------


def test_cache_info_and_clear(tmp_path, settled):
    store = tmp_path / "cache"
    weightscope.analyze(checkpoint(tmp_path), min_evals=10, execution=Execution(cache_dir=str(store)))
    (store / "notes.txt").write_text("not ours")
    (store / "spectra" / "README").write_text("not an entry")
    info = runner.invoke(app, ["cache", "info", "--cache-dir", str(store), "--json"])
    assert info.exit_code == 0, info.output
    about = json.loads(info.stdout)
    sizes = [p.stat().st_size for p in store.rglob("*.npz")]
    assert about["directory"] == str(store) and about["entries"] == {"spectra": 2, "reports": 0, "distances": 0}
    assert about["size"] == sum(sizes) and about["max_bytes"] == 2 * 10**9
    assert about["oldest"] <= about["newest"] <= time.time()
    text = runner.invoke(app, ["cache", "info", "--cache-dir", str(store)])
    assert "entries     2 (2 spectra, 0 reports, 0 distances)" in text.stdout and str(store) in text.stdout
    cleared = runner.invoke(app, ["cache", "clear", "--cache-dir", str(store)])
    assert cleared.exit_code == 0 and f"removed 2 entries ({sum(sizes) / 1000:.1f} kB)" in cleared.stderr
    assert not list(store.rglob("*.npz"))
    assert (store / "notes.txt").exists() and (store / "spectra" / "README").exists(), "only entries are removed"
    empty = json.loads(runner.invoke(app, ["cache", "info", "--cache-dir", str(store), "--json"]).stdout)
    assert empty["size"] == 0 and empty["oldest"] is None


def test_cache_info_of_a_file_is_an_error(tmp_path):
    result = runner.invoke(app, ["cache", "info", "--cache-dir", str(_file(tmp_path))])
    assert result.exit_code == 2 and "is not a directory" in result.stderr
