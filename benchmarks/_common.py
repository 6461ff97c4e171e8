"""What the model benchmarks share: measured child processes and synthetic checkpoints.

Synthetic layers have a *planted* power-law ESD rather than i.i.d. entries: column j of
the (N ≥ M oriented) matrix is scaled by d_j with P(d² > x) = x^−(α−1), so the ESD's
tail follows p(λ) ∝ λ^−α like a trained layer's (α 2–5), and the fit has a clear
optimum. i.i.d. entries give a Marchenko–Pastur ESD whose "alpha" is 15–70 and whose
KS distance is nearly flat over xmin, so any two fitters (or precisions) may pick
different, equally bad, tails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from weightscope.checkpoint import write_safetensors  # noqa: E402 - after the repository is put on sys.path


@dataclass
class Run:
    """One measured process: wall time (start-up included) and its own peak RSS."""

    wall_s: float
    peak_rss_mb: float


def measured(command: list[str], env: dict[str, str] | None = None) -> Run:
    """Run a command as its own process; its wall time and its own peak RSS (os.wait4
    reports the child's rusage alone, unlike RUSAGE_CHILDREN, which accumulates)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(command)}\n{stderr[-2000:]}")
    return Run(wall, usage.ru_maxrss / 1024)


def weightscope_env() -> dict[str, str]:
    """The environment for weightscope child processes: this checkout on the path."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def planted(rng: np.random.Generator, n: int, m: int, alpha: float, scale: float = 0.02) -> np.ndarray:
    """An N×M float32 matrix (N ≥ M) whose ESD has a power-law tail of exponent ``alpha``."""
    columns = rng.uniform(size=m) ** (-1.0 / (2.0 * (alpha - 1.0)))
    matrix = rng.standard_normal((n, m), dtype=np.float32)
    matrix *= (columns * scale).astype(np.float32)
    return matrix


def planted_weight(rng: np.random.Generator, shape: tuple[int, int], alpha: float) -> np.ndarray:
    """A weight of the stored ``shape`` (either orientation) with a planted tail."""
    rows, cols = shape
    if rows >= cols:
        return planted(rng, rows, cols, alpha)
    return np.ascontiguousarray(planted(rng, cols, rows, alpha).T)


def write_sharded(
    directory: Path, shards: dict[str, dict[str, tuple[tuple[int, int], float]]], dtype: str, seed: int = 0
) -> Path:
    """Write shards {file: {tensor: (shape, alpha)}} with a Hugging Face index; one tensor
    is generated at a time, so the writer holds at most one shard's tensors."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weight_map = {}
    for shard, layers in shards.items():
        tensors = {name: planted_weight(rng, shape, alpha) for name, (shape, alpha) in layers.items()}
        write_safetensors(directory / shard, tensors, dtypes=dict.fromkeys(tensors, dtype))
        weight_map.update(dict.fromkeys(tensors, shard))
        del tensors
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return directory


def llama_block_shards(
    hidden: int, ffn: int, blocks: range = range(1)
) -> dict[str, dict[str, tuple[tuple[int, int], float]]]:
    """Llama blocks (q, k, v, o: hidden²; gate, up: ffn×hidden; down: hidden×ffn), attention
    and MLP in separate shards, each layer with its own planted alpha (2.5–5)."""
    shards: dict[str, dict[str, tuple[tuple[int, int], float]]] = {}
    total = 2 * len(blocks)
    for i, block in enumerate(blocks):
        prefix = f"model.layers.{block}."
        shards[f"model-{2 * i + 1:05d}-of-{total:05d}.safetensors"] = {
            f"{prefix}self_attn.{p}_proj.weight": ((hidden, hidden), alpha)
            for p, alpha in zip("qkvo", (3.0, 3.5, 4.5, 4.0))
        }
        shards[f"model-{2 * i + 2:05d}-of-{total:05d}.safetensors"] = {
            f"{prefix}mlp.gate_proj.weight": ((ffn, hidden), 2.5),
            f"{prefix}mlp.up_proj.weight": ((ffn, hidden), 5.0),
            f"{prefix}mlp.down_proj.weight": ((hidden, ffn), 3.0),
        }
    return shards


def median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def benchmark_parser(doc: str | None, quick_help: str) -> argparse.ArgumentParser:
    """The options every model benchmark takes: --quick, --workdir, --json."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    return parser


@contextlib.contextmanager
def stage_times(
    stages: list[tuple[Any, str, str]], clock: Callable[[], float] = time.perf_counter
) -> Iterator[dict[str, float]]:
    """Seconds spent in each stage while the block runs: ``stages`` are (module, function
    name, label); each function is wrapped for the block's duration and restored after, and
    calls add up per label on ``clock``. A function the installed version lacks is not timed."""
    totals: dict[str, float] = {}
    originals = []
    for module, attribute, stage in stages:
        original = getattr(module, attribute, None)
        if original is None:
            continue
        originals.append((module, attribute, original))
        setattr(module, attribute, _timed(original, stage, totals, clock))
    try:
        yield totals
    finally:
        for module, attribute, original in originals:
            setattr(module, attribute, original)


def _timed(
    original: Callable[..., Any], stage: str, totals: dict[str, float], clock: Callable[[], float]
) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return original(*args, **kwargs)
        finally:
            totals[stage] = totals.get(stage, 0.0) + clock() - start

    return wrapper
