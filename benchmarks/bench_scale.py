"""Memory stays bounded by the largest tensor, whatever the checkpoint's size.

    python benchmarks/bench_scale.py            # ~3 GB Qwen2-7B-shaped checkpoint (BF16)
    python benchmarks/bench_scale.py --quick    # seconds: the same layout, narrow shapes

Writes a sharded BF16 checkpoint shaped like Qwen2-7B: the 152064 × 3584 embedding and
lm_head (545 M parameters each: the vocabulary-sized matrices that must work), plus
``--blocks`` transformer blocks (grouped-query attention: k/v are 512 × 3584; MLP
18944 × 3584), then runs ``weightscope analyze`` on it as a child process and reports
wall time, peak RSS, throughput, and the budget 3 × largest float32 tensor + 300 MB.
The whole 7B model is 15 GB on disk; its largest tensors are the two above, so its
budget is the same as this checkpoint's: what grows with the model is time, not memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import benchmark_parser, measured, weightscope_env, write_sharded

VOCAB, HIDDEN, KV, FFN = 152064, 3584, 512, 18944


def qwen_shards(
    vocab: int, hidden: int, kv: int, ffn: int, blocks: int
) -> dict[str, dict[str, tuple[tuple[int, int], float]]]:
    shards = {"model-embed.safetensors": {"model.embed_tokens.weight": ((vocab, hidden), 4.0)}}
    for block in range(blocks):
        prefix = f"model.layers.{block}."
        shards[f"model-block{block:02d}.safetensors"] = {
            f"{prefix}self_attn.q_proj.weight": ((hidden, hidden), 3.0),
            f"{prefix}self_attn.k_proj.weight": ((kv, hidden), 3.5),
            f"{prefix}self_attn.v_proj.weight": ((kv, hidden), 4.5),
            f"{prefix}self_attn.o_proj.weight": ((hidden, hidden), 4.0),
            f"{prefix}mlp.gate_proj.weight": ((ffn, hidden), 2.5),
            f"{prefix}mlp.up_proj.weight": ((ffn, hidden), 5.0),
            f"{prefix}mlp.down_proj.weight": ((hidden, ffn), 3.0),
        }
    shards["model-head.safetensors"] = {"lm_head.weight": ((vocab, hidden), 3.5)}
    return shards


def main() -> None:
    parser = benchmark_parser(__doc__, "narrow shapes (seconds), same layout")
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument(
        "--prepare", action="store_true", help=argparse.SUPPRESS
    )  # internal: write the shards, then exit
    args = parser.parse_args()
    scale = 16 if args.quick else 1
    shapes = (VOCAB // scale, HIDDEN // scale, KV // scale, FFN // scale)
    name = "scale-quick" if args.quick else "scale"
    directory = args.workdir / "models" / name
    if args.prepare:
        write_sharded(directory, qwen_shards(*shapes, args.blocks), "BF16")
        return
    # Written by a child process: on Linux a process's peak RSS (ru_maxrss) survives fork
    # and exec, so an analysis started by a parent that had just generated gigabytes of
    # weights would report the writer's peak (8352 MB here for a 5414 MB analysis).
    options = ["--workdir", str(args.workdir), "--blocks", str(args.blocks)] + (["--quick"] if args.quick else [])
    subprocess.run([sys.executable, __file__, "--prepare", *options], check=True)
    model = directory
    size_gb = sum(p.stat().st_size for p in model.glob("*.safetensors")) / 1e9
    largest_mb = shapes[0] * shapes[1] * 4 / 2**20
    out = args.workdir / f"{name}.weightscope.json"
    run = measured(
        [sys.executable, "-m", "weightscope", "analyze", str(model), "-f", "json", "-o", str(out), "--no-cache"],
        weightscope_env(),
    )
    report = json.loads(out.read_text())
    failed = [layer["name"] for layer in report["layers"] if layer["status"] != "ok"]
    budget = 3 * largest_mb + 300
    figures = {
        "checkpoint_gb": size_gb,
        "layers": len(report["layers"]),
        "failed_layers": failed,
        "largest_tensor_float32_mb": largest_mb,
        "wall_s": run.wall_s,
        "peak_rss_mb": run.peak_rss_mb,
        "rss_budget_mb": budget,
        "throughput_gb_per_s": size_gb / run.wall_s,
    }
    print(
        f"\n{name}: {size_gb:.2f} GB BF16, {len(report['layers'])} matrices, largest {shapes[0]}×{shapes[1]} ({largest_mb:.0f} MB in float32)"
    )
    print(
        f"  wall {run.wall_s:.1f} s ({size_gb / run.wall_s:.3f} GB/s), peak RSS {run.peak_rss_mb:.0f} MB, budget {budget:.0f} MB: "
        f"{'within' if run.peak_rss_mb <= budget else 'OVER'}; failed layers: {failed or 'none'}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if failed or run.peak_rss_mb > budget:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
