"""Measure how often a layer gets "no reading" of alpha on planted spectra whose truth is known.

Each planted ESD is a Marchenko–Pastur body (Q = 4, its edge at 0.9·xmin, twice as many
eigenvalues as the tail and at least 300) under a tail of n points drawn from one family:

- ``power-law α``: exact p(λ) ∝ λ^(−α) above xmin = 1 (alpha means exactly what it says;
  for α = 1.7, 2.5, 4 and 8 the table also gives how often a reading names the true
  band: over-trained, healthy, under-trained);
- ``lognormal``: a lognormal (μ = 0, s = 1.5) above its 80 % quantile;
- ``exponential``: xmin + Exp(mean 0.5·xmin) (a light tail: alpha reads "large");
- ``truncated``: a power law α = 2.5 cut off at 10·xmin;
- ``MP``: the whole ESD of a Gaussian N×M matrix (M = n, Q = 4): no tail at all.

Each ESD is fitted (`fit_power_law`) and read by the shipped rule
(`checks.verdict.reading_confidence`); the table gives, per family and tail size, the share with
no reading under the rule before the reading/confidence split ("previous": every test had
to pass — tail ≥ 20, KS, alpha's spread over ±3 xmin candidates ≤ 0.3, no better
lognormal or exponential, no bulk-edge tail) and under the shipped rule, the share read
with a solid fit, the share of readings that name the true band (and, of the readings
of a tail shorter than ``trust_min_tail`` that the fit picked, how many did), and the 95th and 99th
percentiles of alpha's spread (`checks.tail.alpha_spread`) in units of its standard error
(α − 1)/√n_tail, which the stability test compares with ``stability_max_se``.

    python scripts/measure_readings.py [--reps 200] [--sizes 30,50,100,200,500,1000,2000]

Seeded (seed = replicate index), so the table is reproducible.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import numpy as np

from weightscope.config import Thresholds
from weightscope.stats.fit import candidate_alphas, fit_power_law
from weightscope.stats.randmat import fit_mp_bulk, mp_quantiles

Q = 4.0
#: Exact power laws planted: one over-trained, two healthy, one under-trained alpha.
TRUE_ALPHAS = (1.7, 2.5, 4.0, 8.0)
XMIN = 1.0
BODY_EDGE = 0.9


def _pareto(rng: np.random.Generator, n: int, alpha: float, top: float = np.inf) -> np.ndarray:
    """n draws of p(x) ∝ x^(−α) on [XMIN, top] by inverting the CDF."""
    cut = 1.0 - (top / XMIN) ** (1.0 - alpha) if np.isfinite(top) else 1.0
    return XMIN * (1.0 - rng.uniform(0.0, cut, n)) ** (-1.0 / (alpha - 1.0))


def _lognormal_tail(rng: np.random.Generator, n: int) -> np.ndarray:
    from scipy.stats import lognorm

    law = lognorm(s=1.5)
    start = law.ppf(0.8)
    return XMIN * law.ppf(rng.uniform(0.8, 1.0, n)) / start


TAILS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    **{f"power-law {a:g}": functools.partial(_pareto, alpha=a) for a in TRUE_ALPHAS},
    "lognormal": _lognormal_tail,
    "exponential": lambda rng, n: XMIN + rng.exponential(0.5 * XMIN, n),
    "truncated": lambda rng, n: _pareto(rng, n, 2.5, top=10.0 * XMIN),
}


def planted(family: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """(ascending ESD, N, M) of one planted layer."""
    if family == "MP":
        w = rng.standard_normal((int(Q * n), n))
        return np.linalg.eigvalsh(w.T @ w / w.shape[0]), int(Q * n), n
    body_size = max(300, 2 * n)
    unit = mp_quantiles(Q, rng.uniform(0.0, 1.0, body_size))
    body = unit * BODY_EDGE * XMIN / (1.0 + 1.0 / np.sqrt(Q)) ** 2
    evals = np.sort(np.concatenate([body, TAILS[family](rng, n)]))
    m = len(evals)
    return evals, int(Q * m), m


def previous_rule(evals: np.ndarray, fit, trust, mp, thresholds: Thresholds) -> bool:
    """Whether the rule before the reading/confidence split gave no reading: a tail of
    at least 20, the KS test passed, alpha's spread over ±3 xmin candidates (both ways)
    at most 0.3, no better lognormal or exponential, no bulk-edge tail."""
    xmins, alphas = candidate_alphas(evals, min_tail=1)
    chosen = int(np.argmin(np.abs(xmins - fit.xmin)))
    window = alphas[max(0, chosen - 3) : chosen + 4]
    window = window[np.isfinite(window)]
    stable = len(window) > 0 and float(np.max(window) - np.min(window)) <= 0.3
    bulk_edge = mp.ks <= thresholds.mp_ks_max and fit.xmin < mp.bulk_edge
    lost = any(t.R < 0 and t.p < thresholds.llr_p for t in (trust.vs_lognormal, trust.vs_exponential))
    return bulk_edge or not (fit.num_tail >= 20 and trust.ks_ok and stable and not lost)


def band(alpha: float, thresholds: Thresholds) -> int:
    return 0 if alpha < thresholds.alpha_low else 2 if alpha > thresholds.alpha_high else 1


def measure(family: str, n: int, reps: int, thresholds: Thresholds) -> dict[str, float]:
    from weightscope.checks.tail import fit_trust
    from weightscope.checks.verdict import reading_confidence

    before = after = solid = right = short = short_right = 0
    true_alpha = float(family.split()[-1]) if family.startswith("power-law") else None
    ratios = []
    for seed in range(reps):
        rng = np.random.default_rng(seed)
        evals, rows, cols = planted(family, n, rng)
        fit = fit_power_law(evals)
        mp = fit_mp_bulk(evals, rows, cols, thresholds.tw_margin)
        if fit.status != "ok":
            before += 1
            after += 1
            continue
        trust = fit_trust(evals, fit, thresholds)
        before += previous_rule(evals, fit, trust, mp, thresholds)
        confidence = reading_confidence(fit, mp, trust, thresholds)
        after += confidence is None
        solid += confidence == "solid"
        if confidence is not None and true_alpha is not None:
            named = band(fit.alpha, thresholds) == band(true_alpha, thresholds)
            right += named
            if fit.num_tail < thresholds.trust_min_tail:  # a short tail picked by the fit, read approximately
                short += 1
                short_right += named
        if trust.alpha_spread is not None and fit.sigma:
            ratios.append(trust.alpha_spread / fit.sigma)
    q95, q99 = np.quantile(ratios, [0.95, 0.99]) if ratios else (np.nan, np.nan)
    read = reps - after
    return {
        "previous": before / reps,
        "now": after / reps,
        "solid": solid / reps,
        "q95": q95,
        "q99": q99,
        "right": right / read if read and true_alpha is not None else float("nan"),
        "short": f"{short_right}/{short}" if true_alpha is not None else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--sizes", default="30,50,100,200,500,1000,2000")
    parser.add_argument("--families", default=",".join([*TAILS, "MP"]))
    args = parser.parse_args()
    thresholds = Thresholds()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        "| tail | n | no reading, previous rule | no reading, now | solid | true band read | of them tails < 20 "
        "| spread/σ q95 | q99 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for family in args.families.split(","):
        for n in sizes:
            reps = args.reps if family != "MP" else max(10, args.reps * 100 // max(n, 100))
            r = measure(family, n, reps, thresholds)
            right = "" if np.isnan(r["right"]) else f"{r['right']:.0%}"
            print(
                f"| {family} | {n} | {r['previous']:.0%} | {r['now']:.0%} | {r['solid']:.0%} | {right} | {r['short']} | "
                f"{r['q95']:.2f} | {r['q99']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
