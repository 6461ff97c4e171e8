"""Overlap, workers, memory bounds, BLAS threads, the two-stage solver and the auto precision."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

import weightscope
from weightscope.checkpoint import open_checkpoint, write_safetensors
from weightscope.checkpoint.layers import select_layers
from weightscope.execution.plan import Execution, plan
from weightscope.execution.schedule import pipelined
from weightscope.linalg._blas import (
    THREAD_ENV_VARS,
    available_cores,
    blas_threads,
    loaded_blas_libraries,
    thread_controls,
)
from weightscope.linalg._lapack import ROUTINES, lapack_solver
from weightscope.linalg.spectrum import SpectrumOptions, esd, symmetric_eigenvalues
from weightscope.options import AnalysisOptions

ROOT = Path(__file__).resolve().parents[2]
NO_CACHE = Execution(cache=False)


# --- the scheduler ----------------------------------------------------------------------


def test_results_come_back_in_order_whatever_finishes_first():
    delays = [0.05, 0.0, 0.03, 0.0, 0.01, 0.0]
    out = list(pipelined(range(6), lambda i: i * 10, lambda i, x: time.sleep(delays[i]) or (i, x), workers=3))
    assert out == [(i, i * 10) for i in range(6)]


def test_reading_runs_ahead_of_computing_by_one_item():
    """With one worker, item k+1 is read while item k computes, and never item k+2."""
    log, lock = [], threading.Lock()

    def load(i):
        with lock:
            log.append(("read", i))
        return i

    def compute(i, _):
        time.sleep(0.02)
        with lock:
            log.append(("done", i))
        return i

    assert list(pipelined(range(5), load, compute, workers=1)) == list(range(5))
    for i in range(4):
        assert log.index(("read", i + 1)) < log.index(("done", i)), log  # overlapped
    for i in range(3):
        assert log.index(("done", i)) < log.index(("read", i + 2)), log  # bounded


def test_budget_bounds_the_cost_in_flight():
    in_flight, peak, lock = [0.0], [0.0], threading.Lock()
    costs = [3.0, 1.0, 1.0, 3.0, 2.0, 2.0, 1.0]

    def load(i):
        with lock:
            in_flight[0] += costs[i]
            peak[0] = max(peak[0], in_flight[0])
        return i

    def compute(i, _):
        time.sleep(0.01)
        with lock:
            in_flight[0] -= costs[i]
        return i

    out = list(pipelined(range(7), load, compute, workers=4, cost=costs.__getitem__, budget=4.0))
    assert out == list(range(7)) and peak[0] <= 4.0


def test_largest_items_start_first_and_results_keep_input_order():
    """Sizes reorder the starts (largest first, ties in input order), never the results."""
    sizes = [1.0, 4.0, 2.0, 4.0, 3.0]
    started = []
    out = list(pipelined(range(5), lambda i: started.append(i) or i, lambda i, x: x, workers=1, size=sizes.__getitem__))
    assert out == list(range(5)) and started == [1, 3, 4, 2, 0]


def test_a_smaller_item_fills_the_room_a_larger_one_leaves():
    """Item 1 does not fit beside item 0 within the budget; item 2 does, so it starts
    before item 1 (which waits for item 0), and the budget holds throughout."""
    costs = [5.0, 4.0, 1.0]
    started, lock = [], threading.Lock()
    two_started = threading.Event()

    def load(i):
        with lock:
            started.append(i)
        if i == 2:
            two_started.set()
        return i

    def compute(i, _):
        if i == 0:
            two_started.wait(5.0)
        return i

    out = list(
        pipelined(range(3), load, compute, workers=2, cost=costs.__getitem__, budget=6.0, size=costs.__getitem__)
    )
    assert out == [0, 1, 2] and started == [0, 2, 1]


def test_an_item_over_budget_still_runs_alone():
    assert list(pipelined([5, 1], lambda i: i, lambda i, x: x, workers=2, cost=float, budget=2.0)) == [5, 1]


def test_errors_surface_at_their_item():
    def compute(i, _):
        if i == 2:
            raise RuntimeError("boom")
        return i

    results = pipelined(range(5), lambda i: i, compute, workers=2)
    assert [next(results), next(results)] == [0, 1]
    with pytest.raises(RuntimeError, match="boom"):
        next(results)


# --- BLAS threads and solvers ------------------------------------------------------------


@pytest.fixture
def controls(monkeypatch):
    """The loaded BLAS libraries' thread controls, with no thread count pinned by the user."""
    for name in THREAD_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    found = thread_controls()
    if not found:
        pytest.skip("no OpenBLAS/MKL with a known thread API is loaded")
    return found


