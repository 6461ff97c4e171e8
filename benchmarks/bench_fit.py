"""Time weightscope's power-law fitter against `powerlaw.Fit` on the same eigenvalues.

    python benchmarks/bench_fit.py [--quick] [--json out.json] [--sizes 384 1024 ...]

Both fitters search the same candidate set (weightscope with ``min_tail=1``, which never
binds, and powerlaw with its default xmin range and the alpha-range fix
``parameter_ranges={"alpha": [1, None]}``), so they must also give the same xmin and
alpha; the script exits with status 1 if they do not. If `weightwatcher` is importable its
fitter is timed too (an optional column; it is not a dependency).

Spectra (M eigenvalues each, seeded):
* ``mp``: the exact eigenvalue law of WᵀW/N for a Gaussian W with N = 2M, sampled through
  the Dumitriu–Edelman bidiagonal Laguerre model, so n = 8192 needs seconds, not a
  dense 8192² eigensolve.
* ``heavy``: the same bulk with its top 10% replaced by a planted power-law tail
  (p(λ) ∝ λ^−3 above the bulk edge), the shape of a well-trained layer.

Each fitter is timed as its fastest run: weightscope at least 3 runs, powerlaw as many
as fit in a second (at least one), so slow sizes are not repeated.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import powerlaw
from scipy.linalg import eigvalsh_tridiagonal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from weightscope.stats.fit import fit_power_law

SIZES = (384, 1024, 2048, 4096, 8192)
QUICK_SIZES = (384,)
ASPECT_RATIO = 2  # N / M
TAIL_SHARE = 0.1
TAIL_ALPHA = 3.0


def marchenko_pastur_spectrum(m: int, rng: np.random.Generator) -> np.ndarray:
    """Eigenvalues of WᵀW/N, W an N×M standard Gaussian matrix, in O(M²) time.

    WᵀW has the eigenvalues of B Bᵀ with B lower-bidiagonal, diagonal χ_{N−i} and
    subdiagonal χ_{M−1−i} (Dumitriu & Edelman 2002, β = 1).
    """
    n = ASPECT_RATIO * m
    diag = np.sqrt(rng.chisquare(n - np.arange(m)))
    sub = np.sqrt(rng.chisquare(np.arange(m - 1, 0, -1)))
    tridiag = diag**2
    tridiag[1:] += sub**2
    return eigvalsh_tridiagonal(tridiag, diag[:-1] * sub) / n


def heavy_tailed_spectrum(m: int, rng: np.random.Generator) -> np.ndarray:
    bulk = np.sort(marchenko_pastur_spectrum(m, rng))
    n_tail = int(TAIL_SHARE * m)
    tail = bulk[-1] * (rng.pareto(TAIL_ALPHA - 1, n_tail) + 1)
    return np.concatenate([bulk[: m - n_tail], tail])


SPECTRA: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "mp": marchenko_pastur_spectrum,
    "heavy": heavy_tailed_spectrum,
}


def best_time(func: Callable[[], object], min_runs: int, min_total: float, max_runs: int = 20) -> float:
    """Fastest of several runs: the least disturbed by other load on the machine."""
    times: list[float] = []
    while len(times) < min_runs or (sum(times) < min_total and len(times) < max_runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def weightwatcher_alpha() -> Callable[[np.ndarray], float] | None:
    try:
        from weightwatcher.WW_powerlaw import pl_fit
    except ImportError:
        return None
    return lambda evals: float(pl_fit(data=evals).alpha)


def bench_one(name: str, m: int, ww: Callable[[np.ndarray], float] | None) -> dict:
    evals = SPECTRA[name](m, np.random.default_rng([m, len(name)]))
    ours = fit_power_law(evals, min_tail=1)
    t_ours = best_time(lambda: fit_power_law(evals, min_tail=1), min_runs=3, min_total=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = powerlaw.Fit(evals, parameter_ranges={"alpha": [1, None]}, verbose=False)
        t_ref = best_time(
            lambda: powerlaw.Fit(evals, parameter_ranges={"alpha": [1, None]}, verbose=False),
            min_runs=1,
            min_total=1.0,
        )
    row = {
        "n": m,
        "spectrum": name,
        "t_weightscope_s": t_ours,
        "t_powerlaw_s": t_ref,
        "speedup": t_ref / t_ours,
        "alpha": ours.alpha,
        "abs_delta_alpha": abs(ours.alpha - ref.alpha),
        "same_xmin": bool(ours.xmin == ref.xmin),
    }
    if ww is not None:
        start = time.perf_counter()
        row["alpha_weightwatcher"] = ww(evals)
        row["t_weightwatcher_s"] = time.perf_counter() - start
    return row


def header(with_ww: bool) -> str:
    line = f"{'n':>6} {'spectrum':>8} {'t_weightscope':>14} {'t_powerlaw':>11} {'ratio':>8} {'|Δalpha|':>9} {'same xmin':>9}"
    return line + (f" {'t_weightwatcher':>15}" if with_ww else "")


def format_row(row: dict) -> str:
    line = (
        f"{row['n']:>6} {row['spectrum']:>8} {row['t_weightscope_s'] * 1e3:>12.2f}ms "
        f"{row['t_powerlaw_s']:>10.2f}s {row['speedup']:>7.0f}x {row['abs_delta_alpha']:>9.1e} "
        f"{'yes' if row['same_xmin'] else 'NO':>9}"
    )
    if "t_weightwatcher_s" in row:
        line += f" {row['t_weightwatcher_s']:>14.2f}s"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only n in {QUICK_SIZES} (seconds; for CI)")
    parser.add_argument("--sizes", type=int, nargs="+", help=f"spectrum sizes (default {SIZES})")
    parser.add_argument("--json", type=Path, help="write the rows and the environment here")
    args = parser.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)

    ww = weightwatcher_alpha()
    print(header(with_ww=ww is not None))
    rows = []
    for m in sizes:
        for name in SPECTRA:
            rows.append(bench_one(name, m, ww))
            print(format_row(rows[-1]), flush=True)
    if args.json:
        environment = {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "powerlaw": powerlaw.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
        }
        args.json.write_text(json.dumps({"environment": environment, "rows": rows}, indent=2))
    disagreements = [r for r in rows if not r["same_xmin"] or r["abs_delta_alpha"] > 1e-6 * r["alpha"]]
    if disagreements:
        print(f"weightscope and powerlaw disagree on {len(disagreements)} spectra", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
