"""The benchmarks run in CI in their quick modes, so they never rot (timings are not checked)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_bench_fit_quick_agrees_with_powerlaw():
    out = run_benchmark("benchmarks/bench_fit.py", "--quick")
    assert "powerlaw" in out


def test_bench_model_quick_runs_weightscope_end_to_end(tmp_path):
    out = run_benchmark("benchmarks/bench_model.py", "--quick", "--no-ww", "--workdir", str(tmp_path), "--json", str(tmp_path / "b.json"))
    assert "tiny-block" in out
    rows = __import__("json").loads((tmp_path / "b.json").read_text())
    assert rows[0]["layers"] == 7 and rows[0]["weightscope"][0]["wall_s"] > 0
