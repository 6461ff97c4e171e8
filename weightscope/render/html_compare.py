"""The HTML page of a comparison (`weightscope compare A B --html FILE`).

The summary lines of the terminal view, the A → B picture, and the per-layer table
(alpha on both sides, the changes, the verdict change and, when weights were compared,
the size and rank of the update ΔW), sortable by any column.
"""

from __future__ import annotations

import os
from html import escape

from weightscope.commands.compare import Comparison
from weightscope.config import Thresholds
from weightscope.errors import one_line
from weightscope.io import write_text_atomic
from weightscope.render.compare_columns import HTML, pair_columns, pair_rows
from weightscope.render.compare_views import (
    ordered_changes,
    summary_lines,
)
from weightscope.render.html import (
    figure_html,
    page,
    sortable_table,
)
from weightscope.render.plot_compare import compare_figure
from weightscope.render.plots import require_matplotlib
from weightscope.render.rows import short_names


def compare_html(comparison: Comparison, thresholds: Thresholds = Thresholds()) -> str:
    """The self-contained page of a comparison (rows by depth, names shortened as in the
    terminal table so that the table fits a 1400-pixel page)."""
    require_matplotlib()
    columns = pair_columns(HTML, comparison.weights)
    changes = ordered_changes(comparison)
    names = short_names([change.name for change in changes])
    rows = [[column.html_cell(row) for column in columns] for row in pair_rows(changes, names.names, thresholds)]
    sections = [
        "<h2>Summary</h2><ul>"
        + "".join(f"<li>{escape(one_line(line))}</li>" for line in summary_lines(comparison))
        + "</ul>",
        "<h2>Alpha, A → B</h2>"
        + figure_html(compare_figure(comparison, thresholds), "alpha of every layer in A and in B, by depth"),
        '<h2>Layers</h2><p class="meta">In depth order; click a header to sort'
        + (f"; layer {escape(names.dropped)} (hover a name for the full one)" if names.dropped else "")
        + ".</p>"
        + sortable_table("layers", [column.html_column for column in columns], rows),
    ]
    return page("weightscope compare", f"A: {comparison.a} · B: {comparison.b}", sections)


def write_compare_html(
    comparison: Comparison, path: str | os.PathLike[str], thresholds: Thresholds = Thresholds()
) -> None:
    """Write `compare_html` to ``path`` atomically."""
    write_text_atomic(path, compare_html(comparison, thresholds))
