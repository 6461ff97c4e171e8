"""Per-layer checks that decide whether a layer's alpha can be believed, and the verdict.

An alpha alone misleads: one huge weight (a correlation trap), a collapse to low rank,
a few giant eigenvalues (dragon kings) or a three-point "tail" all give a small alpha
that says nothing about training. `diagnose` runs every check on one layer and turns
them into a verdict with the flags and one-sentence reasons that led there. Every
threshold comes from one `Thresholds` object (weightscope.config).

The checks are modules of this package, one finding each: `results` (their result
types), `traps`, `rank`, `tail` (dragon kings and fit trust) and `verdict` (the judge);
`diagnose`, here, runs them on one layer.
"""

from __future__ import annotations

import numpy as np

from weightscope import vocabulary
from weightscope.checks.rank import rank_info
from weightscope.checks.results import Diagnostics
from weightscope.checks.tail import dragon_kings, fit_trust
from weightscope.checks.traps import correlation_traps
from weightscope.checks.verdict import decide
from weightscope.config import Thresholds
from weightscope.errors import WeightscopeError
from weightscope.linalg.gram import layer_shape
from weightscope.linalg.spectrum import SpectrumOptions
from weightscope.stats.fit import PowerLawFit
from weightscope.stats.initialization import match_initialiser
from weightscope.stats.randmat import RandomizedESD, fit_mp_bulk, ks_distance, tracy_widom_scale
from weightscope.stats.vectors import eigenvector_localization


def diagnose(
    matrices: list[np.ndarray],
    evals: np.ndarray,
    fit: PowerLawFit,
    *,
    stored_dtype: str,
    thresholds: Thresholds,
    randomized: RandomizedESD | None = None,
    vectors: bool = False,
    spectrum: SpectrumOptions = SpectrumOptions(),
    solved: SpectrumOptions | None = None,
    known_rank: int | None = None,
) -> Diagnostics:
    """Run every check on one layer and decide its verdict.

    ``matrices`` are the layer's 2-D matrices as stored (one per conv kernel position),
    ``evals`` their pooled ascending ESD, ``fit`` its power-law fit (may have failed).
    ``randomized`` (from `randmat.randomized_esd`, computed by the caller so that views can
    draw it too) adds the correlation-trap check and the distance from random: a shuffle
    of all N·M entries plus a float32 eigensolve, measured at 0.5–1× the cost of the
    plain spectrum + fit for square layers and 1.5–2.5× for tall (4d×d) ones, where the
    memory-bound shuffle dominates. ``vectors`` adds eigenvector localisation (a full
    eigh). ``spectrum``: the precision the checks judge by (the rank tolerance);
    ``solved``: the one ``evals`` were solved in, when another (under "auto",
    `weightscope.analysis.spectra.LayerSpectrum`), for the spectra compared with them.
    ``known_rank``: the numerical rank, when the caller has it (the pipeline counts it
    with the spectrum, `weightscope.analysis.spectra.layer_rank`).
    """
    n, m = _checked_layer(matrices, evals)
    if not np.all(np.isfinite(evals)):
        return Diagnostics(
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            "failed",
            ["non-finite"],
            ["The spectrum has non-finite eigenvalues (NaN or inf weights)."],
            advice=vocabulary.advice("failed"),
        )
    mp = fit_mp_bulk(evals, n, m, thresholds.tw_margin)
    rank = rank_info(matrices, evals, stored_dtype, spectrum.dtype, thresholds, known_rank)
    traps = shuffle_ks_distance = None
    if randomized is not None:
        shuffle_ks_distance = ks_distance(evals, randomized.evals)
        traps = correlation_traps(
            matrices, randomized.evals, randomized.variance, fit, mp, float(evals[-1]), solved or spectrum, thresholds
        )
    kings = trust = None
    if fit.status == "ok":
        kings = dragon_kings(evals, fit, thresholds)
        trust = fit_trust(
            evals,
            fit,
            thresholds,
            randomized.evals if randomized is not None else None,
            traps.bulk_edge if traps is not None else None,
        )
    vector_stats = None
    if vectors:
        tail_start = fit.xmin if fit.status == "ok" else mp.bulk_edge
        vector_stats = eigenvector_localization(matrices, tail_start, spectrum)
    like_shuffled = randomized is not None and shuffled_like(evals, randomized, shuffle_ks_distance, n, m, thresholds)
    init = None
    spikeless_random = mp.ks <= thresholds.mp_ks_max or (
        shuffle_ks_distance is not None and shuffle_ks_distance <= thresholds.shuffle_ks_max
    )
    if (mp.spikes_above_edge == 0 and spikeless_random) or like_shuffled:
        init = match_initialiser(matrices)
    decision = decide(
        fit,
        mp,
        shuffle_ks_distance,
        traps,
        rank,
        kings,
        trust,
        stored_dtype=stored_dtype,
        thresholds=thresholds,
        like_shuffled=like_shuffled,
        init=init,
    )
    return Diagnostics(
        mp,
        shuffle_ks_distance,
        traps,
        rank,
        kings,
        trust,
        vector_stats,
        decision.verdict,
        decision.flags,
        decision.reasons,
        confidence=decision.confidence,
        advice=vocabulary.advice(decision.verdict),
        init=init,
    )


def shuffled_like(
    evals: np.ndarray,
    randomized: RandomizedESD,
    shuffle_ks_distance: float | None,
    n: int,
    m: int,
    thresholds: Thresholds,
) -> bool:
    """Whether the ESD cannot be told from its element-wise shuffled copy's: within
    ``shuffle_ks_max`` in KS distance, and λmax no more than ``tw_margin`` Tracy–Widom
    scales above the copy's. Unlike "MP-shaped, no spike", this needs no MP law: a sparse
    i.i.d. layer (0.5–5 % density) has no MP-shaped ESD, so an ill-fitting MP edge left it
    spikes and it was never random-like (0/96), though it is as random as its shuffle."""
    if shuffle_ks_distance is None or shuffle_ks_distance > thresholds.shuffle_ks_max:
        return False
    margin = thresholds.tw_margin * tracy_widom_scale(n, m) * randomized.variance
    return float(evals[-1]) <= float(randomized.evals[-1]) + margin


def _checked_layer(matrices: list[np.ndarray], evals: np.ndarray) -> tuple[int, int]:
    """(N, M) of the layer, after checking matrices and ESD belong together."""
    if not matrices:
        raise WeightscopeError("a layer needs at least one matrix to diagnose")
    shape = matrices[0].shape
    if len(shape) != 2 or any(matrix.shape != shape for matrix in matrices):
        odd = next((mt.shape for mt in matrices if mt.shape != shape), shape)
        raise WeightscopeError(f"a layer's matrices must be 2-D and of one shape, got {shape} and {odd}")
    n, m = layer_shape(matrices)
    if len(evals) != m * len(matrices):
        raise WeightscopeError(f"ESD has {len(evals)} eigenvalues, expected {m * len(matrices)} for these matrices")
    return n, m
