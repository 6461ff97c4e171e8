"""The picture of a comparison: where each layer's alpha was in A and where it is in B.

Left: for every matched layer, by depth, a segment from alpha in A (hollow grey) to alpha
in B (filled, coloured by kind) over the healthy band — a fine-tune that over-fits shows
as segments falling below 2, a layer that was reset as one jumping above 6. Right: the
histogram of Δalpha = alpha_B − alpha_A with its median.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from weightscope.checkpoint.layers import block_index
from weightscope.config import Thresholds
from weightscope.render.plot_summary import depth_axis, kind_rank
from weightscope.render.plots import (
    kind_color,
    new_figure,
    shade_alpha_band,
    tag_artists,
)
from weightscope.render.style import fmt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from weightscope.commands.compare import Comparison


def compare_figure(comparison: Comparison, thresholds: Thresholds = Thresholds()) -> Figure:
    """Alpha A → B by depth over the healthy band of ``thresholds``, beside the histogram of Δalpha."""
    from matplotlib.lines import Line2D

    both = [c for c in comparison.layers if c.alpha_a is not None and c.alpha_b is not None]
    axis = depth_axis([c.kind for c in both], [block_index(c.name) for c in both])
    x = np.array(axis.positions)
    alpha_a = np.array([c.alpha_a for c in both], dtype=np.float64)
    alpha_b = np.array([c.alpha_b for c in both], dtype=np.float64)
    figure = new_figure(12.0, 5.0)
    by_depth, histogram = figure.subplots(1, 2, width_ratios=[3, 1])
    shade_alpha_band(by_depth, thresholds)
    colors = [kind_color(c.kind) for c in both]
    if both:
        by_depth.vlines(x, alpha_a, alpha_b, colors=colors, lw=1.2, alpha=0.8, gid="alpha-change")
    by_depth.scatter(x, alpha_a, s=30, facecolors="none", edgecolors="grey", linewidths=1.2, zorder=3, gid="alpha-a")
    by_depth.scatter(x, alpha_b, s=36, c=colors, zorder=4, gid="alpha-b")
    if axis.ticks:
        by_depth.set_xticks(axis.ticks, axis.tick_labels)
    by_depth.set_xlabel(axis.label)
    by_depth.set_ylabel("alpha")
    if both:
        values = np.concatenate([alpha_a, alpha_b])
        by_depth.set_ylim(
            min(thresholds.alpha_low - 1.0, values.min() - 0.5), max(thresholds.alpha_high + 1.0, values.max() + 0.5)
        )
    by_depth.set_title("alpha by depth: A (hollow grey) → B (coloured by kind)", loc="left", fontsize=10)
    kinds = sorted({c.kind for c in both}, key=kind_rank)
    handles = [Line2D([], [], ls="", marker="o", mfc="none", mec="grey", label="A")]
    handles += [Line2D([], [], ls="", marker="o", color=kind_color(kind), label=f"B: {kind}") for kind in kinds]
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 10), fontsize=9, frameon=False)

    delta = alpha_b - alpha_a
    if delta.size:
        _, _, bars = histogram.hist(delta, bins=min(30, max(5, delta.size // 2)), color="#4c72b0", alpha=0.8)
        tag_artists(bars, "delta-histogram")
    median = comparison.summary.delta_alpha_median
    if median is not None:
        histogram.axvline(median, color="black", ls="--", lw=1.1, gid="delta-median", label=f"median {fmt(median, 2)}")
        histogram.legend(fontsize=9, loc="upper right")
    histogram.axvline(0.0, color="grey", lw=0.8)
    histogram.set_xlabel("Δalpha = alpha B − alpha A")
    histogram.set_ylabel("layers")
    histogram.set_title("Δalpha histogram", fontsize=10)
    figure.suptitle(f"A: {comparison.a}   B: {comparison.b}   ({len(both)} layers fitted on both sides)", fontsize=11)
    return figure
