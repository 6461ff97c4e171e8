"""The benchmarks run in CI in their quick modes, so they never rot (timings are not checked)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each runs a benchmark script in a subprocess
ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_bench_fit_quick_agrees_with_powerlaw():
    out = run_benchmark("benchmarks/bench_fit.py", "--quick")
    assert "powerlaw" in out


def test_bench_model_quick_runs_weightscope_end_to_end(tmp_path):
    out = run_benchmark(
        "benchmarks/bench_model.py",
        "--quick",
        "--no-ww",
        "--profile",
        "--workdir",
        str(tmp_path),
        "--json",
        str(tmp_path / "b.json"),
    )
    assert "tiny-block" in out and "eigensolver" in out and "tiny-block:randomize" in out
    result = json.loads((tmp_path / "b.json").read_text())
    plain, randomised = result["rows"]
    assert not plain["randomize"] and randomised["randomize"]
    for row in (plain, randomised):
        assert row["layers"] == 7 and row["weightscope"][0]["wall_s"] > 0 and row["weightscope_cached"][0]["wall_s"] > 0
        assert row["weightscope"][0]["peak_rss_mb"] < 3 * row["largest_tensor_mb"] + 300
        assert row["load_before"] >= 0 and row["load_after"] >= 0


def test_bench_model_takes_cases(tmp_path):
    out = run_benchmark(
        "benchmarks/bench_model.py", "--quick", "--no-ww", "--cases", "tiny-block:randomize", "--workdir", str(tmp_path)
    )
    assert "tiny-block:randomize" in out and "\ntiny-block " not in out


def test_bench_gpu_runs_end_to_end_on_the_cpu(tmp_path):
    """The GPU benchmark's every step (build, analyze end to end, stage profile, CPU
    agreement) in its tiny CPU mode; on a GPU the same command runs with --device cuda."""
    out = run_benchmark(
        "benchmarks/bench_gpu.py",
        "--quick",
        "--device",
        "cpu",
        "--workdir",
        str(tmp_path),
        "--json",
        str(tmp_path / "g.json"),
    )
    figures = json.loads((tmp_path / "g.json").read_text())
    assert "alphas and ranks agree" in out and figures["failed"] == [] and figures["compared_layers"] == 14
    assert figures["stages"]["Gram product + eigensolve"] > 0 and figures["gpu_peak_mb"] is None


def test_bench_scale_quick_stays_within_its_memory_budget(tmp_path):
    out = run_benchmark(
        "benchmarks/bench_scale.py", "--quick", "--workdir", str(tmp_path), "--json", str(tmp_path / "s.json")
    )
    figures = json.loads((tmp_path / "s.json").read_text())
    assert figures["failed_layers"] == [] and figures["peak_rss_mb"] <= figures["rss_budget_mb"], out


def test_bench_gguf_quick_reads_every_type(tmp_path):
    import pytest

    pytest.importorskip("gguf")
    out = run_benchmark(
        "benchmarks/bench_gguf.py", "--quick", "--workdir", str(tmp_path), "--json", str(tmp_path / "g.json")
    )
    assert "GGUF Q4_0" in out
    rows = json.loads((tmp_path / "g.json").read_text())["rows"]
    assert [row["layers"] for row in rows] == [7, 7, 7, 7]
    assert all(row["peak_rss_mb"] < 300 for row in rows)  # the quick block's tensors are < 1 MB each


def test_bench_ray_quick_gets_the_local_reports_on_one_and_two_nodes(tmp_path):
    pytest.importorskip("ray")
    out = run_benchmark(
        "benchmarks/bench_ray.py", "--quick", "--workdir", str(tmp_path), "--json", str(tmp_path / "r.json")
    )
    figures = json.loads((tmp_path / "r.json").read_text())
    assert "Ray reports equal local: yes" in out
    assert figures["block_ray_1_s"] > 0 and figures["block_ray_2_s"] > 0 and "overhead_cpu_ms_per_layer" in figures


def test_bench_callback_quick_trains_with_and_without_the_callback(tmp_path):
    pytest.importorskip("transformers")
    out = run_benchmark("benchmarks/bench_callback.py", "--quick", "--repeats", "1", "--workdir", str(tmp_path))
    assert "ratio with / without" in out and "one measurement" in out