def test_blas_threads_set_and_restore(controls):
    before = [c.get() for c in controls]
    with blas_threads(1):
        assert [c.get() for c in controls] == [1] * len(controls)
    assert [c.get() for c in controls] == before


def test_a_worker_thread_can_limit_blas(controls):
    """The eigensolves limit BLAS from worker threads while the main thread set the count
    for the run: a library that ignores all but one controlling thread (threadpoolctl
    3.8 with pthreads OpenBLAS) made --workers 1 and 2 disagree."""
    seen = []
    with blas_threads(2):

        def worker():
            with blas_threads(1):
                seen.append([c.get() for c in controls])

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert [c.get() for c in controls] == [2] * len(controls)
    assert seen == [[1] * len(controls)]


def test_a_user_pinned_thread_count_is_left_alone(controls, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    before = [c.get() for c in controls]
    with blas_threads(max(before) + 1):
        assert [c.get() for c in controls] == before


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity masks")
def test_workers_and_threads_follow_the_affinity_mask(tmp_path):
    """`taskset -c 0` or a cgroup cpuset limits a run to one core: one worker, whatever
    `os.cpu_count()` says; with every core, one worker per core."""
    write_safetensors(tmp_path / "m.safetensors", {f"l{i}.weight": np.ones((64, 64), np.float32) for i in range(3)})
    with open_checkpoint(tmp_path / "m.safetensors") as reader:
        layers = select_layers(reader.tensors(), min_evals=10).layers
    options, allowed = AnalysisOptions(min_evals=10), os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        one = plan(layers, options, Execution(cache=False, device="cpu"))
        assert (available_cores(), one.workers) == (1, 1)
    finally:
        os.sched_setaffinity(0, allowed)
    every = plan(layers, options, Execution(cache=False, device="cpu"))
    assert every.workers == len(allowed)


@pytest.mark.parametrize("routine", ROUTINES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lapack_solvers_match_scipy(dtype, routine):
    solve = lapack_solver(np.dtype(dtype), routine)
    if solve is None:
        # numpy's wheels bundle OpenBLAS with LAPACKE: there, a missing solver is a bug.
        assert not any("openblas" in path for path in loaded_blas_libraries()), f"OpenBLAS loaded but no {routine}"
        pytest.skip(f"this LAPACK has no ?{routine}")
    w = np.random.default_rng(7).standard_normal((400, 300))
    gram = (w.T @ w / 400).astype(dtype)
    expected = scipy.linalg.eigvalsh(gram.astype(np.float64))
    got = solve(gram.copy())
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=0, atol=50 * np.finfo(dtype).eps * expected[-1])


def test_large_matrices_take_the_two_stage_path_with_the_same_answer(monkeypatch):
    import weightscope.linalg.spectrum as spectrum

    w = np.random.default_rng(8).standard_normal((700, 500))
    classic = esd([w])
    monkeypatch.setattr(spectrum, "TWO_STAGE_MIN_SIZE", 100)
    np.testing.assert_allclose(esd([w]), classic, rtol=0, atol=1e-12 * classic[-1])
    gram = w.T @ w
    np.testing.assert_allclose(symmetric_eigenvalues(gram.copy()), np.linalg.eigvalsh(gram), rtol=1e-10)


# --- the pipeline: workers and the auto precision ---------------------------------------


def planted(rng, n, m, alpha):
    """Columns scaled so that the ESD's tail is a power law of exponent ``alpha``."""
    scales = rng.uniform(size=m) ** (-1.0 / (2.0 * (alpha - 1.0)))
    return (rng.standard_normal((n, m)) * scales * 0.02).astype(np.float32)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    rng = np.random.default_rng(11)
    path = tmp_path_factory.mktemp("perf") / "model.safetensors"
    tensors = {
        f"layers.{i}.mlp.up_proj.weight": planted(rng, 600, 200, alpha) for i, alpha in enumerate((2.5, 3.5, 4.5))
    }
    # rank-collapsed: 200 columns spanned by 8 directions, stored in float32
    tensors["layers.3.mlp.down_proj.weight"] = (rng.standard_normal((600, 8)) @ rng.standard_normal((8, 200))).astype(
        np.float32
    )
    tensors["layers.4.attn.q_proj.weight"] = (rng.standard_normal((300, 300)) * 0.02).astype(np.float32)
    write_safetensors(path, tensors)
    return path


def comparable(report):
    return [(x.name, x.status, x.alpha, x.verdict, x.flags) for x in report.layers]


@pytest.mark.parametrize("precision", ["auto", "float64"])
def test_workers_do_not_change_the_report(model, precision):
    """Bitwise: float64 once differed in the 15th digit, from a threaded Gram product."""
    runs = [
        weightscope.analyze(
            model, min_evals=10, randomize=True, eig_dtype=precision, execution=Execution(workers=w, cache=False)
        )
        for w in (1, 3)
    ]
    assert runs[0].to_dict() == runs[1].to_dict()


def test_auto_precision_agrees_with_float64(model):
    auto = weightscope.analyze(model, min_evals=10, execution=NO_CACHE)
    exact = weightscope.analyze(model, min_evals=10, eig_dtype="float64", execution=NO_CACHE)
    for a, b in zip(auto.layers, exact.layers):
        assert a.verdict == b.verdict and a.flags == b.flags, a.name
        assert a.alpha == pytest.approx(b.alpha, rel=1e-4), a.name
    planted_alphas = [layer.alpha for layer in auto.layers[:3]]
    assert planted_alphas == sorted(planted_alphas)  # the planted exponents, in order


@pytest.mark.parametrize("step", [0, 200, 1500])
def test_auto_precision_tells_the_example_runs_story_as_float64(step):
    """Real trained BF16 checkpoints (examples/): float32 by default changes no verdict."""
    path = Path(__file__).parents[2] / "examples" / "runs" / "tiny-lm" / f"step-{step}" / "model.safetensors"
    auto = weightscope.analyze(path, execution=NO_CACHE)
    exact = weightscope.analyze(path, eig_dtype="float64", execution=NO_CACHE)
    for a, b in zip(auto.layers, exact.layers, strict=True):
        assert (a.verdict, a.flags, a.rank.collapsed) == (b.verdict, b.flags, b.rank.collapsed), a.name
        assert a.alpha == pytest.approx(b.alpha, rel=1e-3), a.name


def test_auto_precision_keeps_rank_collapse_exact_for_float32_weights(model):
    """Plain float32 would hide an F32 layer's collapse under its own floor; auto counts
    that layer's eigenvalues above the tolerance in float64 and reports what float64 reports."""
    collapsed = "layers.3.mlp.down_proj.weight"
    auto = weightscope.analyze(model, min_evals=10, include=(collapsed,), execution=NO_CACHE).layer(collapsed)
    exact = weightscope.analyze(
        model, min_evals=10, include=(collapsed,), eig_dtype="float64", execution=NO_CACHE
    ).layer(collapsed)
    assert exact.rank.numerical_rank == 8 and exact.verdict == "rank-collapsed"
    assert auto.rank == exact.rank and auto.verdict == exact.verdict


def test_gram_in_float32_is_exact_enough_for_the_tail():
    w = planted(np.random.default_rng(3), 900, 300, 3.0)
    f32, f64 = esd([w], SpectrumOptions("float32")), esd([w], SpectrumOptions("float64"))
    np.testing.assert_allclose(f32[-30:], f64[-30:], rtol=2e-5)


# --- memory -------------------------------------------------------------------------------


@pytest.mark.slow
def test_peak_memory_is_bounded_by_the_largest_tensor(tmp_path):
    """Eight 32 MB float32 tensors (256 MB in all): peak RSS must stay within the budget of
    3 × the largest tensor + 300 MB (396 MB), which holding them all would break."""
    rng = np.random.default_rng(0)
    path = tmp_path / "big.safetensors"
    write_safetensors(
        path, {f"layers.{i}.mlp.up_proj.weight": rng.standard_normal((4096, 2048), dtype=np.float32) for i in range(8)}
    )
    script = f"""
import weightscope
from weightscope.execution.plan import Execution
report = weightscope.analyze({str(path)!r}, execution=Execution(cache=False, workers=2))
assert len(report.layers) == 8 and all(l.status == 'ok' for l in report.layers), report.layers
# VmHWM is this process image's own peak; ru_maxrss would also count the forked copy of
# the (large) pytest parent that existed before exec.
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    peak_mb = int(done.stdout.split()[-1]) / 1024
    assert peak_mb < 3 * 32 + 300, peak_mb


@pytest.mark.slow
def test_a_default_analysis_imports_neither_scipy_nor_torch():
    """Start-up is most of a small model's run: scipy's import alone costs ~0.25 s here,
    torch's seconds. The default path (read, spectrum, fit, every check) needs neither."""
    path = Path(__file__).parents[2] / "examples" / "runs" / "tiny-lm" / "step-200" / "model.safetensors"
    script = (
        "import sys, weightscope\n"
        "from weightscope.execution.plan import Execution\n"
        f"weightscope.analyze({str(path)!r}, randomize=True, execution=Execution(cache=False))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'torch'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
