"""Correlation traps: stored entries too large for the rest, the eigenvalues of the shuffled
layer above its MP edge that they cause, and whether they change the reading of alpha."""

from __future__ import annotations

import numpy as np

from weightscope.checks.results import TrapEntry, Traps
from weightscope.config import Thresholds
from weightscope.linalg.gram import layer_shape
from weightscope.linalg.spectrum import SpectrumOptions, esd
from weightscope.stats.fit import PowerLawFit
from weightscope.stats.outliers import MAD_TO_SIGMA, count_outliers, order_statistics
from weightscope.stats.randmat import (
    MPBulk,
    mp_edge,
    tracy_widom_scale,
)


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
    that reason alone). Costs one more eigensolve, only for a layer with entries, in the
    precision the layer's own spectrum was solved in (``spectrum``): λmax and alpha then
    move by the entries alone, not by the precision, and under "auto" the cleaned copy
    of a float32-solved layer costs a float32 Gram product, the one its working set
    counts (all-MiniLM-L6-v2's embedding, with its copy: float64 0.12 s, float32 0.07 s).
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
            lambda_max_without <= mp.bulk_edge or lambda_max_without < SPIKE_SHARE * lambda_max
        )
    return Traps(
        count=above if entries else 0,
        max_rand_eval=float(rand_evals[-1]),
        bulk_edge=edge,
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
    traps: Traps, fit: PowerLawFit, mp: MPBulk, shuffle_ks_distance: float | None, thresholds: Thresholds
) -> bool:
    """Whether outsized entries change the reading of the layer (verdict correlation-trap).

    - They make the spectrum's top (``makes_spike``): without them λmax drops by more
      than ``tw_margin`` Tracy–Widom scales, to within the MP bulk edge — shown on W
      itself, so the shuffled spectrum need not clear its edge. A trained layer keeps its
      spikes without a few entries; a random layer's only spike is theirs. On a random layer the spike is all there is, and alpha fitted to a
      bulk edge with one spike (α 10–19) moved at random when the spike went: one planted
      30σ entry at 512² was located 37/40 but judged a trap 15/40 (40σ: 12/40).
    The other two need the shuffled spectrum above its edge (``count``):

    - Entries that each alone clear the edge, in an ESD within ``shuffle_ks_max`` of
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
    if dominant and shuffle_ks_distance is not None and shuffle_ks_distance <= thresholds.shuffle_ks_max:
        return True
    if fit.status != "ok" or fit.xmin < mp.bulk_edge:
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
    # W itself where it is one contiguous matrix, and |w − median| formed in place: a
    # full-size float32 copy each (172 MB for an 11008×4096 layer) fewer at the peak.
    values = np.ravel(matrices[0]) if len(matrices) == 1 else np.concatenate([np.ravel(m) for m in matrices])
    size = len(values)
    middle = [(size - 1) // 2, size // 2]
    # np.median's value (the mean of the middle two, in the values' dtype), by selection
    centre = float(np.mean(order_statistics(values, middle)))
    deviation = values - centre
    np.abs(deviation, out=deviation)
    tail_size = min(size - 1, max(_ENTRY_TAIL_MIN, int(_ENTRY_TAIL_SHARE * size)))
    # The deviations' median and the tail's threshold in one selection; the tail's entries
    # are then those above the threshold and, of the ties at it, the first in storage order.
    cut = size - tail_size - 1
    ordered = order_statistics(deviation, [*middle, cut])
    scale = MAD_TO_SIGMA * float(np.mean(ordered[:2])) or float(np.std(values))
    if scale == 0.0 or tail_size < 2:
        return [], centre, None
    threshold = ordered[2]
    at_least = np.flatnonzero(deviation >= threshold)  # one pass over all entries, not two
    at_least_values = deviation[at_least]
    above = at_least[at_least_values > threshold]
    ties = at_least[at_least_values == threshold][: tail_size + 1 - len(above)]
    top = np.concatenate((above, ties))
    top = top[np.lexsort((top, -deviation[top]))]  # largest first; ties in storage order
    tail, xmin = deviation[top[:-1]], float(deviation[top[-1]])
    logs = float(np.sum(np.log(tail / xmin))) if xmin > 0.0 else 0.0
    # A tail of one value (the top deviations of a ternary or few-level quantized layer all
    # equal) has no exponent, and no entry in it is larger than the rest.
    if logs <= 0.0:
        return [], centre, None
    alpha = 1.0 + tail_size / logs
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
