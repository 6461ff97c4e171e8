"""A 7B-shaped checkpoint on a GPU, end to end, in one command (under 10 minutes on one H100).

    python benchmarks/bench_gpu.py                          # build a Llama-7B-shaped BF16 checkpoint, run on CUDA
    python benchmarks/bench_gpu.py --model DIR              # an existing checkpoint instead
    python benchmarks/bench_gpu.py --quick --device cpu     # seconds: two narrow blocks, on the CPU (smoke test)

Steps, each timed and printed:

1. build: a sharded BF16 checkpoint shaped like Llama-2-7B (32 blocks of q, k, v, o
   4096², gate and up 11008×4096, down 4096×11008; a 32000×4096 embedding and lm_head:
   6.7 G parameters, 13.5 GB) with planted power-law layers (benchmarks/_common.py),
   written by a child process (so this process's peak memory stays small); skipped when
   it is already in ``--workdir`` or ``--model`` names one;
2. end to end: ``weightscope analyze DIR --device cuda --no-cache -f json`` as its own
   process: wall time and peak RSS, as a user runs it;
3. stages: the first ``--profile-blocks`` blocks analysed in this process with each stage
   timed (read + decode, Gram products + eigensolves of either precision, fit, diagnostics;
   wall seconds summed over the worker threads) and the GPU's peak memory
   (``torch.cuda.max_memory_allocated``);
4. agreement: the same subset analysed on the CPU (``--device cpu``); every alpha and
   numerical rank is compared with the GPU run's (alphas agree to ~1e-5 relative: the
   float32 eigensolvers round differently; ranks must be equal).

Exit status 1 when a layer failed, an alpha differs beyond ``--alpha-rtol`` or a rank differs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    ROOT,
    benchmark_parser,
    llama_block_shards,
    measured,
    stage_times,
    weightscope_env,
    write_sharded,
)

#: Llama-2-7B: hidden, MLP width, blocks, vocabulary.
HIDDEN, FFN, BLOCKS, VOCAB = 4096, 11008, 32, 32000
QUICK = (256, 688, 2, 1000)


def shards(hidden: int, ffn: int, blocks: int, vocab: int) -> dict[str, dict[str, tuple[tuple[int, int], float]]]:
    """Llama blocks plus the token embedding and an untied lm_head."""
    layout = {"model-embed.safetensors": {"model.embed_tokens.weight": ((vocab, hidden), 4.0)}}
    layout.update(llama_block_shards(hidden, ffn, range(blocks)))
    layout["model-head.safetensors"] = {"lm_head.weight": ((vocab, hidden), 3.5)}
    return layout


def subset_pattern(blocks: int) -> str:
    """--include pattern of the first ``blocks`` blocks."""
    return r"model\.layers\.(" + "|".join(str(b) for b in range(blocks)) + r")\."


def stage_profile(model: Path, device: str, include: str) -> tuple[dict[str, float], float | None, dict]:
    """(seconds per stage, GPU peak MB or None, report JSON) of the subset, in this process."""
    from weightscope.analysis import layer, pipeline
    from weightscope.analysis import spectra as layer_spectra
    from weightscope.execution.plan import Execution

    stages = [
        (pipeline, "read_layer", "read + decode"),
        (layer_spectra, "esd", "Gram product + eigensolve"),
        (layer_spectra, "gram_counts_below", "float64 rank count (inertia)"),
        (layer, "fit_power_law", "power-law fit"),
        (layer, "diagnose", "diagnostics"),
    ]
    torch = None
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with stage_times(stages) as totals:
        report = pipeline.analyze(model, include=[include], execution=Execution(device=device, cache=False))
    totals["(wall)"] = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch is not None else None
    return totals, peak, report.to_dict()


def compare(gpu_layers: list[dict], cpu_layers: list[dict], rtol: float) -> list[str]:
    """Disagreements between two runs' layers, one line each."""
    theirs = {layer["name"]: layer for layer in cpu_layers}
    problems = []
    for layer in gpu_layers:
        other = theirs.get(layer["name"])
        if other is None:
            problems.append(f"{layer['name']}: missing from the CPU run")
            continue
        a, b = layer.get("alpha"), other.get("alpha")
        if (a is None) != (b is None) or (a is not None and abs(a - b) > rtol * abs(b)):
            problems.append(f"{layer['name']}: alpha {a} on the GPU, {b} on the CPU")
        ranks = [(side.get("rank") or {}).get("numerical_rank") for side in (layer, other)]
        if ranks[0] != ranks[1]:
            problems.append(f"{layer['name']}: numerical rank {ranks[0]} on the GPU, {ranks[1]} on the CPU")
    return problems


