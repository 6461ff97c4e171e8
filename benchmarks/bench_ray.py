"""What `--executor ray` costs over local threads, and what a second node buys.

    python benchmarks/bench_ray.py            # one Llama-7B block (7 layers) + 96 small layers
    python benchmarks/bench_ray.py --quick    # seconds: narrow shapes

Starts its own Ray cluster on this machine with Ray's `ray.cluster_utils.Cluster` (a head
of one CPU, then a second node of one CPU joined to it), so the node count is under the
benchmark's control and no other cluster is touched. The driver is this process; every
layer is a task that reads its own tensor. Reported, each the median of ``--repeat`` runs
after a warm-up run (Ray's start-up and the workers' imports are reported apart):

- overhead: many small layers, where the eigensolver is cheap and the per-task cost
  (scheduling, a worker opening the checkpoint, returning the result) shows; local
  threads (one worker) against one Ray node of one CPU, per layer;
- throughput: the Llama block, local with one and two workers against Ray with one and
  two nodes; every Ray report is checked equal to the local one.

What it cannot show on a 2-core machine: two nodes here share the same two cores (and
the disk) that local threads use, so "two nodes" is at best two cores, like two local
workers. Scaling past that needs more machines.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from _common import benchmark_parser, llama_block_shards, write_sharded

from weightscope.analysis.pipeline import analyze_with
from weightscope.execution.plan import Execution
from weightscope.options import AnalysisOptions
from weightscope.render.formats import json_text as to_json


def tree_cpu_ticks() -> dict[tuple[int, str], int]:
    """CPU ticks used so far by this process and each living descendant (each with the
    children it reaped), by (pid, start time): the driver's threads, and Ray's GCS,
    raylets and workers, which `Cluster` starts as children of this process."""
    parents, used = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        used[pid] = (fields[19], sum(int(value) for value in fields[11:15]))  # starttime; utime stime cutime cstime

    def ours(pid: int) -> bool:
        for _ in range(64):
            if pid == os.getpid():
                return True
            pid = parents.get(pid, 0)
            if pid <= 1:
                return False
        return False

    return {(pid, start): ticks for pid, (start, ticks) in used.items() if ours(pid)}


def cpu_seconds_since(before: dict[tuple[int, str], int]) -> float:
    """CPU seconds the process tree used since ``before``. Unlike wall time this does not
    depend on how many other programs share the cores.
    A process that exited meanwhile is not counted (Ray's raylets do not collect their
    workers' times): nothing here exits during a measured run unless a worker is killed."""
    after = tree_cpu_ticks()
    return sum(ticks - before.get(key, 0) for key, ticks in after.items()) / os.sysconf("SC_CLK_TCK")


def timed(path: Path, execution: Execution, repeat: int) -> tuple[float, float, str]:
    """Median wall time and CPU seconds (`cpu_seconds_since`) of ``repeat`` analyses
    (cache off) after one unmeasured warm-up (imports, page cache, idle Ray workers), and
    the report's JSON."""
    analyze_with(path, AnalysisOptions(), execution=execution)
    walls, cpus, text = [], [], ""
    for _ in range(repeat):
        ticks, start = tree_cpu_ticks(), time.perf_counter()
        report = analyze_with(path, AnalysisOptions(), execution=execution)
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_seconds_since(ticks))
        text = to_json(report)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(
        f"  {path.name}, {execution.executor}, workers {execution.workers}: {wall:.2f} s wall, {cpu:.2f} CPU-s",
        flush=True,
    )
    return wall, cpu, text


def small_layers(directory: Path, count: int, width: int) -> Path:
    shards = {
        "model-00001-of-00001.safetensors": {
            f"model.layers.{i}.mlp.up_proj.weight": ((2 * width, width), 3.0 + (i % 5) / 2) for i in range(count)
        }
    }
    return write_sharded(directory, shards, "BF16")


