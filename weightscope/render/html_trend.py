"""The HTML page of a training run (`weightscope trend … --html FILE`).

The trend picture, one row per checkpoint (step, median alpha and MAD, verdict counts),
and the layers × steps alpha table with each layer's flags and their evidence: sortable
by any step, so "which layers had the lowest alpha at step 500" is one click.
"""

from __future__ import annotations

import os

from weightscope.commands.trend import Trend
from weightscope.config import Thresholds
from weightscope.io import write_text_atomic
from weightscope.render.html import (
    cards,
    figure_html,
    page,
    sortable_table,
)
from weightscope.render.measures_views import lines_html, trend_measure_lines
from weightscope.render.plot_trend import trend_figure
from weightscope.render.plots import require_matplotlib
from weightscope.render.style import alpha_band, fmt
from weightscope.render.trend_columns import (
    POINT_COLUMNS,
    checkpoint_label,
    point_rows,
    run_root,
    series_rows,
    series_slots,
)
from weightscope.render.trend_views import ordered_series


def _checkpoints_table(trend: Trend, thresholds: Thresholds) -> str:
    columns = [column for column in POINT_COLUMNS if column.html is not None]
    rows = [
        [column.html(row) for column in columns if column.html is not None] for row in point_rows(trend, thresholds)
    ]
    return sortable_table("checkpoints", [column.html_column for column in columns], rows)


def _layers_table(trend: Trend, thresholds: Thresholds) -> str:
    slots = series_slots(trend, "html")
    rows = [
        [slot.value("html", row) for slot in slots] for row in series_rows(trend, ordered_series(trend), thresholds)
    ]
    return sortable_table("layers", [slot.html_column for slot in slots], rows)


def trend_html(trend: Trend, thresholds: Thresholds = Thresholds()) -> str:
    """The self-contained page of a trend."""
    require_matplotlib()
    points = trend.checkpoints
    first, last = points[0].summary.alpha_median, points[-1].summary.alpha_median
    summary = cards(
        [
            ("checkpoints", str(len(points)), ""),
            ("layers", str(len(trend.layers)), ""),
            (
                f"median alpha @{checkpoint_label(points[0])}",
                fmt(first, 2),
                alpha_band(first, thresholds) if first is not None else "muted",
            ),
            (
                f"median alpha @{checkpoint_label(points[-1])}",
                fmt(last, 2),
                alpha_band(last, thresholds) if last is not None else "muted",
            ),
            ("layers flagged", str(len(trend.flagged)), "low" if trend.flagged else ""),
        ]
    )
    sections = [
        "<h2>Summary</h2>" + summary,
        "<h2>Alpha over the run</h2>"
        + figure_html(trend_figure(trend, thresholds), "median alpha over the steps and alpha per layer"),
        "<h2>Checkpoints</h2>" + _checkpoints_table(trend, thresholds),
        '<h2>Layers</h2><p class="meta">Alpha of every layer at every checkpoint; click a header to sort. Flags: '
        f"jumps are changes per log-step more than {fmt(trend.jump_k)} × MAD off the layer's median and at least "
        f"{fmt(trend.min_swing)}; only trusted fits past the initial fall from random carry flags.</p>"
        + _layers_table(trend, thresholds),
        lines_html("Model-level measures over the run", trend_measure_lines(trend)),
    ]
    return page("weightscope trend", run_root(trend), sections)


def write_trend_html(trend: Trend, path: str | os.PathLike[str], thresholds: Thresholds = Thresholds()) -> None:
    """Write `trend_html` to ``path`` atomically."""
    write_text_atomic(path, trend_html(trend, thresholds))