def main() -> None:
    parser = benchmark_parser(__doc__, "two 256-wide blocks and a 1000-token vocabulary (seconds)")
    parser.add_argument(
        "--device", default="cuda", choices=("cuda", "cpu"), help="device of the measured runs (cpu: smoke test)"
    )
    parser.add_argument("--model", type=Path, help="analyse this checkpoint instead of building one")
    parser.add_argument("--blocks", type=int, help=f"blocks of the built checkpoint (default {BLOCKS})")
    parser.add_argument(
        "--profile-blocks", type=int, default=2, help="blocks of the stage profile and the CPU comparison"
    )
    parser.add_argument("--alpha-rtol", type=float, default=1e-3)
    parser.add_argument(
        "--prepare", action="store_true", help=argparse.SUPPRESS
    )  # internal: write the checkpoint, then exit
    args = parser.parse_args()
    hidden, ffn, blocks, vocab = QUICK if args.quick else (HIDDEN, FFN, BLOCKS, VOCAB)
    blocks = args.blocks or blocks
    model = args.model or args.workdir / "models" / f"llama-{hidden}x{blocks}"
    if args.prepare:
        write_sharded(model, shards(hidden, ffn, blocks, vocab), "BF16")
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, object] = {"device": args.device, "model": str(model)}
    start = time.perf_counter()
    if args.model is None:
        options = ["--workdir", str(args.workdir), "--blocks", str(blocks)] + (["--quick"] if args.quick else [])
        subprocess.run([sys.executable, __file__, "--prepare", *options], check=True)
    figures["build_s"] = time.perf_counter() - start
    size_gb = sum(p.stat().st_size for p in model.glob("*.safetensors")) / 1e9
    print(f"checkpoint: {model} ({size_gb:.2f} GB), built in {figures['build_s']:.1f} s", flush=True)

    out = args.workdir / "gpu-bench.weightscope.json"
    command = [
        sys.executable,
        "-m",
        "weightscope",
        "analyze",
        str(model),
        "--device",
        args.device,
        "--no-cache",
        "-f",
        "json",
        "-o",
        str(out),
    ]
    run = measured(command, weightscope_env())
    report = json.loads(out.read_text())
    failed = [layer["name"] for layer in report["layers"] if layer["status"] != "ok"]
    figures.update(end_to_end_s=run.wall_s, peak_rss_mb=run.peak_rss_mb, layers=len(report["layers"]), failed=failed)
    print(
        f"end to end ({args.device}): {len(report['layers'])} layers in {run.wall_s:.1f} s, peak RSS {run.peak_rss_mb:.0f} MB, "
        f"{size_gb / run.wall_s:.2f} GB/s; failed: {failed or 'none'}",
        flush=True,
    )

    include = subset_pattern(min(args.profile_blocks, blocks))
    stages, gpu_peak, _ = stage_profile(model, args.device, include)
    figures.update(stages=stages, gpu_peak_mb=gpu_peak)
    print(
        f"stages of blocks 0–{min(args.profile_blocks, blocks) - 1} on {args.device} (wall seconds summed over workers):"
    )
    for stage, seconds in sorted(stages.items(), key=lambda item: -item[1]):
        print(f"  {stage:<32}{seconds:8.2f}")
    print(f"  GPU peak memory: {f'{gpu_peak:.0f} MB' if gpu_peak is not None else 'n/a (not on a GPU)'}", flush=True)

    cpu_out = args.workdir / "gpu-bench.cpu.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "weightscope",
            "analyze",
            str(model),
            "--device",
            "cpu",
            "--no-cache",
            "--include",
            include,
            "-f",
            "json",
            "-o",
            str(cpu_out),
        ],
        env=weightscope_env(),
        check=True,
        capture_output=True,
    )
    subset = [
        layer
        for layer in report["layers"]
        if any(layer["name"] == c["name"] for c in json.loads(cpu_out.read_text())["layers"])
    ]
    problems = compare(subset, json.loads(cpu_out.read_text())["layers"], args.alpha_rtol)
    figures.update(compared_layers=len(subset), disagreements=problems)
    print(
        f"{args.device} vs CPU on {len(subset)} layers: {'alphas and ranks agree' if not problems else f'{len(problems)} disagree'}"
    )
    for line in problems:
        print(f"  {line}")
    print(f"total {time.perf_counter() - start:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if failed or problems or not subset:
        raise SystemExit(1)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
