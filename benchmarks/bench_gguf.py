"""A GGUF model end to end against the same model in safetensors: time and peak RSS.

    python benchmarks/bench_gguf.py            # one Llama-7B block (4 × 4096², 3 × 11008×4096)
    python benchmarks/bench_gguf.py --quick    # seconds: a 256-wide block (CI smoke test)

The block's layers have planted power-law spectra (benchmarks/_common.py) and are
written once as F32 safetensors and, with gguf's own writer, as GGUF in F16, Q8_0 and
Q4_0 (the types gguf can quantize in numpy; K-quants it can only dequantize). Each
`weightscope analyze --no-cache` runs as its own process (start-up included), peak RSS
from os.wait4. A second, in-process pass splits a GGUF analysis into its two costs:
dequantizing every tensor (`GGUFCheckpoint.read`) and solving every spectrum
(`linalg.spectrum.esd`), since dequantization must not cost more than the eigen work.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, measured, planted_weight, weightscope_env

sys.path.insert(0, str(ROOT))
from tests.gguf_fixtures import write_gguf
from weightscope.checkpoint import open_checkpoint, write_safetensors
from weightscope.checkpoint.layers import layer_matrices
from weightscope.linalg.spectrum import SpectrumOptions, esd

TYPES = ("F16", "Q8_0", "Q4_0")


def block(hidden: int, ffn: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    prefix = "model.layers.0."
    shapes = {f"{prefix}self_attn.{p}_proj.weight": ((hidden, hidden), a) for p, a in zip("qkvo", (3.0, 3.5, 4.5, 4.0))}
    shapes.update(
        {
            f"{prefix}mlp.gate_proj.weight": ((ffn, hidden), 2.5),
            f"{prefix}mlp.up_proj.weight": ((ffn, hidden), 5.0),
            f"{prefix}mlp.down_proj.weight": ((hidden, ffn), 3.0),
        }
    )
    return {name: planted_weight(rng, shape, alpha) for name, (shape, alpha) in shapes.items()}


def split_costs(path: Path) -> tuple[float, float]:
    """Seconds spent dequantizing every tensor, and solving every spectrum (float32)."""
    dequantize = solve = 0.0
    with open_checkpoint(path) as reader:
        for info in reader.tensors():
            start = time.perf_counter()
            values = reader.read(info)
            dequantize += time.perf_counter() - start
            start = time.perf_counter()
            esd(layer_matrices(values), SpectrumOptions("float32"))
            solve += time.perf_counter() - start
    return dequantize, solve


def build(workdir: Path, hidden: int, ffn: int) -> dict[str, Path]:
    """The model files (written once; a child process writes them, see `main`)."""
    files = {
        "safetensors F32": workdir / "block.safetensors",
        **{f"GGUF {q}": workdir / f"block-{q}.gguf" for q in TYPES},
    }
    if all(path.is_file() for path in files.values()):
        return files
    weights = block(hidden, ffn)
    write_safetensors(files["safetensors F32"], weights)
    heads = max(1, hidden // 128)
    for qtype in TYPES:
        write_gguf(files[f"GGUF {qtype}"], weights, qtype, heads=heads, kv_heads=heads, blocks=1)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 256-wide block, for CI")
    parser.add_argument("--workdir", type=Path, help="where the model files go (default: a temporary directory)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    hidden, ffn = (256, 704) if args.quick else (4096, 11008)
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.build_only:
            build(workdir, hidden, ffn)
            return
        # Linux hands a child the peak RSS of the parent it forked from (exec keeps the
        # old mm's high-water mark in ru_maxrss), so this process never holds the
        # weights: a child writes the files, and the in-process cost split runs last.
        subprocess.run(
            [sys.executable, __file__, "--build-only", "--workdir", str(workdir), *(["--quick"] if args.quick else [])],
            check=True,
        )
        files = build(workdir, hidden, ffn)
        runs = {}
        for label, path in files.items():
            out = workdir / f"{path.stem}.json"
            command = [
                sys.executable,
                "-m",
                "weightscope",
                "analyze",
                str(path),
                "--no-cache",
                "-f",
                "json",
                "-o",
                str(out),
            ]
            runs[label] = (measured(command, env=weightscope_env()), len(json.loads(out.read_text())["layers"]))
        rows = []
        print(f"one Llama block, hidden {hidden}, ffn {ffn}; weightscope analyze --no-cache, own process")
        print(f"{'file':<18} {'size MB':>8} {'wall s':>7} {'peak RSS MB':>12} {'dequantize s':>13} {'eigen s':>8}")
        for label, path in files.items():
            run, layers = runs[label]
            dequantize, solve = split_costs(path)
            row = {
                "file": label,
                "size_mb": path.stat().st_size / 2**20,
                "wall_s": run.wall_s,
                "peak_rss_mb": run.peak_rss_mb,
                "dequantize_s": dequantize,
                "eigen_s": solve,
                "layers": layers,
            }
            rows.append(row)
            print(
                f"{label:<18} {row['size_mb']:>8.1f} {run.wall_s:>7.2f} {run.peak_rss_mb:>12.0f} {dequantize:>13.2f} {solve:>8.2f}"
            )
        if args.json:
            args.json.write_text(json.dumps({"hidden": hidden, "ffn": ffn, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
