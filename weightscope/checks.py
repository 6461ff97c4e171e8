"""Per-layer checks that decide whether a layer's alpha can be believed, and the verdict.

An alpha alone misleads: one huge weight (a correlation trap), a collapse to low rank,
a few giant eigenvalues (dragon kings) or a three-point "tail" all give a small alpha
that says nothing about training. `diagnose` runs every check on one layer and turns
them into a verdict with the flags and one-sentence reasons that led there. Every
threshold comes from one `Thresholds` object (weightscope.config).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from weightscope import vocabulary
from weightscope.config import Thresholds
from weightscope.errors import WeightscopeError
from weightscope.linalg.gram import layer_shape
from weightscope.linalg.rank import numerical_rank
from weightscope.linalg.spectrum import SpectrumOptions, esd
from weightscope.stats.fit import (
    PowerLawFit,
    candidate_alphas,
    fit_power_law,
)
from weightscope.stats.fitted_ks import critical_distance, two_sided_distance
from weightscope.stats.initialization import InitMatch, match_initialiser
from weightscope.stats.likelihood import (
    LikelihoodRatio,
    exponential_loglik,
    power_law_loglik,
    versus_lognormal,
    vuong,
)
from weightscope.stats.outliers import count_outliers
from weightscope.stats.randmat import (
    MPBulk,
    RandomizedESD,
    fit_mp_bulk,
    ks_distance,
    mp_edge,
    tracy_widom_scale,
)
from weightscope.stats.vectors import VectorStats, eigenvector_localization

# Robust standard deviation of a Gaussian from its median absolute deviation.
_MAD_TO_SIGMA = 1.4826


# --- the diagnostic result types (fields of `LayerResult`) -----------------------------


@dataclass(frozen=True)
class TrapEntry:
    """One stored weight that drives a correlation trap (indices into the tensor as stored)."""

    row: int
    col: int
    value: float
    sigmas: float
    #: the entry alone makes an eigenvalue above the MP bulk edge (see outsized_entries)
    dominant: bool = False


@dataclass(frozen=True)
class Traps:
    """Correlation traps: eigenvalues of the element-wise randomised W above the MP edge."""

    count: int
    max_rand_eval: float
    bulk_max: float
    entries: list[TrapEntry] = field(default_factory=list)
    #: alpha refitted with the trap entries replaced by the median entry (None: no trap,
    #: or no fit without them)
    alpha_without: float | None = None
    #: survival exponent of the entries' own tail (Hill's estimate; see outsized_entries)
    entry_tail_index: float | None = None
    #: λmax with the entries replaced by the median entry (None: no entries)
    lambda_max_without: float | None = None
    #: the entries make the spectrum's top: without them λmax drops by more than
    #: ``tw_margin`` Tracy–Widom scales, to within the MP bulk edge (see trap_matters)
    makes_spike: bool = False


@dataclass(frozen=True)
class RankInfo:
    """Numerical rank relative to λmax and the stored dtype's precision, and dead channels.

    ``rank_loss`` is the share of all eigenvalues at numerical zero; ``collapsed`` is
    judged on the live channels (``rank_loss_live``): channels that are zero to
    ``dead_channel_ratio`` of a typical channel's norm — ``dead_rows`` (output channels,
    dim 0 as stored) and ``dead_cols`` (input channels, dim 1) — are their own finding,
    not a collapse of the rest.
    """

    numerical_rank: int
    rank_loss: float
    collapsed: bool
    dead_rows: list[int] = field(default_factory=list)
    dead_cols: list[int] = field(default_factory=list)
    rank_loss_live: float | None = None


@dataclass(frozen=True)
class DragonKings:
    """Eigenvalues far beyond what the fitted tail predicts, and alpha refitted without them."""

    count: int
    alpha_without: float | None


@dataclass(frozen=True)
class FitTrust:
    """The statistics behind the reading of a layer's alpha (`reading_problems`).

    ``tail_ok``: the tail is large enough for the exact power law to be tested
    (``trust_min_tail``); ``ks_ok``: the KS test does not reject it; ``stable``: alpha
    stays within ``stability_max_se`` standard errors as xmin moves up
    (``alpha_spread``, `alpha_spread`); ``vs_lognormal``/``vs_exponential``: Vuong tests
    against the alternatives. Whether the layer has a reading is
    `LayerResult.has_reading`, decided once from these.
    """

    tail_ok: bool
    ks_ok: bool
    stable: bool
    alpha_spread: float | None
    vs_lognormal: LikelihoodRatio | None
    vs_exponential: LikelihoodRatio | None
    #: two-sided KS distance of the tail from the fitted law, and the critical value of
    #: the fitted-and-searched statistic it was held against (`stats.fitted_ks`)
    ks_distance: float | None = None
    ks_critical: float | None = None


@dataclass(frozen=True)
class Diagnostics:
    """Everything `diagnose` says about one layer; field names match `LayerResult`'s.

    ``dataclasses.replace(layer, **vars(diagnostics))`` fills a layer's diagnostics.
    """

    mp: MPBulk | None
    rand_distance: float | None
    traps: Traps | None
    rank: RankInfo | None
    dragon_kings: DragonKings | None
    fit_trust: FitTrust | None
    vectors: VectorStats | None
    verdict: str
    flags: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    confidence: str | None = None
    advice: str = ""
    #: the initialiser a random-like layer's entries match (None: no match, or not random-like)
    init: InitMatch | None = None


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
    eigh). ``known_rank``: the numerical rank, when the caller has it (the pipeline
    counts it with the spectrum, `weightscope.analysis.spectra.layer_rank`).
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
    traps = rand_distance = None
    if randomized is not None:
        rand_distance = ks_distance(evals, randomized.evals)
        traps = correlation_traps(
            matrices, randomized.evals, randomized.variance, fit, mp, float(evals[-1]), spectrum, thresholds
        )
    kings = trust = None
    if fit.status == "ok":
        kings = dragon_kings(evals, fit, thresholds)
        trust = fit_trust(evals, fit, thresholds)
    vector_stats = None
    if vectors:
        tail_start = fit.xmin if fit.status == "ok" else mp.bulk_max
        vector_stats = eigenvector_localization(matrices, tail_start, spectrum)
    like_shuffled = randomized is not None and shuffled_like(evals, randomized, rand_distance, n, m, thresholds)
    init = None
    spikeless_random = mp.ks <= thresholds.mp_ks_max or (
        rand_distance is not None and rand_distance <= thresholds.rand_distance_max
    )
    if (mp.num_spikes == 0 and spikeless_random) or like_shuffled:
        init = match_initialiser(matrices)
    decision = decide(
        fit,
        mp,
        rand_distance,
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
        rand_distance,
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
    evals: np.ndarray, randomized: RandomizedESD, rand_distance: float | None, n: int, m: int, thresholds: Thresholds
) -> bool:
    """Whether the ESD cannot be told from its element-wise shuffled copy's: within
    ``rand_distance_max`` in KS distance, and λmax no more than ``tw_margin`` Tracy–Widom
    scales above the copy's. Unlike "MP-shaped, no spike", this needs no MP law: a sparse
    i.i.d. layer (0.5–5 % density) has no MP-shaped ESD, so an ill-fitting MP edge left it
    spikes and it was never random-like (0/96), though it is as random as its shuffle."""
    if rand_distance is None or rand_distance > thresholds.rand_distance_max:
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


# --- correlation traps ------------------------------------------------------------------


def correlation_traps(
    matrices: list[np.ndarray],
    rand_evals: np.ndarray,
    variance: float,
    fit: PowerLawFit,
    mp: MPBulk,
    lambda_max: float,
    spectrum: SpectrumOptions,
    thresholds: Thresholds,
) -> Traps:
    """Outsized stored entries, the eigenvalues of the element-wise randomised layer above
    its own MP edge that they cause, and what the spectrum is without them.

    A permutation keeps every weight value and destroys every correlation, so its ESD is
    MP with σ² = the entry variance, in closed form; an eigenvalue that clears the edge by
    ``tw_margin`` Tracy–Widom scales can only come from large entries. That alone is not
    a trap: i.i.d. Student-t(5) entries clear it in ~10 % of 512² layers, i.i.d. scale
    mixtures (0.1–0.3 % of entries at 10×) in all of them, as does one planted 30σ entry,
    so no margin separates them. What separates them is whether the largest entries are
    *outsized* (`outsized_entries`). ``entries`` lists the outsized ones whatever the
    randomised spectrum shows; ``count`` (the eigenvalues above the edge) is non-zero only
    when there are such entries (the raw excess is kept in ``max_rand_eval``).

    Impact, for a layer with entries: the spectrum of W with them replaced by the median
    entry (WeightWatcher's newer trap removal does the same): its λmax
    (``lambda_max_without``), and alpha refitted at the original fit's own xmin
    (``alpha_without``), so the two alphas describe the same part of the spectrum (a
    refit free to choose its xmin compared fits of different tails: with a 20-point
    minimum against the fit's 10, one layer of all-MiniLM-L6-v2 moved 3.18 → 3.28 for
    that reason alone). Costs one more eigensolve, only for a layer with entries.
    """
    n, m = layer_shape(matrices)
    edge = mp_edge(variance, n, m, thresholds.tw_margin)
    above = int(np.count_nonzero(rand_evals > edge))
    entries, centre, tail_index = outsized_entries(matrices, variance, thresholds)
    alpha_without = lambda_max_without = None
    makes_spike = False
    if entries:
        cleaned = [np.array(matrix, dtype=np.float32) for matrix in matrices]
        positions = len(matrices)
        for entry in entries:
            position, col = entry.col % positions, entry.col // positions
            cleaned[position][entry.row, col] = centre
        cleaned_evals = esd(cleaned, spectrum)
        lambda_max_without = float(cleaned_evals[-1])
        if fit.status == "ok":
            alpha_without = alpha_at(cleaned_evals, fit.xmin)
        drop = lambda_max - lambda_max_without
        # Their own eigenvalue: without them λmax falls into the bulk, or to under a quarter
        # (the entries carried over 3/4 of σmax²: one 1000σ entry in a trained
        # all-MiniLM-L6-v2 layer took λmax from 0.057 to 2.27 while alpha at the same xmin
        # moved 1.2 standard errors).
        makes_spike = drop > thresholds.tw_margin * tracy_widom_scale(n, m) * mp.sigma2 and (
            lambda_max_without <= mp.bulk_max or lambda_max_without < SPIKE_SHARE * lambda_max
        )
    return Traps(
        count=above if entries else 0,
        max_rand_eval=float(rand_evals[-1]),
        bulk_max=edge,
        entries=entries,
        alpha_without=alpha_without,
        entry_tail_index=tail_index,
        lambda_max_without=lambda_max_without,
        makes_spike=makes_spike,
    )


#: Outsized entries whose removal leaves λmax under this share of itself made the top
#: eigenvalue: a trap whatever alpha does.
SPIKE_SHARE = 0.25


def alpha_at(evals: np.ndarray, xmin: float) -> float | None:
    """The power-law MLE α = 1 + n/Σ ln(λ/xmin) of the eigenvalues ≥ ``xmin`` (None: < 2 of them)."""
    tail = evals[evals >= xmin].astype(np.float64)
    logs = float(np.sum(np.log(tail / xmin)))
    return 1.0 + len(tail) / logs if len(tail) >= 2 and logs > 0 else None


def trap_matters(
    traps: Traps, fit: PowerLawFit, mp: MPBulk, rand_distance: float | None, thresholds: Thresholds
) -> bool:
    """Whether outsized entries change the reading of the layer (verdict correlation-trap).

    - They make the spectrum's top (``makes_spike``): without them λmax drops by more
      than ``tw_margin`` Tracy–Widom scales, to within the MP bulk edge — shown on W
      itself, so the shuffled spectrum need not clear its edge. A trained layer keeps its
      spikes without a few entries; a random layer's only spike is theirs. On a random layer the spike is all there is, and alpha fitted to a
      bulk edge with one spike (α 10–19) moved at random when the spike went: one planted
      30σ entry at 512² was located 37/40 but judged a trap 15/40 (40σ: 12/40).
    The other two need the shuffled spectrum above its edge (``count``):

    - Entries that each alone clear the edge, in an ESD within ``rand_distance_max`` of
      its shuffled copy: hundreds of such entries make the spectrum (i.i.d.
      Student-t(1.5)), and replacing five of them moves nothing, yet alpha measures the
      entries, not training.
    - Otherwise, where the fitted tail is a real tail (xmin above the bulk edge): alpha
      at the same xmin moves by more than ``trap_alpha_shift`` of its standard errors
      (α − 1)/√n_tail, or crosses into or out of the HTSR band. Measured on
      all-MiniLM-L6-v2: BERT's outlier-dimension traps move alpha by 0.1–0.6 standard
      errors; one planted 1000σ entry by 2.5.
    """
    if not traps.entries:
        return False
    if traps.makes_spike:
        return True
    if not traps.count:
        return False
    dominant = all(entry.dominant for entry in traps.entries)
    if dominant and rand_distance is not None and rand_distance <= thresholds.rand_distance_max:
        return True
    if fit.status != "ok" or fit.xmin < mp.bulk_max:
        return False
    after = traps.alpha_without
    if after is None:
        return True
    before = fit.alpha
    in_band = [thresholds.alpha_low <= alpha <= thresholds.alpha_high for alpha in (before, after)]
    moved = abs(before - after) > thresholds.trap_alpha_shift * (fit.sigma or 0.0)
    return moved or in_band[0] != in_band[1]


def outsized_entries(
    matrices: list[np.ndarray], variance: float, thresholds: Thresholds
) -> tuple[list[TrapEntry], float, float | None]:
    """The stored entries too large for the entries' own tail or for the spectrum, the
    median entry, and the entries' tail exponent (None when there is no tail to fit).

    Deviations |w − median| are measured in robust (MAD) sigmas. An entry is outsized
    when either test says so, tested from the top, at most ``trap_max_entries``, and
    only at ≥ ``trap_sigmas`` robust sigmas:

    - *for its tail*: the upper tail of the deviations (the largest ``_ENTRY_TAIL_SHARE``,
      at least 64) is fitted by a power law (Hill's MLE) and the largest are tested like
      dragon kings (`count_outliers`): the j-th is outsized when a tail of that many values
      reaches it with probability below ``trap_p``. A Gaussian tail fits a steep power
      law, under which a 30σ entry has p ~ 1e-7; a Student-t(5) tail, or the shoulder of
      an i.i.d. scale mixture (0.1 % of the entries at 10×), fits a heavy one under which
      its own extremes are unremarkable. (Before, a tail exponent below 3 made the
      largest entries trap entries without a test: the mixture's shoulder reads 1.5–3, and
      20/20 such layers at 512² were traps.)
    - *for the spectrum* (``dominant``): the entry alone, w²/N, clears the MP edge
      σ²(1 + 1/√Q)² of the entries' variance σ² (``variance``): a single entry of that
      size makes an eigenvalue above the bulk by itself, whatever the tail predicts —
      below a tail exponent of 4 the largest eigenvalues of an i.i.d. matrix are those of
      its largest entries (Auffinger, Ben Arous & Péché 2009). A mixture's largest entry
      (~30σ at 512², w²/N ≈ 1.8σ² against an edge of 4σ²) does not.

    Indices are into the tensor as stored: (row, col) of a 2-D matrix; for a conv kernel
    of shape (out, in, *k), row is the output channel and col indexes
    ``tensor.reshape(out, -1)``, i.e. col = in_channel·prod(k) + kernel position.
    """
    values = np.concatenate([np.ravel(matrix) for matrix in matrices])
    centre = float(np.median(values))
    deviation = np.abs(values - centre)
    scale = _MAD_TO_SIGMA * float(np.median(deviation)) or float(np.std(values))
    tail_size = min(len(values) - 1, max(_ENTRY_TAIL_MIN, int(_ENTRY_TAIL_SHARE * len(values))))
    if scale == 0.0 or tail_size < 2:
        return [], centre, None
    top = np.argpartition(deviation, -(tail_size + 1))[-(tail_size + 1) :]
    top = top[np.argsort(-deviation[top], kind="stable")]
    tail, xmin = deviation[top[:-1]], float(deviation[top[-1]])
    if xmin <= 0.0:
        return [], centre, None
    alpha = 1.0 + tail_size / float(np.sum(np.log(tail / xmin)))
    n, m = layer_shape(matrices)
    candidates = tail[: thresholds.trap_max_entries]
    dominant = candidates.astype(np.float64) ** 2 / n > variance * (1.0 + np.sqrt(m / n)) ** 2
    count = max(
        count_outliers(candidates, xmin, alpha, tail_size, thresholds.trap_p),
        int(np.argmin(dominant)) if not dominant.all() else len(dominant),
    )
    rows, cols = matrices[0].shape
    positions = len(matrices)
    entries = []
    for rank, flat in enumerate(top[:count]):
        if deviation[flat] < thresholds.trap_sigmas * scale:
            break
        position, within = divmod(int(flat), rows * cols)
        row, col = divmod(within, cols)
        entries.append(
            TrapEntry(
                row=row,
                col=col * positions + position,
                value=float(values[flat]),
                sigmas=float(deviation[flat] / scale),
                dominant=bool(dominant[rank]),
            )
        )
    return entries, centre, alpha - 1.0


#: The entries' tail fitted by `outsized_entries`: this share of all entries, at least
#: `_ENTRY_TAIL_MIN` of them (262 of a 512² matrix's 262 144 entries).
_ENTRY_TAIL_SHARE = 0.001
_ENTRY_TAIL_MIN = 64


# --- rank collapse ----------------------------------------------------------------------


def rank_info(
    matrices: list[np.ndarray],
    evals: np.ndarray,
    stored_dtype: str,
    eig_dtype: str,
    thresholds: Thresholds,
    known_rank: int | None = None,
) -> RankInfo:
    """Numerical rank (``known_rank``, else `linalg.rank.numerical_rank`; for a pooled conv
    ESD summed over kernel positions), dead channels, and whether the live rest is
    collapsed: more than ``rank_loss_max`` of the eigenvalues the live channels can carry,
    positions × min(live rows, live columns), at zero. A dead channel can carry nothing,
    so it is counted once, as dead (CRAFT's dead input channels read as rank collapse
    before: 24 % and 12 % of two convolutions' eigenvalues)."""
    rank = known_rank
    if rank is None:
        rank = numerical_rank(matrices, evals, stored_dtype, eig_dtype, thresholds.rank_noise_factor)
    loss = 1.0 - rank / len(evals)
    dead_rows, dead_cols = dead_channels(matrices, thresholds.dead_channel_ratio)
    rows, cols = matrices[0].shape
    live = len(matrices) * min(rows - len(dead_rows), cols - len(dead_cols))
    live_loss = 1.0 - min(rank, live) / live if live > 0 else 1.0
    return RankInfo(
        numerical_rank=rank,
        rank_loss=loss,
        collapsed=live_loss > thresholds.rank_loss_max,
        dead_rows=dead_rows,
        dead_cols=dead_cols,
        rank_loss_live=live_loss,
    )


def dead_channels(matrices: list[np.ndarray], ratio: float) -> tuple[list[int], list[int]]:
    """Rows (output channels) and columns (input channels) of a layer, as stored, whose
    norm over all kernel positions is at most ``ratio`` × the median row's (column's).

    Why relative to the median and not exact zeros: a channel whose input is dead (a ReLU
    that never fires) gets no gradient, and weight decay shrinks its weights towards, not
    to, zero. CRAFT (easyocr's text detector) has 20 such input channels in one
    convolution and 19 output channels in another, at 1e-7–1.7e-4 of the median norm,
    while its weakest live channel sits at 0.52; all-MiniLM-L6-v2 and english_g2 have none
    below 1e-2. A matrix whose channels are all (or mostly) zero has a median of zero and
    reports none: it is a rank collapse, not dead channels."""
    squares = [np.square(np.asarray(matrix, dtype=np.float64)) for matrix in matrices]
    row_norms = np.sqrt(sum(np.sum(square, axis=1) for square in squares))
    col_norms = np.sqrt(sum(np.sum(square, axis=0) for square in squares))

    def dead(norms: np.ndarray) -> list[int]:
        typical = float(np.median(norms))
        return np.flatnonzero(norms <= ratio * typical).tolist() if typical > 0 else []

    return dead(row_norms), dead(col_norms)


# --- dragon kings -----------------------------------------------------------------------


def dragon_kings(evals: np.ndarray, fit: PowerLawFit, thresholds: Thresholds) -> DragonKings:
    """Largest eigenvalues the fitted power-law tail cannot explain, and alpha without them.

    Test (sequential, from the top): under the fitted tail p(λ) ∝ λ^(−α), λ ≥ xmin, with
    survival S(λ) = (λ/xmin)^(1−α), the largest of the n_tail − j + 1 tail values left
    after removing the j − 1 kings already found reaches λ₍ⱼ₎ with probability
    p_j = 1 − (1 − S(λ₍ⱼ₎))^(n_tail − j + 1). λ₍ⱼ₎ is a dragon king while p_j < ``dragon_p``;
    testing stops at the first value that is not one, and at ``dragon_candidates``.
    Nothing is declared unless the very first test rejects, so on a layer without kings
    the chance of a false one is ``dragon_p`` at most. The tested fit includes the kings,
    which pulls alpha down and makes the test conservative. A random (MP) layer has a
    light, bounded tail that a fitted power law over-predicts, so it shows no kings.
    """
    num_tail = int(fit.num_tail)
    candidates = min(thresholds.dragon_candidates, num_tail - 1)
    if candidates < 1:
        return DragonKings(count=0, alpha_without=None)
    count = count_outliers(evals[::-1][:candidates], fit.xmin, fit.alpha, num_tail, thresholds.dragon_p)
    if count == 0:
        return DragonKings(count=0, alpha_without=None)
    refit = fit_power_law(evals[:-count])
    return DragonKings(count=count, alpha_without=refit.alpha if refit.status == "ok" else None)


# --- fit trust ----------------------------------------------------------------------------


def fit_trust(evals: np.ndarray, fit: PowerLawFit, thresholds: Thresholds) -> FitTrust:
    """The statistics behind the reading of alpha: tail size, KS, stability, alternatives.

    - tail_ok: at least ``trust_min_tail`` eigenvalues in the tail: enough for the tests
      of the exact power law below to mean something (a solid reading needs it).
    - ks_ok: the two-sided KS distance of the tail from the fitted law is at most the
      critical value of the *fitted-and-searched* statistic at ``ks_level``
      (`stats.fitted_ks`: simulated once for alpha fitted and xmin chosen to minimise D,
      the Lilliefors problem). Measured size on true power laws: 4.6–5.6 % at 5 %.
    - stable: alpha's spread as xmin moves up ``stability_window`` candidates
      (`alpha_spread`) is at most ``stability_max_se`` of its standard error
      (α − 1)/√n_tail: alpha's own noise grows with α and shrinks with the tail, so a
      fixed spread called exact power laws of 100 points unstable in 14 % at α = 4 and
      3 % at α = 2.5 (scripts/measure_readings.py).
    - vs_lognormal / vs_exponential: Vuong log-likelihood-ratio tests on the tail; an
      alternative is better when it wins with p < ``llr_p``. They run in float64 whatever
      the ESD's dtype: float32 rounding of the pointwise log-likelihoods (~1e-7 relative)
      would blur the small differences Vuong's test weighs, and the lognormal's
      comparison with the power law at rounding level.
    """
    tail = evals[evals >= fit.xmin].astype(np.float64)
    num_tail = int(fit.num_tail)
    ks_distance = two_sided_distance(tail, fit.alpha, fit.xmin)
    ks_critical = critical_distance(num_tail, thresholds.ks_level)
    spread = alpha_spread(evals, fit, thresholds.stability_window)
    power_law = power_law_loglik(tail, fit.alpha, fit.xmin)
    return FitTrust(
        tail_ok=num_tail >= thresholds.trust_min_tail,
        ks_ok=ks_distance <= ks_critical,
        stable=spread is not None and spread <= thresholds.stability_max_se * (fit.sigma or 0.0),
        alpha_spread=spread,
        vs_lognormal=versus_lognormal(tail, fit.xmin, power_law),
        vs_exponential=vuong(power_law, exponential_loglik(tail, fit.xmin)),
        ks_distance=ks_distance,
        ks_critical=ks_critical,
    )


def alpha_spread(evals: np.ndarray, fit: PowerLawFit, window: int) -> float | None:
    """max − min of alpha over the chosen xmin and the ``window`` candidates above it
    (alphas only: `candidate_alphas`, not the KS scan).

    Only upwards: under the fitted model every tail above xmin is the same power law, so
    alpha may move there only by its noise (about (α − 1)·√(window)/n_tail, well inside
    its standard error); below xmin lie values the model does not claim, and a tail that
    rises clear of the bulk — the clearest tail there is — would read "unstable" for
    the gap beneath it (measured: 35 % of exact 500-point power laws on a body).
    """
    xmins, alphas = candidate_alphas(evals, min_tail=1)
    chosen = int(np.argmin(np.abs(xmins - fit.xmin)))
    alphas = alphas[chosen : chosen + window + 1]
    alphas = alphas[np.isfinite(alphas)]
    return float(np.max(alphas) - np.min(alphas)) if len(alphas) else None


def _alternative_wins(test: LikelihoodRatio, thresholds: Thresholds) -> bool:
    return test.R < 0 and test.p < thresholds.llr_p


# --- the verdict ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What `decide` concludes: the verdict, every flag with one reason each (reasons[0]
    explains the verdict), and how sure the reading of alpha is (None: no reading)."""

    verdict: str
    flags: list[str]
    reasons: list[str]
    confidence: str | None


def reading_problems(
    fit: PowerLawFit, mp: MPBulk | None, trust: FitTrust | None, thresholds: Thresholds
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Why alpha has no reading, and why its reading is only approximate, as (flag, reason)
    pairs (flags of `vocabulary.NO_READING_FLAGS` and `vocabulary.APPROXIMATE_FLAGS`).

    No reading only where alpha carries no information: no fit, a tail that is the bulk's
    edge (it starts inside the bulk of an MP-shaped ESD and most of it lies there: a tail
    of mostly spikes above the edge is read, even when the fit starts a little below it),
    a tail below ``reading_min_tail``, or alpha unstable beyond its own error. A tail the exact power
    law does not describe — rejected by KS, beaten by a lognormal or an exponential, or
    too small (below ``trust_min_tail``) for those tests to have power — still has a
    reading: alpha summarises a heavy tail, which is how HTSR uses it, so the reading is
    "approximate". Rates on planted spectra and real models: docs/method/diagnostics.md.
    Without ``mp`` (a bare spectrum, no shape) the bulk edge is not judged.
    """
    if fit.status != "ok":
        return [("fit-failed", f"No power law could be fitted: {fit.reason}.")], []
    none: list[tuple[str, str]] = []
    inside = int(fit.num_tail or 0) - mp.num_spikes if mp is not None else 0  # tail values ≤ the edge, when xmin < edge
    if mp is not None and mp.ks <= thresholds.mp_ks_max and fit.xmin < mp.bulk_max and 2 * inside > (fit.num_tail or 0):
        none.append(
            (
                "bulk-edge-tail",
                f"The fitted tail starts at {fit.xmin:.3g}, inside the Marchenko–Pastur bulk (edge "
                f"{mp.bulk_max:.3g}) of an MP-shaped ESD, and {inside} of its {fit.num_tail} values lie in the "
                "bulk: it is the bulk's edge, not a power-law tail.",
            )
        )
    if fit.num_tail is not None and fit.num_tail < thresholds.reading_min_tail:
        none.append(("tiny-tail", f"The tail holds only {fit.num_tail} eigenvalues (< {thresholds.reading_min_tail})."))
    if trust is None:
        return none, []
    if not trust.stable:
        spread = "undefined" if trust.alpha_spread is None else f"{trust.alpha_spread:.2f}"
        none.append(
            (
                "unstable-alpha",
                f"alpha moves by {spread} when xmin moves up {thresholds.stability_window} candidates, more than "
                f"{thresholds.stability_max_se:g} × its standard error {fit.sigma or 0.0:.2f}.",
            )
        )
    approximate: list[tuple[str, str]] = []
    if not trust.tail_ok:
        approximate.append(
            (
                "small-tail",
                f"The tail holds {fit.num_tail} eigenvalues (< {thresholds.trust_min_tail}): "
                "too few to test the exact power law.",
            )
        )
    if not trust.ks_ok:
        approximate.append(
            (
                "ks-reject",
                f"KS distance {trust.ks_distance:.3f} exceeds the {thresholds.ks_level:.0%} critical "
                f"value {trust.ks_critical:.3f} of a fitted power law with {fit.num_tail} tail points.",
            )
        )
    for name, test in (("lognormal", trust.vs_lognormal), ("exponential", trust.vs_exponential)):
        if test is not None and _alternative_wins(test, thresholds):
            approximate.append(
                (
                    f"{name}-better",
                    f"A {name} tail fits better than the power law (R = {test.R:.2f}, p = {test.p:.3f}).",
                )
            )
    return none, approximate


def reading_confidence(
    fit: PowerLawFit, mp: MPBulk | None, trust: FitTrust | None, thresholds: Thresholds
) -> str | None:
    """How sure the reading of alpha is: "solid", "approximate", or None for no reading
    (`reading_problems`)."""
    none, approximate = reading_problems(fit, mp, trust, thresholds)
    return None if none else "approximate" if approximate else "solid"


def decide(
    fit: PowerLawFit,
    mp: MPBulk,
    rand_distance: float | None,
    traps: Traps | None,
    rank: RankInfo,
    kings: DragonKings | None,
    trust: FitTrust | None,
    *,
    stored_dtype: str,
    thresholds: Thresholds,
    like_shuffled: bool = False,
    init: InitMatch | None = None,
) -> Decision:
    """The verdict, every flag raised with one sentence each, and the reading's confidence.

    Precedence (`vocabulary.VERDICTS`) puts first what makes alpha meaningless: a
    collapsed rank or a correlation trap produce a small alpha by themselves; a
    random-like ESD (nothing above the MP edge, and MP-shaped or within
    ``rand_distance_max`` of its randomised copy) has no learned tail to fit — a layer
    with a spike above the edge is never random-like, so ``--randomize`` cannot turn one
    random-like. Then "no reading" where alpha carries no information
    (`reading_problems`), and only then the HTSR reading of alpha (< alpha_low
    over-trained, > alpha_high under-trained, else healthy), solid or approximate.
    Dragon kings and the reasons a reading is approximate only inform; they never change
    the verdict. Flags come in precedence order with one reason each, so reasons[0]
    explains the verdict; a healthy verdict gets its own first reason.
    """
    raised: list[tuple[str, str, str]] = []  # (verdict it leads to, flag, reason)
    dead = rank.dead_rows or rank.dead_cols
    if rank.collapsed:
        rest = (
            f"; {rank.rank_loss_live:.0%} of what the live channels can carry"
            if dead and rank.rank_loss_live is not None
            else ""
        )
        raised.append(
            (
                "rank-collapsed",
                "rank-collapsed",
                f"{rank.rank_loss:.0%} of the eigenvalues are numerically zero at {stored_dtype} precision "
                f"(numerical rank {rank.numerical_rank}){rest}.",
            )
        )
    if dead:
        raised.append(("", "dead-channels", _dead_reason(rank, thresholds)))
    if traps is not None and traps.entries:
        reason = _entries_reason(traps, fit)
        if trap_matters(traps, fit, mp, rand_distance, thresholds):
            raised.append(("correlation-trap", "correlation-trap", reason + "."))
        else:
            raised.append(("", "outsized-entries", reason + ": they do not change the reading of the spectrum."))
    mp_shaped = mp.ks <= thresholds.mp_ks_max
    spectrum = None
    if mp.num_spikes == 0 and mp_shaped:
        spectrum = (
            f"The ESD is Marchenko–Pastur shaped (KS distance {mp.ks:.3f}) and no eigenvalue rises above its bulk edge"
        )
    elif mp.num_spikes == 0 and rand_distance is not None and rand_distance <= thresholds.rand_distance_max:
        spectrum = (
            f"The ESD is within KS distance {rand_distance:.3f} of its shuffled copy (≤ "
            f"{thresholds.rand_distance_max}) and no eigenvalue rises above the MP edge"
        )
    elif like_shuffled:
        spectrum = (
            f"The ESD is within KS distance {rand_distance:.3f} of its shuffled copy (≤ "
            f"{thresholds.rand_distance_max}) and its largest eigenvalue no higher than the copy's"
        )
    if spectrum is not None and init is not None:
        raised.append(
            (
                "looks-untrained",
                "looks-untrained",
                f"{spectrum}, and the entries look like an initial draw: {init.name}, std {init.std:.3g} "
                f"(KS distance {init.ks:.3f} from its {init.law} law): the layer looks untrained or reset.",
            )
        )
    if spectrum is not None:
        raised.append(
            (
                "random-like",
                "random-like",
                f"{spectrum}: the spectrum cannot be told from a random matrix's, and alpha says nothing. "
                f"This describes the spectrum only; learned structure can still sit in the singular vectors.",
            )
        )
    none, approximate = reading_problems(fit, mp, trust, thresholds)
    raised.extend((vocabulary.NO_READING, flag, reason) for flag, reason in none)
    raised.extend(("", flag, reason) for flag, reason in approximate)
    confidence = None if none else "approximate" if approximate else "solid"
    if fit.status == "ok":
        if fit.alpha < thresholds.alpha_low:
            raised.append(
                (
                    "over-trained",
                    "alpha-low",
                    f"alpha = {fit.alpha:.2f} < {thresholds.alpha_low:g}: a very heavy tail, possibly over-fit.",
                )
            )
        elif fit.alpha > thresholds.alpha_high:
            raised.append(
                (
                    "under-trained",
                    "alpha-high",
                    f"alpha = {fit.alpha:.2f} > {thresholds.alpha_high:g}: little learned structure.",
                )
            )
    if kings is not None and kings.count:
        without = f"{kings.alpha_without:.2f}" if kings.alpha_without is not None else "not fittable"
        raised.append(
            (
                "",
                "dragon-kings",
                f"{kings.count} eigenvalue(s) lie far beyond the fitted tail; alpha without them is {without}.",
            )
        )
    raised.sort(key=lambda item: vocabulary.precedence(item[0]) if item[0] else len(vocabulary.VERDICTS))
    flags, reasons = [flag for _, flag, _ in raised], [reason for _, _, reason in raised]
    if raised and raised[0][0]:
        # a verdict that precedes "no reading" says alpha is meaningless here (a collapsed
        # rank or a trap make it small, a random-like spectrum has no tail): no reading
        verdict = raised[0][0]
        unread = vocabulary.precedence(verdict) < vocabulary.precedence(vocabulary.NO_READING)
        return Decision(verdict, flags, reasons, None if unread else confidence)
    how = (
        "a solid fit"
        if confidence == "solid"
        else "an approximate fit: alpha is stable, the tail not exactly a power law"
    )
    healthy = (
        f"alpha = {fit.alpha:.2f} ± {fit.sigma or 0.0:.2f} lies in [{thresholds.alpha_low:g}, "
        f"{thresholds.alpha_high:g}] ({how})."
    )
    return Decision("healthy", flags, [healthy, *reasons], confidence)


def _entries_reason(traps: Traps, fit: PowerLawFit) -> str:
    listed = "; ".join(f"({e.row}, {e.col}) = {e.value:.3g}, {e.sigmas:.0f}σ" for e in traps.entries)
    alpha = f"{fit.alpha:.2f}" if fit.status == "ok" else "not fittable"
    without = f"{traps.alpha_without:.2f}" if traps.alpha_without is not None else "not fittable"
    lam = f"{traps.lambda_max_without:.3g}" if traps.lambda_max_without is not None else "—"
    shuffled = (
        f"{traps.count} eigenvalue(s) of the shuffled matrix stay above its MP edge "
        f"({traps.max_rand_eval:.3g} > {traps.bulk_max:.3g})"
        if traps.count
        else "the shuffled matrix stays within its MP edge"
    )
    return (
        f"{len(traps.entries)} outsized weight(s), in robust sigmas from the median: {listed}; {shuffled}; "
        f"without them λmax is {lam} and alpha at the same xmin {without} (now {alpha})"
    )


def _dead_reason(rank: RankInfo, thresholds: Thresholds) -> str:
    parts = [
        f"{len(found)} {what} ({_indices(found)})"
        for found, what in ((rank.dead_cols, "input channels (columns)"), (rank.dead_rows, "output channels (rows)"))
        if found
    ]
    live = (
        ""
        if rank.collapsed or rank.rank_loss_live is None
        else (f"; the rest is not collapsed ({rank.rank_loss_live:.0%} of its eigenvalues at zero)")
    )
    return (
        f"{' and '.join(parts)} are zero to {thresholds.dead_channel_ratio:g} of a typical channel's norm: "
        f"dead channels, {rank.rank_loss:.0%} of the eigenvalues at zero because of them{live}."
    )


def _indices(found: list[int], shown: int = 8) -> str:
    listed = ", ".join(str(i) for i in found[:shown])
    return listed + (f", … {len(found) - shown} more" if len(found) > shown else "")
