"""The picture of one layer's spectrum (matplotlib PNG): is the fitted tail real, and how
far from random?

Panel (a) is the ESD on log-log axes with the fitted power law drawn from xmin to xmax
(a straight line of slope −alpha), xmin and λmax marked, and dragon kings flagged: the
view in which a practitioner judges a tail fit. Panel (b) is the same ESD on linear axes
with the Marchenko–Pastur density of the fitted bulk, the bulk edge, the spikes above it,
and the ESD of the element-wise randomised matrix with its own MP edge — the edge its
correlation traps are judged against. Panel (c) is the empirical CCDF with the fitted
power law's, the standard picture of a power-law fit. What is drawn is computed once in
`weightscope.render.esd_data` (the HTML report draws the same numbers as SVG).

The figure only draws what the `LayerResult` says; diagnostics that were not computed
(``mp``, ``dragon_kings``, the randomised spectrum) are simply left out. Warnings (an MP
fit that found no bulk, an untrusted fit and why) are written in red under the title.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from weightscope.errors import WeightscopeError
from weightscope.render.esd_data import (
    CcdfPanel,
    EsdPicture,
    LinearPanel,
    LogLogPanel,
    esd_picture,
)
from weightscope.render.plots import new_figure, tag_artists
from weightscope.render.style import fmt
from weightscope.report import LayerResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from weightscope.analysis.layer import LayerAnalysis

ESD_COLOR = "#4c72b0"
FIT_COLOR = "#d62728"
RANDOM_COLOR = "#ff7f0e"
MP_COLOR = "#2ca02c"
WARNING_COLOR = "#b00020"


def _legend_below(axes: Axes) -> None:
    """Legends go under the axes: inside they would hide bars or the markers at the top."""
    axes.legend(fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)


def _bars(axes: Axes, edges: np.ndarray, heights: np.ndarray, gid: str, label: str) -> None:
    bars = axes.bar(edges[:-1], heights, width=np.diff(edges), align="edge", color=ESD_COLOR, alpha=0.75, label=label)
    tag_artists(bars, gid)


def _beyond(count: int) -> str:
    return f", {count} beyond the axis" if count else ""


def _draw_loglog(axes: Axes, result: LayerResult, panel: LogLogPanel, title: str, evals: np.ndarray) -> None:
    _bars(axes, panel.histogram.edges, panel.histogram.heights, "esd-loglog", "ESD")
    axes.set_xscale("log")
    axes.set_yscale("log")
    if panel.fit is not None and result.alpha is not None:
        axes.plot(
            panel.fit.x,
            panel.fit.y,
            color=FIT_COLOR,
            lw=2.2,
            gid="powerlaw-fit",
            label=f"power law, α = {fmt(result.alpha, 2)}",
        )
        axes.axvline(panel.xmin, color=FIT_COLOR, ls="--", lw=1.2, gid="xmin", label=f"xmin = {fmt(panel.xmin)}")
    axes.axvline(
        panel.lambda_max, color="black", ls=":", lw=1.2, gid="lambda-max", label=f"λmax = {fmt(panel.lambda_max)}"
    )
    kings = result.dragon_kings.count if result.dragon_kings is not None else 0
    if kings:
        axes.plot(
            evals[-kings:],
            np.full(kings, 0.93),
            "v",
            color="#9467bd",
            ms=9,
            transform=axes.get_xaxis_transform(),
            gid="dragon-kings",
            label=f"{kings} dragon king{'s' if kings > 1 else ''}",
        )
    nonpositive = panel.nonpositive
    axes.set_xlabel("eigenvalue λ of WᵀW/N (log scale)" + (f"; {nonpositive} λ ≤ 0 not shown" if nonpositive else ""))
    axes.set_ylabel("density (log scale)")
    axes.set_title("(a) " + title, loc="left", fontsize=10)
    _legend_below(axes)


def _draw_linear(axes: Axes, result: LayerResult, panel: LinearPanel) -> None:
    _bars(axes, panel.histogram.edges, panel.histogram.heights, "esd-linear", "ESD" + _beyond(panel.beyond))
    if panel.randomised is not None:
        outline = axes.stairs(
            panel.randomised.heights,
            panel.randomised.edges,
            lw=1.6,
            color=RANDOM_COLOR,
            label="randomised W" + _beyond(panel.randomised_beyond),
        )
        outline.set_gid("randomised")
    if panel.randomised_edge is not None:
        axes.axvline(
            panel.randomised_edge,
            color=RANDOM_COLOR,
            ls="-.",
            lw=1.4,
            gid="randomised-edge",
            label=f"randomised W's MP edge {fmt(panel.randomised_edge)} (traps: above it)",
        )
    if panel.mp is not None and result.mp is not None:
        axes.plot(
            panel.mp.x,
            panel.mp.y,
            color=MP_COLOR,
            lw=2,
            gid="mp-density",
            label=f"Marchenko–Pastur fit, σ² = {fmt(result.mp.sigma2)}",
        )
        axes.axvline(
            panel.bulk_edge,
            color=MP_COLOR,
            ls="--",
            lw=1.2,
            gid="bulk-edge",
            label=f"fitted bulk edge {fmt(panel.bulk_edge)}",
        )
        total = panel.spikes.size + panel.spikes_beyond
        if total:
            axes.plot(
                panel.spikes,
                np.zeros(panel.spikes.size),
                "|",
                color=FIT_COLOR,
                ms=16,
                mew=1.8,
                transform=axes.get_xaxis_transform(),
                gid="spikes",
                label=f"{total} spike{'s' if total > 1 else ''}" + _beyond(panel.spikes_beyond),
            )
        axes.set_title(f"(b) MP bulk fit: {result.mp.spikes_above_edge} spikes above the edge", loc="left", fontsize=10)
        axes.set_ylim(0, panel.y_high)  # the MP density is unbounded at 0 when Q = 1
    else:
        axes.set_title("(b) linear ESD (MP bulk not computed)", loc="left", fontsize=10)
    axes.set_xlim(0, panel.x_high)
    axes.set_xlabel("eigenvalue λ of WᵀW/N")
    axes.set_ylabel("density")
    _legend_below(axes)


def _draw_ccdf(axes: Axes, result: LayerResult, panel: CcdfPanel) -> None:
    axes.step(
        panel.empirical.x, panel.empirical.y, where="post", color=ESD_COLOR, lw=1.6, gid="ccdf", label="empirical CCDF"
    )
    if panel.fit is not None and result.alpha is not None:
        axes.plot(
            panel.fit.x,
            panel.fit.y,
            color=FIT_COLOR,
            lw=2.2,
            ls="--",
            gid="ccdf-fit",
            label=f"power law, slope 1 − α = {fmt(1.0 - result.alpha, 2)}",
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("eigenvalue λ (log scale)")
    axes.set_ylabel("P(Λ ≥ λ) (log scale)")
    axes.set_title("(c) CCDF of the eigenvalues", loc="left", fontsize=10)
    _legend_below(axes)


def draw_picture(picture: EsdPicture, result: LayerResult, evals: np.ndarray) -> Figure:
    figure = new_figure(17.0, 4.9 if not picture.warnings else 5.2)
    loglog, linear, ccdf = figure.subplots(1, 3, width_ratios=[1.15, 1.15, 0.9])
    _draw_loglog(loglog, result, picture.loglog, picture.title, evals)
    _draw_linear(linear, result, picture.linear)
    _draw_ccdf(ccdf, result, picture.ccdf)
    heading = f"{picture.name}   ({picture.subtitle})"
    if picture.warnings:
        heading += "\n" + "   ".join(f"⚠ {warning}" for warning in picture.warnings)
    suptitle = figure.suptitle(heading, fontsize=11.5)
    if picture.warnings:
        suptitle.set_color(WARNING_COLOR)
        suptitle.set_gid("warnings")
    return figure


def esd_figure(result: LayerResult, evals: np.ndarray | None, rand_evals: np.ndarray | None = None) -> Figure:
    """The three panels for one layer. ``evals`` is its ESD, ``rand_evals`` that of randomised W."""
    if evals is None or not np.any(np.asarray(evals) > 0):
        raise WeightscopeError(
            f"layer {result.name} has no spectrum to draw: {result.reason or 'all eigenvalues are 0'}"
        )
    ordered = np.sort(np.asarray(evals, dtype=np.float64))
    return draw_picture(esd_picture(result, ordered, rand_evals), result, ordered)


def layer_figure(analysis: LayerAnalysis) -> Figure:
    """`esd_figure` of a layer as the pipeline streams it (the one place that unpacks it)."""
    return esd_figure(analysis.result, analysis.evals, analysis.rand_evals)
