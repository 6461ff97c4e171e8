"""Measure the rounding-noise floor behind the rank check (linalg.rank.zero_tolerance), and the
rank check's false- and true-collapse rates per stored dtype. Seeded; prints a table.

    python scripts/measure_rank_floor.py [--seeds 16]

1. Noise model: W (Gaussian, or U diag(s) Vᵀ with log-spaced s, condition number κ) is
   rounded to BF16/F16; E = fl(W) − W. Printed: σmax(E) over the simulated noise level
   (`linalg.rank.rounding_noise_levels`, from the stored values alone), and the old floor
   u·σmax(W) over the measured σmax(E).
2. Rates over seeds: full-rank layers with κ = 1e2, 1e3, 1e4 (false collapse), rank-20
   (true collapse) and rank-1…5 products per dtype (the rank read), F32 rank-20 + noise
   2e-5 of the entry scale and F64 rank-20 + noise 1e-6 against numpy.linalg.matrix_rank.
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import numpy as np

from weightscope.checks.rank import rank_info
from weightscope.config import Thresholds
from weightscope.linalg.rank import PRECISION_BITS, rounding_noise_levels
from weightscope.linalg.spectrum import esd

THRESHOLDS = Thresholds()


def round_to(w: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "F16":
        return w.astype(np.float16).astype(np.float32)
    if dtype == "BF16":
        bits = np.asarray(w, dtype=np.float32).view(np.uint32)
        rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
        return rounded.astype(np.uint32).view(np.float32)
    return w.astype(np.float32)


def conditioned(n: int, m: int, kappa: float, rng: np.random.Generator) -> np.ndarray:
    u, _ = np.linalg.qr(rng.standard_normal((n, m)))
    v, _ = np.linalg.qr(rng.standard_normal((m, m)))
    s = np.logspace(0, -np.log10(kappa), m) * 0.02 * np.sqrt(n)
    return ((u * s) @ v.T).astype(np.float32)


def low_rank(n: int, m: int, r: int, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal((n, r)) @ rng.standard_normal((r, m)) * 0.02 / np.sqrt(r)).astype(np.float32)


def old_tolerance(evals: np.ndarray, dtype: str, m: int) -> float:
    """The previous rule: λmax·u² (u the unit roundoff), never below M·eps64."""
    u = 2.0 ** -PRECISION_BITS[dtype]
    return float(evals[-1]) * max(u * u, m * np.finfo(np.float64).eps)


def collapsed(w: np.ndarray, dtype: str) -> tuple[bool, bool, int]:
    evals = esd([w])
    new = rank_info([w], evals, dtype, "float64", THRESHOLDS)
    old = _old_rank(evals, old_tolerance(evals, dtype, min(w.shape)))
    return old.collapsed, new.collapsed, new.numerical_rank


def _old_rank(evals: np.ndarray, tolerance: float) -> tuple[bool, int]:
    rank = int(np.count_nonzero(evals > tolerance))
    return RankBefore(1.0 - rank / len(evals) > THRESHOLDS.rank_loss_max, rank)


class RankBefore(NamedTuple):
    collapsed: bool
    numerical_rank: int


def noise_model(n: int, m: int) -> None:
    print(f"noise model, {n}x{m}: sigma_max(E)/simulated level, old floor u*smax / sigma_max(E)")
    rng = np.random.default_rng(0)
    for dtype in ("BF16", "F16"):
        for name, w in (
            ("gaussian", 0.02 * rng.standard_normal((n, m)).astype(np.float32)),
            ("kappa 1e3", conditioned(n, m, 1e3, rng)),
        ):
            stored = round_to(w, dtype)
            e = stored.astype(np.float64) - w
            level = float(rounding_noise_levels([stored], PRECISION_BITS[dtype])[0])
            smax_e = np.linalg.norm(e, 2)
            smax_w = np.linalg.norm(w.astype(np.float64), 2)
            print(
                f"  {dtype:5s} {name:10s} {smax_e / np.sqrt(level * max(n, m)):6.3f} "
                f"{2.0 ** -PRECISION_BITS[dtype] * smax_w / smax_e:6.2f}"
            )


def rates(seeds: int, n: int, m: int) -> None:
    print(f"collapse rates over {seeds} seeds, {n}x{m} (old rule / new rule):")
    for dtype, kappas in (("BF16", (1e2, 1e3)), ("F16", (1e2, 1e3, 1e4)), ("F32", (1e3, 1e4))):
        for kappa in kappas:
            old = new = 0
            for seed in range(seeds):
                o, c, _ = collapsed(round_to(conditioned(n, m, kappa, np.random.default_rng(seed)), dtype), dtype)
                old, new = old + o, new + c
            print(f"  full rank {dtype:5s} kappa {kappa:7.0e}: false collapse {old}/{seeds} -> {new}/{seeds}")
        old = new = ranks_ok = 0
        for seed in range(seeds):
            o, c, rank = collapsed(round_to(low_rank(n, m, 20, np.random.default_rng(seed)), dtype), dtype)
            old, new, ranks_ok = old + o, new + c, ranks_ok + (rank == 20)
        print(
            f"  rank-20 {dtype:5s}: true collapse {old}/{seeds} -> {new}/{seeds}, numerical rank 20 in {ranks_ok}/{seeds}"
        )
    agree = old_agree = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        w = low_rank(n, m, 20, rng)
        w = (w + 2e-5 * 0.02 * rng.standard_normal(w.shape)).astype(np.float32)
        evals = esd([w])
        truth = np.linalg.matrix_rank(w)
        new_rank = rank_info([w], evals, "F32", "float64", THRESHOLDS)
        old_rank = _old_rank(evals, old_tolerance(evals, "F32", m))
        agree += new_rank.numerical_rank == truth
        old_agree += old_rank.numerical_rank == truth
    print(f"  F32 rank-20 + noise 2e-5: rank equals numpy.linalg.matrix_rank in {old_agree}/{seeds} -> {agree}/{seeds}")
    for dtype in ("BF16", "F16"):
        for r in (1, 2, 3, 5):
            ranks = [
                collapsed(round_to(low_rank(n, m, r, np.random.default_rng(seed)), dtype), dtype)[2]
                for seed in range(seeds)
            ]
            print(
                f"  rank-{r} {dtype:5s}: numerical rank {r} in {sum(k == r for k in ranks)}/{seeds} (read {min(ranks)}–{max(ranks)})"
            )
    agree = collapses = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        w = rng.standard_normal((n, 20)) @ rng.standard_normal((20, m)) + 1e-6 * rng.standard_normal((n, m))
        info = rank_info([w], esd([w]), "F64", "float64", THRESHOLDS)
        agree += info.numerical_rank == np.linalg.matrix_rank(w)
        collapses += info.collapsed
    print(
        f"  F64 rank-20 + noise 1e-6: rank equals numpy.linalg.matrix_rank in {agree}/{seeds}, collapsed {collapses}/{seeds}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16)
    args = parser.parse_args()
    noise_model(512, 512)
    noise_model(1024, 256)
    rates(args.seeds, 512, 256)


if __name__ == "__main__":
    main()
