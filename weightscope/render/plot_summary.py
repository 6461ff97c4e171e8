"""The picture of a whole checkpoint: alpha of every layer by depth, and its histogram.

Depth is the transformer block index. Layers of the same block are spread a little by
kind so they do not hide each other; layers without a block go to the ends (embeddings
before the first block, everything else — lm_head, unknown names — after the last).
Untrusted fits are drawn hollow: they are shown, but should not be believed. The marker's
shape is the layer's verdict (`VERDICT_MARKERS`), so the picture answers "which layers
are flagged, and as what" without the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from weightscope.checkpoint.layers import KINDS
from weightscope.render.plots import (
    BAND_ALPHA,
    BAND_COLOR,
    kind_color,
    new_figure,
    shade_alpha_band,
    tag_artists,
)
from weightscope.render.style import band_text, fmt, number
from weightscope.report import LayerResult, Report

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure

#: Marker of each verdict (matplotlib names; the HTML's SVG draws the same shapes).
VERDICT_MARKERS = {
    "healthy": "o",
    "over-trained": "v",
    "under-trained": "^",
    "random-like": "s",
    "correlation-trap": "X",
    "rank-collapsed": "D",
    "untrusted-fit": "o",
}
NO_VERDICT_MARKER = "P"


def verdict_marker(verdict: str | None) -> str:
    return VERDICT_MARKERS.get(verdict or "", NO_VERDICT_MARKER)


#: Width of a block's slot that its kinds are spread over (1 would touch the next block).
KIND_SPREAD = 0.7
#: At most about this many block numbers are written on the depth axis.
MAX_BLOCK_TICKS = 24
MAX_HISTOGRAM_BINS = 40


@dataclass(frozen=True)
class DepthAxis:
    """Where each layer sits on the depth axis, and how the axis is labelled."""

    positions: list[float]
    ticks: list[float]
    tick_labels: list[str]
    label: str


def is_trusted(layer: LayerResult) -> bool:
    """A fit counts as trusted unless the diagnostics computed it and said otherwise."""
    return layer.fit_trust is None or layer.fit_trust.trusted


def kind_rank(kind: str) -> tuple[int, str]:
    """Display order of layer kinds (`weightscope.checkpoint.layers.KINDS`, unknown kinds last)."""
    return (KINDS.index(kind) if kind in KINDS else len(KINDS), kind)


def depth_axis(kinds: Sequence[str], blocks: Sequence[int | None]) -> DepthAxis:
    """Positions of layers (given by kind and block) on the depth axis, spread by kind.

    Falls back to storage order when no layer has a block index.
    """
    known = [block for block in blocks if block is not None]
    if not known:
        return DepthAxis([float(i) for i in range(len(kinds))], [], [], "layer (storage order)")
    present = sorted(set(kinds), key=kind_rank)
    step = KIND_SPREAD / len(present)
    offset = {kind: (i - (len(present) - 1) / 2) * step for i, kind in enumerate(present)}
    first, last = min(known), max(known)
    positions = []
    before = after = False
    for kind, block in zip(kinds, blocks, strict=True):
        if block is not None:
            slot = block
        elif kind == "embedding":
            slot, before = first - 1, True
        else:
            slot, after = last + 1, True
        positions.append(slot + offset[kind])
    stride = max(1, math.ceil((last - first + 1) / MAX_BLOCK_TICKS))
    ticks = [float(b) for b in range(first, last + 1, stride)]
    labels = [str(b) for b in range(first, last + 1, stride)]
    if before:
        ticks, labels = [first - 1.0, *ticks], ["embed", *labels]
    if after:
        ticks, labels = [*ticks, last + 1.0], [*labels, "head/other"]
    return DepthAxis(positions, ticks, labels, "transformer block")


def _alpha_bins(alphas: np.ndarray) -> np.ndarray:
    edges = np.histogram_bin_edges(alphas, bins="auto")
    return (
        edges
        if edges.size <= MAX_HISTOGRAM_BINS + 1
        else np.linspace(alphas.min(), alphas.max(), MAX_HISTOGRAM_BINS + 1)
    )


def summary_figure(report: Report) -> Figure:
    """Alpha by depth coloured by kind over the healthy band, beside the alpha histogram."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    band = report.thresholds
    fitted = [layer for layer in report.layers if layer.ok and layer.alpha is not None]
    axis = depth_axis([layer.kind for layer in fitted], [layer.block for layer in fitted])
    alphas = np.array([layer.alpha for layer in fitted], dtype=np.float64)
    figure = new_figure(12.0, 5.0)
    by_depth, histogram = figure.subplots(1, 2, sharey=True, width_ratios=[4, 1])
    for axes in (by_depth, histogram):
        shade_alpha_band(axes, band)
    handles: list[Artist] = []
    verdicts = sorted({layer.verdict or "" for layer in fitted})
    for kind in sorted({layer.kind for layer in fitted}, key=kind_rank):
        color = kind_color(kind)
        for trusted in (True, False):
            for verdict in verdicts:
                chosen = [
                    i
                    for i, layer in enumerate(fitted)
                    if layer.kind == kind and is_trusted(layer) == trusted and (layer.verdict or "") == verdict
                ]
                if chosen:
                    by_depth.scatter(
                        [axis.positions[i] for i in chosen],
                        alphas[chosen],
                        s=44,
                        linewidths=1.6,
                        marker=verdict_marker(verdict or None),
                        facecolors=color if trusted else "none",
                        edgecolors=color,
                        zorder=3,
                        gid=f"alpha:{kind}:{'trusted' if trusted else 'untrusted'}:{verdict or 'none'}",
                    )
        handles.append(Line2D([], [], ls="", marker="o", color=color, label=kind))
    if any(not is_trusted(layer) for layer in fitted):
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="grey", mew=1.6, label="untrusted fit"))
    for verdict in verdicts:
        if verdict not in ("healthy", "untrusted-fit"):
            handles.append(
                Line2D(
                    [], [], ls="", marker=verdict_marker(verdict or None), color="grey", label=verdict or "no verdict"
                )
            )
    handles.append(Patch(color=BAND_COLOR, alpha=BAND_ALPHA * 2, label=f"healthy band {band_text(band)}"))
    median = report.summary.alpha_median
    if median is not None:
        for axes in (by_depth, histogram):
            axes.axhline(median, color="black", ls="--", lw=1.1, gid="median")
        handles.append(Line2D([], [], color="black", ls="--", lw=1.1, label=f"median α = {fmt(median, 2)}"))
    if axis.ticks:
        by_depth.set_xticks(axis.ticks, axis.tick_labels)
    by_depth.set_xlabel(axis.label)
    by_depth.set_ylabel("alpha (power-law exponent of the ESD tail)")
    if alphas.size:
        by_depth.set_ylim(min(band.alpha_low - 1.0, alphas.min() - 0.5), max(band.alpha_high + 1.0, alphas.max() + 0.5))
        _, _, bars = histogram.hist(
            alphas, bins=_alpha_bins(alphas), orientation="horizontal", color="#4c72b0", alpha=0.8
        )
        tag_artists(bars, "alpha-histogram")
    histogram.set_xlabel("number of layers")
    histogram.set_title("alpha histogram", fontsize=10)
    by_depth.set_title("alpha by depth (hollow: untrusted fit; shape: verdict)", loc="left", fontsize=10)
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize=9, frameon=False)
    unfitted = len(report.layers) - len(fitted)
    s = report.summary
    figure.suptitle(
        f"{report.source}: {len(fitted)} layers; median α {fmt(s.alpha_median, 2)} (MAD {fmt(s.alpha_mad, 2)})"
        f" over the {s.robust_layers} trusted with α ≤ {number(band.alpha_random)}"
        + (f", {unfitted} without a fit not shown" if unfitted else ""),
        fontsize=11.5,
    )
    return figure
