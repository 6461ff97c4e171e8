"""The HTML page of a comparison (`weightscope compare A B --html FILE`).

The summary lines of the terminal view, the A → B picture, and the per-layer table
(alpha on both sides, the changes, the verdict change and, when weights were compared,
the size and rank of the update ΔW), sortable by any column.
"""

from __future__ import annotations

import os
from html import escape

from weightscope.checkpoint.layers import block_index
from weightscope.commands.compare import Comparison, LayerChange
from weightscope.config import Thresholds
from weightscope.errors import one_line
from weightscope.io import write_text_atomic
from weightscope.render.cells import Cell, Column, number_cell, text_cell
from weightscope.render.compare_views import (
    ordered_changes,
    signed,
    summary_lines,
    verdict_change,
)
from weightscope.render.html import (
    figure_html,
    page,
    sortable_table,
)
from weightscope.render.plot_compare import compare_figure
from weightscope.render.plots import require_matplotlib
from weightscope.render.rows import short_names
from weightscope.render.style import alpha_band

_COLUMNS = (
    Column("block", "blk", True),
    Column("layer", "layer"),
    Column("kind", "kind"),
    Column("alpha_a", "alpha A", True),
    Column("alpha_b", "alpha B", True),
    Column("delta_alpha", "Δalpha", True),
    Column("delta_log_norm", "Δlog‖W‖²", True),
    Column("delta_log_spectral_norm", "Δlog λmax", True),
    Column("verdict", "verdict"),
)
_UPDATE_COLUMNS = (
    Column("relative_norm", "‖ΔW‖/‖W‖", True),
    Column("effective_rank", "eff. rank", True),
    Column("stable_rank", "stable rank", True),
    Column("rank90", "rank90", True),
    Column("note", "note"),
)


def _alpha_cell(alpha: float | None, thresholds: Thresholds) -> Cell:
    cell = number_cell(alpha, 2)
    return Cell(cell.text, cell.sort, alpha_band(alpha, thresholds) if alpha is not None else "muted")


def _signed_cell(value: float | None) -> Cell:
    return Cell(signed(value), value)


def _row(change: LayerChange, short: str, weights: bool, thresholds: Thresholds) -> list[Cell]:
    cells = [
        number_cell(block_index(change.name)),
        Cell(short, change.name, "name", title=change.name),
        text_cell(change.kind),
        _alpha_cell(change.alpha_a, thresholds),
        _alpha_cell(change.alpha_b, thresholds),
        _signed_cell(change.delta_alpha),
        _signed_cell(change.delta_log_norm),
        _signed_cell(change.delta_log_spectral_norm),
        text_cell(verdict_change(change), "low" if change.worse else ""),
    ]
    if weights:
        update = change.update
        cells += [
            number_cell(update.relative_norm if update else None),
            number_cell(update.effective_rank if update else None, 1),
            number_cell(update.stable_rank if update else None, 1),
            Cell(f"{update.rank90}/{update.dim}", update.rank90) if update else Cell("—", None, "muted"),
            text_cell(change.note or ""),
        ]
    return cells


def compare_html(comparison: Comparison, thresholds: Thresholds = Thresholds()) -> str:
    """The self-contained page of a comparison (rows by depth, names shortened as in the
    terminal table so that the table fits a 1400-pixel page)."""
    require_matplotlib()
    columns = _COLUMNS + (_UPDATE_COLUMNS if comparison.weights else ())
    changes = ordered_changes(comparison)
    names = short_names([change.name for change in changes])
    rows = [_row(change, short, comparison.weights, thresholds) for change, short in zip(changes, names.names)]
    sections = [
        "<h2>Summary</h2><ul>"
        + "".join(f"<li>{escape(one_line(line))}</li>" for line in summary_lines(comparison))
        + "</ul>",
        "<h2>Alpha, A → B</h2>"
        + figure_html(compare_figure(comparison, thresholds), "alpha of every layer in A and in B, by depth"),
        '<h2>Layers</h2><p class="meta">In depth order; click a header to sort'
        + (f"; layer {escape(names.dropped)} (hover a name for the full one)" if names.dropped else "")
        + ".</p>"
        + sortable_table("layers", columns, rows),
    ]
    return page("weightscope compare", f"A: {comparison.a} · B: {comparison.b}", sections)


def write_compare_html(
    comparison: Comparison, path: str | os.PathLike[str], thresholds: Thresholds = Thresholds()
) -> None:
    """Write `compare_html` to ``path`` atomically."""
    write_text_atomic(path, compare_html(comparison, thresholds))
