"""Measure where the largest eigenvalue of a shuffled layer falls, in Tracy–Widom units
above the Marchenko–Pastur edge, for i.i.d. entries (no trap) and for planted large
entries (a trap), to calibrate the correlation-trap margin (Thresholds.trap_tw_margin).
Seeded; prints quantiles and rates.

    python scripts/measure_traps.py [--reps 100]

z = (λmax(shuffled X) − σ²(1 + 1/√Q)²) / (σ²·TW scale), σ² the entry variance: the
statistic `checks.traps.correlation_traps` compares with the margin. "trap" is the shipped rule:
z above the margin *and* entries outsized for the entries' own tail.
"""

from __future__ import annotations

import argparse

import numpy as np

from weightscope.checks.traps import correlation_traps
from weightscope.config import Thresholds
from weightscope.linalg.spectrum import SpectrumOptions, esd
from weightscope.stats.fit import fit_power_law
from weightscope.stats.randmat import fit_mp_bulk, randomized_esd, tracy_widom_scale

DISTRIBUTIONS = {
    "gaussian": lambda rng, shape: rng.standard_normal(shape),
    "uniform": lambda rng, shape: rng.uniform(-1.0, 1.0, shape),
    "t(8)": lambda rng, shape: rng.standard_t(8, shape),
    "t(6)": lambda rng, shape: rng.standard_t(6, shape),
    "t(5)": lambda rng, shape: rng.standard_t(5, shape),
}
SHAPES = [(128, 128), (256, 128), (512, 128), (1024, 128), (256, 256), (512, 256), (2048, 256), (512, 512)]


def z_score(w: np.ndarray, seed: int) -> tuple[float, bool]:
    """(z, whether the shipped rule calls it a trap)."""
    w = w.astype(np.float32)
    randomized = randomized_esd([w], seed, SpectrumOptions())
    n, m = max(w.shape), min(w.shape)
    edge = randomized.variance * (1.0 + np.sqrt(m / n)) ** 2
    z = float((randomized.evals[-1] - edge) / (randomized.variance * tracy_widom_scale(n, m)))
    evals = esd([w])
    mp = fit_mp_bulk(evals, n, m, Thresholds().tw_margin)
    traps = correlation_traps(
        [w],
        randomized.evals,
        randomized.variance,
        fit_power_law(evals),
        mp,
        float(evals[-1]),
        SpectrumOptions(),
        Thresholds(),
    )
    return z, traps.count > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100)
    args = parser.parse_args()
    margins = (4.0, 6.0, 8.0, 10.0, 12.0)
    print("i.i.d. entries: quantiles of z, and share of layers with z above each margin")
    for name, draw in DISTRIBUTIONS.items():
        zs, trapped = [], 0
        for i in range(args.reps):
            rng = np.random.default_rng(i)
            shape = SHAPES[i % len(SHAPES)]
            z, trap = z_score(draw(rng, shape), i)
            zs.append(z)
            trapped += trap
        zs = np.asarray(zs)
        shares = "  ".join(f">{m:g}: {np.mean(zs > m):5.1%}" for m in margins)
        print(
            f"  {name:9s} median {np.median(zs):5.2f} q99 {np.quantile(zs, 0.99):6.2f} max {zs.max():6.2f}   {shares}"
            f"   trap (shipped rule): {trapped}/{args.reps}"
        )
    print("planted single entries at 512x512 Gaussian: z by entry size (robust sigmas)")
    for sigmas in (20, 25, 30, 40):
        zs, trapped = [], 0
        reps = max(10, args.reps // 5)
        for i in range(reps):
            rng = np.random.default_rng(10_000 + i)
            w = rng.standard_normal((512, 512))
            w[rng.integers(512), rng.integers(512)] = sigmas * rng.choice([-1.0, 1.0])
            z, trap = z_score(w, i)
            zs.append(z)
            trapped += trap
        zs = np.asarray(zs)
        print(
            f"  {sigmas:3d} sigma: min z {zs.min():6.2f}, median {np.median(zs):6.2f}; z > 4 in {np.sum(zs > 4)}/{reps}, "
            f"trap (shipped rule) in {trapped}/{reps}"
        )


if __name__ == "__main__":
    main()