def main() -> None:
    parser = benchmark_parser(__doc__, "narrow shapes (seconds)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    hidden, ffn = (512, 1376) if args.quick else (4096, 11008)
    name = "ray-quick" if args.quick else "ray"
    block = write_sharded(args.workdir / "models" / f"{name}-llama-block", llama_block_shards(hidden, ffn), "BF16")
    small = small_layers(args.workdir / "models" / f"{name}-small", 24 if args.quick else 96, 256)
    repeat = 1 if args.quick else args.repeat
    os.environ.pop("RAY_ADDRESS", None)  # this benchmark's own cluster, not one found around

    local = {1: Execution(cache=False, workers=1), 2: Execution(cache=False, workers=2)}
    figures: dict[str, float] = {}
    reports: dict[str, str] = {}
    for workers, execution in local.items():
        for workload, path in (("small", small), ("block", block)):
            (
                figures[f"{workload}_local_{workers}_s"],
                figures[f"{workload}_local_{workers}_cpu_s"],
                reports[workload],
            ) = timed(path, execution, repeat)

    start = time.perf_counter()
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.2"}  # loopback only (Ray rewrites 127.0.0.1)
    cluster = Cluster(initialize_head=True, head_node_args=node)
    on_ray = Execution(cache=False, executor="ray", ray_address=cluster.address)
    equal = True
    try:
        figures["ray_start_s"] = time.perf_counter() - start
        start = time.perf_counter()
        analyze_with(small, AnalysisOptions(), execution=on_ray)  # connects; the worker imports
        figures["ray_first_run_s"] = time.perf_counter() - start
        for nodes in (1, 2):
            if nodes == 2:
                cluster.add_node(**node)
                cluster.wait_for_nodes()
            for workload, path in (("small", small), ("block", block)):
                figures[f"{workload}_ray_{nodes}_s"], figures[f"{workload}_ray_{nodes}_cpu_s"], text = timed(
                    path, on_ray, repeat
                )
                equal &= text == reports[workload]
    finally:
        ray.shutdown()
        cluster.shutdown()
    if not equal:
        raise SystemExit("a Ray report differs from the local one")

    layers_small = json.loads(reports["small"])["summary"]["analysed"]
    # CPU, not wall: one BLAS thread per layer on both sides, so the difference is Ray's
    # (scheduling, each task opening the checkpoint, results back, its daemons meanwhile).
    figures["overhead_cpu_ms_per_layer"] = (
        1000 * (figures["small_ray_1_cpu_s"] - figures["small_local_2_cpu_s"]) / layers_small
    )
    figures["block_overhead_cpu_percent"] = 100 * (figures["block_ray_1_cpu_s"] / figures["block_local_2_cpu_s"] - 1)
    print(
        f"\nRay {ray.__version__}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; medians of {repeat} after a warm-up; "
        "Ray reports equal local: yes"
    )
    print(
        f"  start-up: cluster {figures['ray_start_s']:.1f} s, first run (connect + worker imports) {figures['ray_first_run_s']:.1f} s"
    )
    for workload, label in (
        ("small", f"{layers_small} small layers (512×256)"),
        ("block", f"Llama block {hidden}/{ffn} (7 layers)"),
    ):
        cells = [
            f"{title} {figures[f'{workload}_{key}_s']:.2f} s ({figures[f'{workload}_{key}_cpu_s']:.2f} CPU-s)"
            for title, key in (
                ("local 1 worker", "local_1"),
                ("2 workers", "local_2"),
                ("Ray 1 node", "ray_1"),
                ("2 nodes", "ray_2"),
            )
        ]
        print(f"  {label}: " + ", ".join(cells))
    print(
        f"  Ray's CPU overhead: {figures['overhead_cpu_ms_per_layer']:.1f} CPU-ms per small layer; "
        f"{figures['block_overhead_cpu_percent']:+.1f} % on the Llama block (Ray 1 node vs local 2 workers, one BLAS thread each)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    sys.exit(main())
