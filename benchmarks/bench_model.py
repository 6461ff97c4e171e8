"""weightscope against WeightWatcher on the same checkpoint files, end to end.

Each measured run is its own process (start-up and imports included, as a user pays
them), timed with a wall clock and measured for peak RSS through os.wait4. The two tools
alternate run by run so drift of the machine hits both alike; the table shows medians,
the ratio, and how far the two tools' alphas lie apart on every layer both analysed.

    python benchmarks/bench_model.py                      # MiniLM (real) + a Llama-7B block
    python benchmarks/bench_model.py --randomize          # the randomised (trap) analysis
    python benchmarks/bench_model.py --quick              # seconds: tiny shapes (CI smoke test)

WeightWatcher runs in its own virtual environment (`.bench/ww-venv`, made on first use
with `pip install torch==2.13.0 weightwatcher==0.7.7`); `--no-ww` or an unavailable
environment skips it and prints weightscope's figures alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.fetch_minilm import fetch as fetch_minilm  # noqa: E402
from weightscope.checkpoint import write_safetensors  # noqa: E402

WW_RUNNER = r"""
import json, logging, sys
logging.disable(logging.CRITICAL)
import weightwatcher as ww
model, out, randomize = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
details = ww.WeightWatcher(model=model).analyze(min_evals=50, randomize=randomize)
json.dump({str(row["longname"]): float(row["alpha"]) for _, row in details.iterrows()}, open(out, "w"))
"""


@dataclass
class Run:
    wall_s: float
    peak_rss_mb: float


@dataclass
class Row:
    model: str
    layers: int
    largest_tensor_mb: float
    weightscope: list[Run] = field(default_factory=list)
    weightwatcher: list[Run] = field(default_factory=list)
    alpha_abs_diff_median: float | None = None
    alpha_abs_diff_max: float | None = None
    alpha_rel_diff_median: float | None = None
    matched_layers: int = 0


def measured(command: list[str], env: dict[str, str] | None = None) -> Run:
    """Run a command as its own process; its wall time and its own peak RSS."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(command)}\n{stderr[-2000:]}")
    return Run(wall, usage.ru_maxrss / 1024)


# --- checkpoints ------------------------------------------------------------------------


