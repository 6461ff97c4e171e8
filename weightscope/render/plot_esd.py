"""The picture of one layer's spectrum: is the fitted tail real, and how far from random?

Panel (a) is the ESD on log-log axes with the fitted power law drawn from xmin to xmax
(a straight line of slope −alpha), xmin and λmax marked, and dragon kings flagged: the
view in which a practitioner judges a tail fit. Panel (b) is the same ESD on linear axes
with the Marchenko–Pastur density of the fitted bulk, the bulk edge, the spikes above it
and the ESD of the element-wise randomised matrix: the view that shows how much of the
spectrum is learned structure and how much is noise.

The figure only draws what the `LayerResult` says; diagnostics that were not computed
(``mp``, ``dragon_kings``, the randomised spectrum) are simply left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from weightscope.errors import WeightscopeError
from weightscope.render.plots import new_figure, tag_artists
from weightscope.render.style import fmt
from weightscope.report import LayerResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from weightscope.pipeline import LayerAnalysis

#: The linear panel shows at most this many bulk widths, so that a few huge spikes do not
#: squash the bulk into one bar; eigenvalues beyond are counted in the legend.
LINEAR_RANGE_BULKS = 4.0
BULK_BINS = 30

ESD_COLOR = "#4c72b0"
FIT_COLOR = "#d62728"
RANDOM_COLOR = "#ff7f0e"
MP_COLOR = "#2ca02c"


def aspect_ratio(shape: tuple[int, ...]) -> float:
    """Q = N/M ≥ 1 of the matrices behind an ESD (a conv kernel's (out, in) slices)."""
    rows, cols = shape[:2]
    return max(rows, cols) / min(rows, cols)


def mp_edges(sigma2: float, q: float) -> tuple[float, float]:
    """Support [λ−, λ+] of the Marchenko–Pastur law of X = WᵀW/N with entry variance σ²."""
    root = 1.0 / np.sqrt(q)
    return sigma2 * (1.0 - root) ** 2, sigma2 * (1.0 + root) ** 2


def mp_density(lam: np.ndarray, sigma2: float, q: float) -> np.ndarray:
    """Marchenko–Pastur density ρ(λ) = Q √((λ+ − λ)(λ − λ−)) / (2π σ² λ), zero off the support."""
    lo, hi = mp_edges(sigma2, q)
    lam = np.asarray(lam, dtype=np.float64)
    inside = (lam > lo) & (lam < hi) & (lam > 0)
    density = np.zeros_like(lam)
    x = lam[inside]
    density[inside] = q * np.sqrt((hi - x) * (x - lo)) / (2.0 * np.pi * sigma2 * x)
    return density


def _bin_count(n: int) -> int:
    return int(np.clip(2 * np.sqrt(n), 20, 80))


def _legend_below(axes: Axes) -> None:
    """Legends go under the axes: inside they would hide bars or the markers at the top."""
    axes.legend(fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)


def _title(result: LayerResult) -> str:
    if result.alpha is None:
        return f"no power-law fit: {result.reason or 'not fitted'}"
    parts = [f"α = {fmt(result.alpha, 2)}" + (f" ± {fmt(result.sigma, 2)}" if result.sigma is not None else "")]
    parts.append(f"D = {fmt(result.D)}")
    if result.verdict is not None:
        parts.append(f"verdict: {result.verdict}")
    if result.fit_trust is not None and not result.fit_trust.trusted and result.verdict != "untrusted-fit":
        parts.append("(untrusted fit)")
    return ",  ".join(parts)


def _draw_loglog(axes: Axes, result: LayerResult, evals: np.ndarray) -> None:
    positive = evals[evals > 0]
    low, high = positive[0], positive[-1]
    if low == high:
        low, high = low / 1.1, high * 1.1
    bins = np.geomspace(low, high, _bin_count(positive.size) + 1)
    tag_artists(axes.hist(positive, bins=bins, density=True, color=ESD_COLOR, alpha=0.75, label="ESD")[2], "esd-loglog")
    axes.set_xscale("log")
    axes.set_yscale("log")
    if result.alpha is not None and result.xmin and result.xmax and result.num_tail:
        # The tail's pdf scaled by its share of the plotted eigenvalues, so that it sits on
        # the density histogram: share · (α−1)/xmin · (λ/xmin)^−α, slope −α in log-log.
        x = np.geomspace(result.xmin, result.xmax, 64)
        share = result.num_tail / positive.size
        y = share * (result.alpha - 1.0) / result.xmin * (x / result.xmin) ** (-result.alpha)
        axes.plot(x, y, color=FIT_COLOR, lw=2.2, gid="powerlaw-fit", label=f"power law, α = {fmt(result.alpha, 2)}")
        axes.axvline(result.xmin, color=FIT_COLOR, ls="--", lw=1.2, gid="xmin", label=f"xmin = {fmt(result.xmin)}")
    lambda_max = float(evals[-1])  # in the ESD's units (result.lambda_max is σmax², WeightWatcher's)
    axes.axvline(lambda_max, color="black", ls=":", lw=1.2, gid="lambda-max", label=f"λmax = {fmt(lambda_max)}")
    kings = result.dragon_kings.count if result.dragon_kings is not None else 0
    if kings:
        axes.plot(
            evals[-kings:], np.full(kings, 0.93), "v", color="#9467bd", ms=9,
            transform=axes.get_xaxis_transform(), gid="dragon-kings",
            label=f"{kings} dragon king{'s' if kings > 1 else ''}",
        )
    nonpositive = evals.size - positive.size
    axes.set_xlabel("eigenvalue λ of WᵀW/N (log scale)" + (f"; {nonpositive} λ ≤ 0 not shown" if nonpositive else ""))
    axes.set_ylabel("density (log scale)")
    axes.set_title("(a) " + _title(result), loc="left", fontsize=10)
    _legend_below(axes)


def _beyond(count: int) -> str:
    return f", {count} beyond the axis" if count else ""


def _draw_linear(axes: Axes, result: LayerResult, evals: np.ndarray, rand_evals: np.ndarray | None) -> None:
    evals = np.clip(evals, 0.0, None)
    mp = result.mp if result.mp is not None and result.mp.bulk_max > 0 else None  # a degenerate fit has no bulk to draw
    top = float(evals[-1])
    x_high = 1.05 * (min(top, LINEAR_RANGE_BULKS * mp.bulk_max) if mp is not None else top)
    # Resolve the bulk: about BULK_BINS bins across [0, bulk edge] when the bulk is known.
    count = _bin_count(evals.size) if mp is None else int(np.clip(np.ceil(BULK_BINS * x_high / mp.bulk_max), 20, 200))
    bins = np.linspace(0.0, x_high, count + 1)
    width = bins[1] - bins[0]
    # Density relative to *all* eigenvalues, so bars compare with the MP curve even when
    # some eigenvalues lie beyond the axis.
    shown = evals[evals <= x_high]
    _, _, bars = axes.hist(shown, bins=bins, weights=np.full(shown.size, 1.0 / (evals.size * width)),
                           color=ESD_COLOR, alpha=0.75, label="ESD" + _beyond(evals.size - shown.size))
    tag_artists(bars, "esd-linear")
    heights = [np.histogram(shown, bins)[0].max() / (evals.size * width)]
    if rand_evals is not None and rand_evals.size:
        rand = np.clip(np.sort(rand_evals), 0.0, None)
        rand_shown = rand[rand <= x_high]
        counts, _, outline = axes.hist(
            rand_shown, bins=bins, weights=np.full(rand_shown.size, 1.0 / (rand.size * width)),
            histtype="step", lw=1.6, color=RANDOM_COLOR, label="randomised W" + _beyond(rand.size - rand_shown.size),
        )
        tag_artists(outline, "randomised")
        heights.append(float(np.max(counts)))
    if mp is not None:
        q = aspect_ratio(result.shape)
        lo, hi = mp_edges(mp.sigma2, q)
        grid = np.linspace(lo, hi, 402)[1:-1]  # open support: the density is 0 (or ∞ at 0) at the edges
        bulk_share = (evals.size - mp.num_spikes) / evals.size
        axes.plot(grid, bulk_share * mp_density(grid, mp.sigma2, q), color=MP_COLOR, lw=2, gid="mp-density",
                  label=f"Marchenko–Pastur, σ² = {fmt(mp.sigma2)}, Q = {fmt(q, 2)}")
        axes.axvline(mp.bulk_max, color=MP_COLOR, ls="--", lw=1.2, gid="bulk-edge", label=f"bulk edge {fmt(mp.bulk_max)}")
        # The report's spike count decides (its edge may carry a Tracy–Widom margin): the
        # spikes are the largest ``num_spikes`` eigenvalues.
        spikes = evals[evals.size - mp.num_spikes:]
        visible = spikes[spikes <= x_high]
        if spikes.size:
            axes.plot(visible, np.zeros(visible.size), "|", color=FIT_COLOR, ms=16, mew=1.8,
                      transform=axes.get_xaxis_transform(), gid="spikes",
                      label=f"{spikes.size} spike{'s' if spikes.size > 1 else ''}" + _beyond(spikes.size - visible.size))
        axes.set_title(f"(b) MP bulk fit: {mp.num_spikes} spikes above the edge", loc="left", fontsize=10)
        axes.set_ylim(0, 1.3 * max(heights))  # the MP density is unbounded at 0 when Q = 1
    else:
        axes.set_title("(b) linear ESD (MP bulk not computed)", loc="left", fontsize=10)
    axes.set_xlim(0, x_high)
    axes.set_xlabel("eigenvalue λ of WᵀW/N")
    axes.set_ylabel("density")
    _legend_below(axes)


def esd_figure(result: LayerResult, evals: np.ndarray | None, rand_evals: np.ndarray | None = None) -> Figure:
    """Both panels for one layer. ``evals`` is its ESD, ``rand_evals`` that of randomised W."""
    if evals is None or not np.any(np.asarray(evals) > 0):
        raise WeightscopeError(f"layer {result.name} has no spectrum to draw: {result.reason or 'all eigenvalues are 0'}")
    ordered = np.sort(np.asarray(evals, dtype=np.float64))
    figure = new_figure(12.0, 4.6)
    loglog, linear = figure.subplots(1, 2)
    _draw_loglog(loglog, result, ordered)
    _draw_linear(linear, result, ordered, rand_evals)
    shape = "×".join(map(str, result.shape))
    figure.suptitle(f"{result.name}   ({result.kind}, {shape}, {ordered.size} eigenvalues)", fontsize=11.5)
    return figure


def layer_figure(analysis: LayerAnalysis) -> Figure:
    """`esd_figure` of a layer as the pipeline streams it (the one place that unpacks it)."""
    return esd_figure(analysis.result, analysis.evals, analysis.rand_evals)
