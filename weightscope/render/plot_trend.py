"""The picture of a training run: model alpha over steps, and every layer's alpha over steps.

Top: the median alpha of each checkpoint with its MAD band (the robust figures of each
report's summary), over the healthy band. Bottom: a layers × checkpoints heatmap of
alpha, layers ordered by depth, so a layer that drifts (or a block that never trains)
shows as a stripe. Layers the trend flagged (fall-then-rise, jump, stuck random-like)
have their names in red.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from weightscope.checkpoint.layers import block_index
from weightscope.config import Thresholds
from weightscope.render.plot_measures import draw_measures
from weightscope.render.plot_summary import depth_axis
from weightscope.render.plots import new_figure, shade_alpha_band, tag_artists
from weightscope.render.style import number
from weightscope.render.trend_columns import checkpoint_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from weightscope.commands.trend import Trend

FLAG_COLOR = "#c0392b"
#: Height in inches per heatmap row, and the most rows that still get a name each.
ROW_HEIGHT = 0.17
MAX_NAMED_ROWS = 70
#: The heatmap's colour scale ends here (random-like layers above it share one colour).
HEATMAP_SCALE_END = 12.0
#: Steps spanning more than this ratio are drawn on a (symmetric) log axis.
LOG_STEP_SPAN = 30.0


def depth_order(names: list[str], kinds: list[str]) -> list[int]:
    """Indices of layers by depth: embeddings, then blocks in order (kinds within), then the rest."""
    positions = depth_axis(kinds, [block_index(name) for name in names]).positions
    return sorted(range(len(names)), key=lambda i: positions[i])


def trend_figure(trend: Trend, thresholds: Thresholds = Thresholds()) -> Figure:
    """Median alpha with its MAD band over the steps, above the layers × steps alpha heatmap."""
    points = trend.checkpoints
    labels = [checkpoint_label(point) for point in trend.checkpoints]
    by_step = all(p.step is not None for p in points)
    x = np.array([p.step for p in points] if by_step else range(len(points)), dtype=np.float64)
    median = np.array([np.nan if p.summary.alpha_median is None else p.summary.alpha_median for p in points])
    mad = np.array([np.nan if p.summary.alpha_mad is None else p.summary.alpha_mad for p in points])
    order = depth_order([s.name for s in trend.layers], [s.kind for s in trend.layers])
    rows = [trend.layers[i] for i in order]
    alpha = np.array([[np.nan if a is None else a for a in s.alphas] for s in rows], dtype=np.float64).reshape(
        len(rows), len(points)
    )
    heat_height = min(max(2.5, ROW_HEIGHT * len(rows)), 16.0)
    measured = bool(trend.attention or trend.embeddings)
    figure = new_figure(11.0, 3.6 + heat_height + (2.8 if measured else 0.0))
    grid = figure.add_gridspec(
        3 if measured else 2, 2, height_ratios=[3.0, 2.6, heat_height] if measured else [3.0, heat_height]
    )
    line_axes, heat_axes = figure.add_subplot(grid[0, :]), figure.add_subplot(grid[-1, :])

    low_edge, high_edge = thresholds.alpha_low, thresholds.alpha_high
    shade_alpha_band(line_axes, thresholds)
    band = line_axes.fill_between(x, median - mad, median + mad, color="#4c72b0", alpha=0.25, lw=0, label="± MAD")
    band.set_gid("mad-band")
    line_axes.plot(x, median, "o-", color="#4c72b0", lw=2, ms=5, gid="median-alpha", label="median alpha")
    missing = np.isnan(median)
    if missing.any():  # every layer random-like (α > alpha_random) or untrusted: the summary has no robust median
        line_axes.plot(
            x[missing],
            np.full(missing.sum(), 0.97),
            "x",
            color="grey",
            ms=8,
            mew=2,
            transform=line_axes.get_xaxis_transform(),
            gid="no-median",
            label=f"no median: no trusted layer with α ≤ {number(thresholds.alpha_random)}",
        )
    positive = x[x > 0]
    log_spaced = by_step and positive.size >= 2 and positive.max() / positive.min() > LOG_STEP_SPAN
    if log_spaced:  # checkpoints are usually denser early: a linear axis would crush them together
        line_axes.set_xscale("symlog", linthresh=float(positive.min()), linscale=0.5)
    line_axes.set_xlabel(("training step" + (" (log scale)" if log_spaced else "")) if by_step else "checkpoint")
    if not by_step:
        line_axes.set_xticks(x, labels)
    line_axes.set_ylabel("alpha")
    line_axes.set_title("median alpha over the run (robust: median and MAD over layers)", loc="left", fontsize=10)
    finite = median[np.isfinite(median)]
    spread = mad[np.isfinite(mad)]
    top = (
        max(high_edge + 0.5, float((finite + (spread.max() if spread.size else 0)).max()) + 0.3) if finite.size else 7.0
    )
    line_axes.set_ylim(max(0.0, min(low_edge - 0.5, float(finite.min()) - 0.5) if finite.size else 0.0), top)
    line_axes.legend(loc="best", fontsize=9)
    if measured:
        bound_axes, id_axes = (
            figure.add_subplot(grid[1, 0], sharex=line_axes),
            figure.add_subplot(grid[1, 1], sharex=line_axes),
        )
        draw_measures(trend, x, bound_axes, id_axes)

    from matplotlib import colormaps
    from matplotlib.colors import TwoSlopeNorm

    # Diverging around the middle of the healthy band: red below alpha_low (over-fit side, as
    # in the tables), pale inside the band, blue above alpha_high (under-trained); capped so one random
    # layer does not wash out the contrast of the rest.
    known = alpha[np.isfinite(alpha)]
    low = min(low_edge - 0.5, float(known.min())) if known.size else low_edge - 0.5
    high = min(max(high_edge + 2.0, float(known.max())), HEATMAP_SCALE_END) if known.size else high_edge + 2.0
    norm = TwoSlopeNorm(vcenter=(low_edge + high_edge) / 2, vmin=low, vmax=high)
    image = heat_axes.imshow(
        np.ma.masked_invalid(alpha),
        aspect="auto",
        interpolation="nearest",
        cmap=colormaps["RdYlBu"].with_extremes(bad="#bdbdbd"),
        norm=norm,
    )
    tag_artists([image], "alpha-heatmap")
    above = bool(known.size and known.max() > high)
    colorbar = figure.colorbar(image, ax=heat_axes, pad=0.01, fraction=0.04, extend="max" if above else "neither")
    colorbar.set_label("alpha (grey: no fit)")
    marks = (low_edge, (low_edge + high_edge) / 2, high_edge, thresholds.alpha_random, HEATMAP_SCALE_END)
    colorbar.set_ticks(sorted({t for t in marks if low <= t <= high}))
    heat_axes.set_xticks(
        range(len(points)), labels, rotation=45 if len(points) > 12 else 0, ha="right" if len(points) > 12 else "center"
    )
    heat_axes.set_xlabel("training step" if by_step else "checkpoint")
    stride = max(1, int(np.ceil(len(rows) / MAX_NAMED_ROWS)))
    named = list(range(0, len(rows), stride))
    heat_axes.set_yticks(named, [rows[i].name for i in named], fontsize=7.5 if len(rows) > 30 else 8.5)
    for tick, i in zip(heat_axes.get_yticklabels(), named):
        if rows[i].flags:
            tick.set_color(FLAG_COLOR)
            tick.set_fontweight("bold")
    flagged = sum(bool(s.flags) for s in rows)
    heat_axes.set_title(
        f"alpha per layer and checkpoint ({len(rows)} layers, by depth"
        + (f"; {flagged} flagged in red" if flagged else "")
        + ")",
        loc="left",
        fontsize=10,
    )
    figure.suptitle(f"weightscope trend: {len(points)} checkpoints", fontsize=11.5)
    return figure