def heavy_tailed(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Student-t(4) entries: a weight matrix with a real power-law tail in its ESD."""
    return (rng.standard_t(4.0, size=shape) * 0.02).astype(np.float32)


def llama_block(directory: Path, hidden: int, ffn: int) -> Path:
    """One Llama block (q, k, v, o: hidden²; gate, up, down: ffn×hidden), BF16, two shards."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    prefix = "model.layers.0."
    shards = {
        "model-00001-of-00002.safetensors": {
            f"{prefix}self_attn.{p}_proj.weight": (hidden, hidden) for p in "qkvo"
        },
        "model-00002-of-00002.safetensors": {
            f"{prefix}mlp.gate_proj.weight": (ffn, hidden),
            f"{prefix}mlp.up_proj.weight": (ffn, hidden),
            f"{prefix}mlp.down_proj.weight": (hidden, ffn),
        },
    }
    weight_map = {}
    for shard, shapes in shards.items():
        tensors = {name: heavy_tailed(rng, shape) for name, shape in shapes.items()}
        write_safetensors(directory / shard, tensors, dtypes={name: "BF16" for name in tensors})
        weight_map.update({name: shard for name in tensors})
        del tensors
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return directory


def minilm(directory: Path) -> Path:
    """The real all-MiniLM-L6-v2 (WeightWatcher wants a directory of *model*safetensors)."""
    target = directory / "model.safetensors"
    if not target.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        os.link(fetch_minilm(), target)
    return directory


def largest_tensor_mb(directory: Path) -> tuple[int, float]:
    from weightscope.pipeline import inspect

    inspection = inspect(directory)
    largest = max(info.numel for info in inspection.tensors) * 4 / 2**20
    return len(inspection.selection.layers), largest


# --- the tools ----------------------------------------------------------------------------


def weightscope_command(model: Path, out: Path, randomize: bool) -> list[str]:
    command = [sys.executable, "-m", "weightscope", "analyze", str(model), "-f", "json", "-o", str(out)]
    return command + (["--randomize"] if randomize else [])


def weightwatcher_python(workdir: Path, create: bool) -> Path | None:
    python = workdir / "ww-venv" / "bin" / "python"
    if python.is_file():
        return python
    if not create:
        return None
    subprocess.run([sys.executable, "-m", "venv", str(workdir / "ww-venv")], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)  # the CPU wheel on disk, never CUDA
    subprocess.run([*pip, "weightwatcher==0.7.7"], check=True)
    return python


def alpha_agreement(row: Row, ours: Path, theirs: Path) -> None:
    mine = {layer["name"].removesuffix(".weight"): layer["alpha"] for layer in json.loads(ours.read_text())["layers"]}
    other = json.loads(theirs.read_text())
    pairs = [(mine[name], alpha) for name, alpha in other.items() if mine.get(name) is not None and alpha > 0]
    if not pairs:
        return
    diffs = [abs(a - b) for a, b in pairs]
    row.matched_layers = len(pairs)
    row.alpha_abs_diff_median = statistics.median(diffs)
    row.alpha_abs_diff_max = max(diffs)
    row.alpha_rel_diff_median = statistics.median(abs(a - b) / b for a, b in pairs)


def bench(name: str, model: Path, args: argparse.Namespace, ww_python: Path | None) -> Row:
    layers, largest = largest_tensor_mb(model)
    row = Row(name, layers, largest)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ours, theirs = args.workdir / f"{name}.weightscope.json", args.workdir / f"{name}.ww.json"
    for repeat in range(args.repeats):
        tools = ["weightscope", "weightwatcher"] if repeat % 2 == 0 else ["weightwatcher", "weightscope"]
        for tool in tools:
            if tool == "weightscope":
                row.weightscope.append(measured(weightscope_command(model, ours, args.randomize), env))
            elif ww_python is not None:
                command = [str(ww_python), "-c", WW_RUNNER, str(model), str(theirs), "1" if args.randomize else "0"]
                row.weightwatcher.append(measured(command))
    if ww_python is not None:
        alpha_agreement(row, ours, theirs)
    return row


def median(runs: list[Run], key: str) -> float | None:
    return statistics.median(getattr(r, key) for r in runs) if runs else None


def print_table(rows: list[Row], randomize: bool) -> None:
    title = "randomised analysis (traps)" if randomize else "plain analysis"
    print(f"\nweightscope vs WeightWatcher 0.7.7, {title}, median of runs, process start included")
    header = (
        f"{'model':<13}{'layers':>7}{'largest MB':>11}{'ws wall s':>11}{'ww wall s':>11}{'speed-up':>10}"
        f"{'ws RSS MB':>11}{'ww RSS MB':>11}{'RSS budget':>11}{'|Δα| med':>10}{'|Δα| max':>10}{'rel med':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ww_wall, ww_rss = median(row.weightwatcher, "wall_s"), median(row.weightwatcher, "peak_rss_mb")
        ws_wall, ws_rss = median(row.weightscope, "wall_s"), median(row.weightscope, "peak_rss_mb")
        budget = 3 * row.largest_tensor_mb + 300

        def cell(value: float | None, fmt: str) -> str:
            return format(value, fmt) if value is not None else "—"

        print(
            f"{row.model:<13}{row.layers:>7}{row.largest_tensor_mb:>11.0f}{cell(ws_wall, '.2f'):>11}"
            f"{cell(ww_wall, '.2f'):>11}{cell(ww_wall / ws_wall if ww_wall else None, '.1f'):>9}×"
            f"{cell(ws_rss, '.0f'):>11}{cell(ww_rss, '.0f'):>11}{budget:>11.0f}"
            f"{cell(row.alpha_abs_diff_median, '.3f'):>10}{cell(row.alpha_abs_diff_max, '.3f'):>10}"
            f"{cell(row.alpha_rel_diff_median, '.1%'):>9}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one run, no WeightWatcher unless present")
    parser.add_argument("--randomize", action="store_true", help="time the randomised (trap) analysis")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="minilm,llama-block", help="comma list: minilm, llama-block, tiny-block")
    parser.add_argument("--no-ww", action="store_true", help="weightscope alone")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--prepare", help=argparse.SUPPRESS)  # internal: build one model, then exit
    args = parser.parse_args()
    if args.quick:
        args.models, args.repeats = "tiny-block", 1
    args.workdir.mkdir(parents=True, exist_ok=True)
    ww_python = None if args.no_ww else weightwatcher_python(args.workdir, create=not args.quick)
    builders = {
        "minilm": lambda: minilm(args.workdir / "models" / "minilm"),
        "llama-block": lambda: llama_block(args.workdir / "models" / "llama-block", 4096, 11008),
        "tiny-block": lambda: llama_block(args.workdir / "models" / "tiny-block", 256, 688),
    }
    if args.prepare:
        builders[args.prepare]()
        return
    rows = []
    for name in args.models.split(","):
        if name not in builders:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(builders)}")
        # Built in a child process: a forked child inherits the parent's peak RSS, so a
        # parent that once held gigabytes of generated weights would inflate every figure.
        subprocess.run([sys.executable, __file__, "--prepare", name, "--workdir", str(args.workdir)], check=True)
        rows.append(bench(name, builders[name](), args, ww_python))
    print_table(rows, args.randomize)
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=2))


if __name__ == "__main__":
    main()
