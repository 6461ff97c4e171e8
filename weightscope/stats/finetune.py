"""How many directions a fine-tune's update uses, against a random matrix of the same size.

Fine-tuning updates live in a subspace orders of magnitude smaller than the parameter
count (Aghajanyan, Zettlemoyer & Gupta 2021, "Intrinsic dimensionality explains the
effectiveness of language model fine-tuning"; Li et al. 2018 for the measure), which is
what LoRA (Hu et al. 2022) exploits. From the singular values σ of one layer's update ΔW:

- ``rank90``/``rank99``: the smallest rank r whose best rank-r approximation (Eckart–Young:
  the top r singular directions) holds 90 % / 99 % of ‖ΔW‖_F², i.e. the smallest LoRA rank
  that captures that share of the update;
- ``random_rank90``: the same count for a Gaussian matrix of the same shape and norm.
  Its σ² profile is the Marchenko–Pastur law (scale-free: the norm drops out of the share),
  taken at the midpoint quantiles (i − ½)/M. A Gaussian matrix's rank90 concentrates on
  this value: over 50 seeded simulations each of shapes from 64×64 to 1024×256 it lay
  within ±1 of it (tests check ±2), so an update is ``concentrated`` when its rank90 is below
  ``random_rank90`` by more than `CONCENTRATION_MARGIN`. That says "less evenly spread than
  noise", not "low-rank": a full-rank 512² update with lognormal(0, 1) row scales has
  rank90 91 against a random 262, a sign-like one 208; rank90 itself is the LoRA rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from weightscope.stats.randmat import mp_quantiles

#: How far below the random rank90 an update's rank90 must be to count as concentrated:
#: max(this many directions, `CONCENTRATION_SHARE` of the random rank90).
CONCENTRATION_MARGIN = 3
CONCENTRATION_SHARE = 0.05


@dataclass(frozen=True)
class UpdateRanks:
    """LoRA ranks holding 90 % and 99 % of ‖ΔW‖², and the random baseline for rank90."""

    rank90: int
    rank99: int
    random_rank90: int
    concentrated: bool


def energy_rank(evals_desc: np.ndarray, share: float) -> int:
    """Fewest leading values of a descending, non-negative profile holding ``share`` of its sum."""
    total = float(evals_desc.sum())
    if total <= 0:
        return 0
    return min(int(np.searchsorted(np.cumsum(evals_desc) / total, share - 1e-12) + 1), int(evals_desc.size))


def random_profile(n: int, m: int) -> np.ndarray:
    """Expected descending σ² profile (unit variance) of an n×m Gaussian matrix, N ≥ M after orienting."""
    big, small = max(n, m), min(n, m)
    probs = (np.arange(small) + 0.5) / small
    return mp_quantiles(big / small, probs)[::-1]


def update_ranks(evals_desc: np.ndarray, n: int, m: int) -> UpdateRanks:
    """`UpdateRanks` of an update whose σ² (any common scale) are ``evals_desc``, of shape n×m.

    A pooled conv update (several kernel positions) passes its pooled σ²: the random
    profile is then that of one slice, repeated, which has the same shares.
    """
    profile = random_profile(n, m)
    repeats = max(1, evals_desc.size // profile.size)
    baseline = np.sort(np.tile(profile, repeats))[::-1]
    rank90, rank99 = energy_rank(evals_desc, 0.9), energy_rank(evals_desc, 0.99)
    random90 = energy_rank(baseline, 0.9)
    margin = max(CONCENTRATION_MARGIN, CONCENTRATION_SHARE * random90)
    return UpdateRanks(rank90, rank99, random90, rank90 > 0 and rank90 < random90 - margin)


@dataclass(frozen=True)
class FinetuneDimension:
    """The whole update's intrinsic dimension, summed over the layers with an update.

    ``directions90`` is Σ rank90; ``params90`` the parameters of those rank-1 directions
    (a direction of an n × m matrix costs n + m numbers: a LoRA of that rank), ``params``
    the parameters of the updated matrices and ``share`` = params90/params.
    ``concentrated`` counts the layers more concentrated than a random update.
    """

    layers: int
    directions90: int
    params90: int
    params: int
    share: float
    concentrated: int


def finetune_dimension(layers: list[tuple[int, int, int, bool]]) -> FinetuneDimension | None:
    """From (rank90, parameters of those directions, parameters, concentrated) per layer."""
    if not layers:
        return None
    directions = sum(rank for rank, _, _, _ in layers)
    params90 = sum(cost for _, cost, _, _ in layers)
    params = sum(size for _, _, size, _ in layers)
    return FinetuneDimension(
        len(layers),
        directions,
        params90,
        params,
        params90 / params if params else 0.0,
        sum(1 for *_, concentrated in layers if concentrated),
    )
