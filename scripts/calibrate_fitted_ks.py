"""Simulate the null distribution of the fitted-and-searched KS distance of a power-law
tail, print the table shipped in weightscope/stats/fitted_ks.py, and measure the test's
size and power. Seeded; ~4 minutes on one core.

    python scripts/calibrate_fitted_ks.py table [--fits 60000]   # prints TAIL_SIZES / CRITICAL
    python scripts/calibrate_fitted_ks.py rates [--reps 400] [--only 'power law']  # size and power of the KS test

Null: n0 values from a Pareto law (alpha 2.5; the statistic does not depend on alpha),
n0 log-uniform in [12, 4000], fitted by fit_power_law(min_tail=10); the two-sided D at
the chosen xmin and the chosen tail size n_tail are recorded. Rows: log-spaced bins of
n_tail; entries: the upper quantiles of √n·D at the levels of fitted_ks.LEVELS.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from weightscope.checks.tail import fit_trust
from weightscope.checks.verdict import reading_confidence
from weightscope.config import Thresholds
from weightscope.stats.fit import fit_power_law
from weightscope.stats.fitted_ks import LEVELS, two_sided_distance
from weightscope.stats.randmat import mp_quantiles

MIN_TAIL = 10
BIN_EDGES = np.geomspace(10, 4000, 19)


def null_sample(rng: np.random.Generator, n0: int) -> np.ndarray:
    return (1.0 - rng.random(n0)) ** (-1.0 / 1.5)


def fitted_distance(values: np.ndarray) -> tuple[int, float] | None:
    fit = fit_power_law(values, min_tail=MIN_TAIL)
    if fit.status != "ok":
        return None
    tail = values[values >= fit.xmin]
    return int(fit.num_tail), two_sided_distance(tail, fit.alpha, fit.xmin)


def table(fits: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes, scaled = [], []
    for _ in range(fits):
        n0 = int(round(np.exp(rng.uniform(np.log(12), np.log(4000)))))
        result = fitted_distance(null_sample(rng, n0))
        if result is not None:
            sizes.append(result[0])
            scaled.append(np.sqrt(result[0]) * result[1])
    sizes, scaled = np.asarray(sizes), np.asarray(scaled)
    rows, centres = [], []
    for lo, hi in itertools.pairwise(BIN_EDGES):
        inside = (sizes >= lo) & (sizes < hi)
        if inside.sum() < 500:
            continue
        centres.append(int(round(np.exp(np.mean(np.log(sizes[inside]))))))
        rows.append(tuple(round(float(np.quantile(scaled[inside], 1.0 - level)), 4) for level in LEVELS))
        print(f"# n_tail in [{lo:.0f}, {hi:.0f}): {inside.sum()} fits")
    print(f"TAIL_SIZES = {tuple(centres)}")
    print("CRITICAL = (")
    for row in rows:
        print(f"    {row},")
    print(")")


def lognormal(rng, n0):
    return np.exp(rng.normal(0.0, 1.5, n0))


def exponential(rng, n0):
    return rng.exponential(1.0, n0) + 1.0


def mp_esd(rng, n0):
    """An MP ESD (Q = 2) sampled by quantiles with jitter: its upper part is a bounded tail."""
    probs = (np.arange(n0) + rng.random(n0)) / n0
    return mp_quantiles(2.0, probs)


def rates(reps: int, seed: int, only: str | None = None) -> None:
    from scipy.stats import kstwo

    thresholds = Thresholds()
    print("rejection rate of the fitted-KS test at 5 % (and share of fits read as solid: every check passed):")
    for name, draw in (
        ("power law", null_sample),
        ("lognormal", lognormal),
        ("exponential", exponential),
        ("MP", mp_esd),
    ):
        if only is not None and name != only:
            continue
        for n0 in (100, 300, 1000):
            rng = np.random.default_rng(seed)
            rejected = trusted = old_rejected = fitted = 0
            for _ in range(reps):
                values = np.sort(draw(rng, n0))
                fit = fit_power_law(values, min_tail=MIN_TAIL)
                if fit.status != "ok":
                    continue
                fitted += 1
                trust = fit_trust(values, fit, thresholds)
                rejected += not trust.ks_ok
                trusted += reading_confidence(fit, None, trust, thresholds) == "solid"
                old_rejected += kstwo.sf(fit.D, fit.num_tail) < 0.05  # the previous rule
            print(
                f"  {name:11s} n={n0:5d}: KS rejects {rejected / fitted:6.1%} (textbook critical value: "
                f"{old_rejected / fitted:6.1%}); solid {trusted / fitted:6.1%}  [{fitted} fits]"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("table", "rates"))
    parser.add_argument("--fits", type=int, default=60000)
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--only", help="one alternative of the rates: 'power law', lognormal, exponential, MP")
    args = parser.parse_args()
    if args.what == "table":
        table(args.fits, args.seed)
    else:
        rates(args.reps, args.seed, args.only)


if __name__ == "__main__":
    main()
