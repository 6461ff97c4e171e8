"""The columns of a trend's two tables, once: the checkpoints and the layers × checkpoints.

The trend twin of `render.columns` (a report's layers) and `render.compare_columns` (a
comparison's pairs). `POINT_COLUMNS` lists the checkpoints table (terminal, markdown,
HTML); `SERIES_COLUMNS` the layers table (terminal, markdown, HTML and CSV), where one
entry may stand for one column per checkpoint (alpha, the distance from init): the run
decides how many. A view shows the columns it has a cell function for, in this order, so a
new column of a trend is one entry here, and tests/test_architecture.py fails on a second
list anywhere else.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.text import Text

from weightscope.checkpoint.layers import block_index
from weightscope.commands.trend import (
    FLAG_FALL_THEN_RISE,
    FLAG_JUMP,
    LayerSeries,
    Trend,
    TrendPoint,
)
from weightscope.config import Thresholds
from weightscope.errors import one_line
from weightscope.render.cells import Cell, Column, number_cell, text_cell
from weightscope.render.compare_columns import signed
from weightscope.render.style import alpha_band, alpha_style, fmt


def md_cell(text: str) -> str:
    """``text`` as a markdown table cell: one line, its pipes escaped."""
    return one_line(text).replace("|", "\\|")


def checkpoint_label(point: TrendPoint) -> str:
    """How a checkpoint is named in headers: its step, else its file or directory name."""
    return str(point.step) if point.step is not None else Path(point.path).name


def _verdict_text(point: TrendPoint) -> str:
    ranked = sorted(point.verdict_shares.items(), key=lambda item: -item[1])
    return ", ".join(f"{verdict} {share:.0%}" for verdict, share in ranked)


def flag_text(series: LayerSeries, trend: Trend) -> str:
    """The layer's flags with their evidence, e.g. ``jump@1000 (+2.80)``."""
    labels = [checkpoint_label(point) for point in trend.checkpoints]
    parts = []
    for flag in series.flags:
        if flag == FLAG_JUMP:
            parts += [f"jump@{labels[jump.at]} ({signed(jump.delta)})" for jump in series.jumps]
        elif flag == FLAG_FALL_THEN_RISE and series.fall_then_rise is not None:
            dip = series.fall_then_rise
            parts.append(f"fall-then-rise (low @{labels[dip.low_at]}: -{fmt(dip.fall)}, +{fmt(dip.rise)})")
        else:
            parts.append(flag)
    return "; ".join(parts)


def run_root(trend: Trend) -> str:
    """The directory all checkpoints of the trend share (the run directory)."""
    paths = [os.path.abspath(point.path) for point in trend.checkpoints]
    if not paths:
        return ""
    common = os.path.commonpath(paths)
    return os.path.dirname(common) if common in paths else common


@dataclass(frozen=True)
class PointRow:
    """A checkpoint of the trend with what its cells need: its label, its path relative to
    the run directory (empty root: the path as given), the thresholds that colour alpha."""

    point: TrendPoint
    label: str
    root: str
    thresholds: Thresholds

    @property
    def relative(self) -> str:
        return os.path.relpath(os.path.abspath(self.point.path), self.root)


def _verdict_counts(point: TrendPoint) -> str:
    counts = sorted(point.summary.verdicts.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{verdict} {count}" for verdict, count in counts)


def html_alpha(alpha: float | None, thresholds: Thresholds) -> Cell:
    cell = number_cell(alpha, 2)
    return (
        Cell(cell.text, cell.sort, alpha_band(alpha, thresholds))
        if alpha is not None
        else Cell(cell.text, None, "muted")
    )


@dataclass(frozen=True)
class PointColumn:
    """One column of a trend's checkpoints table: ``key`` the HTML sort key, ``title`` the
    header of every view, ``numeric`` right-aligned and sorted as a number; a view shows
    the column when it has a cell function for it."""

    key: str
    title: str
    numeric: bool = False
    table: Callable[[PointRow], str | Text] | None = None
    markdown: Callable[[PointRow], str] | None = None
    html: Callable[[PointRow], Cell] | None = None

    @property
    def html_column(self) -> Column:
        return Column(self.key, self.title, self.numeric)


#: The columns of a trend's checkpoints table, in order (terminal, markdown, HTML).
POINT_COLUMNS: tuple[PointColumn, ...] = (
    PointColumn(
        "step",
        "step",
        True,
        table=lambda row: fmt(row.point.step),
        markdown=lambda row: md_cell(row.label),
        html=lambda row: number_cell(row.point.step),
    ),
    PointColumn(
        "checkpoint",
        "checkpoint",
        table=lambda row: Text(one_line(row.relative)),
        markdown=lambda row: f"`{md_cell(row.point.path)}`",
        html=lambda row: text_cell(row.relative if row.root else row.point.path),
    ),
    PointColumn(
        "origin",
        "from",
        table=lambda row: row.point.origin,
        html=lambda row: text_cell(row.point.origin),
    ),
    PointColumn(
        "layers",
        "layers",
        True,
        table=lambda row: str(row.point.summary.analysed + row.point.summary.failed),
        html=lambda row: number_cell(row.point.summary.analysed + row.point.summary.failed),
    ),
    PointColumn(
        "median",
        "median alpha",
        True,
        table=lambda row: Text(
            fmt(row.point.summary.alpha_median), style=alpha_style(row.point.summary.alpha_median, row.thresholds)
        ),
        markdown=lambda row: fmt(row.point.summary.alpha_median, 2),
        html=lambda row: html_alpha(row.point.summary.alpha_median, row.thresholds),
    ),
    PointColumn(
        "mad",
        "MAD",
        True,
        table=lambda row: fmt(row.point.summary.alpha_mad),
        markdown=lambda row: fmt(row.point.summary.alpha_mad, 2),
        html=lambda row: number_cell(row.point.summary.alpha_mad),
    ),
    PointColumn(
        "log_norm",
        "median log‖W‖²",
        True,
        table=lambda row: fmt(row.point.log_norm_median),
        html=lambda row: number_cell(row.point.log_norm_median),
    ),
    PointColumn(
        "verdicts",
        "verdicts",
        table=lambda row: _verdict_text(row.point),
        markdown=lambda row: md_cell(_verdict_text(row.point)),
        html=lambda row: text_cell(_verdict_counts(row.point)),
    ),
)


def point_rows(trend: Trend, thresholds: Thresholds) -> list[PointRow]:
    root = run_root(trend)
    return [PointRow(point, checkpoint_label(point), root, thresholds) for point in trend.checkpoints]


SeriesView = Literal["table", "markdown", "html", "csv"]


@dataclass(frozen=True)
class SeriesRow:
    """A layer of the trend with what its cells need: the name the terminal shows (short,
    `rows.short_names`), the trend (flags name their checkpoints), the alpha thresholds."""

    series: LayerSeries
    short: str
    trend: Trend
    thresholds: Thresholds


def _at(values: Sequence[float | None], i: int) -> float | None:
    """The value at checkpoint ``i``; None where the series has none (a distance from init
    that could not be measured is an empty list)."""
    return values[i] if i < len(values) else None


@dataclass(frozen=True)
class SeriesColumn:
    """One column of a trend's layers table, or with ``each_checkpoint`` one per checkpoint.

    ``field``: the CSV header; ``title``: the markdown and HTML header; ``short``: the
    terminal header (default the title); ``key``: the HTML sort key (default the field). In
    a per-checkpoint entry these are templates of the checkpoint's ``{label}`` (its step,
    else its name) and index ``{i}``. ``numeric``: right-aligned and sorted as a number;
    ``no_wrap``: the terminal keeps the cell on one line (cut with an ellipsis), ``fold``:
    it folds a long cell. Each cell function gets the row and the checkpoint's index (0 in
    a column that is not per checkpoint).
    """

    field: str
    title: str
    short: str = ""
    key: str = ""
    numeric: bool = False
    each_checkpoint: bool = False
    no_wrap: bool = False
    fold: bool = False
    table: Callable[[SeriesRow, int], str | Text] | None = None
    markdown: Callable[[SeriesRow, int], str] | None = None
    html: Callable[[SeriesRow, int], Cell] | None = None
    csv: Callable[[SeriesRow, int], Any] | None = None

    def cell(self, view: SeriesView) -> Callable[[SeriesRow, int], Any] | None:
        cells: dict[SeriesView, Callable[[SeriesRow, int], Any] | None] = {
            "table": self.table,
            "markdown": self.markdown,
            "html": self.html,
            "csv": self.csv,
        }
        return cells[view]


@dataclass(frozen=True)
class SeriesSlot:
    """A column as a view draws it: its entry and, in a per-checkpoint one, the checkpoint
    (index and label)."""

    column: SeriesColumn
    at: int = 0
    label: str = ""

    def _name(self, template: str, label: str) -> str:
        return template.format(i=self.at, label=label) if self.column.each_checkpoint else template

    @property
    def field(self) -> str:
        return self._name(self.column.field, self.label)

    @property
    def header(self) -> str:
        """The terminal header."""
        return self._name(self.column.short or self.column.title, self.label)

    @property
    def markdown_header(self) -> str:
        return self._name(self.column.title, md_cell(self.label))

    @property
    def html_column(self) -> Column:
        key = self._name(self.column.key or self.column.field, self.label)
        return Column(key, self._name(self.column.title, self.label), self.column.numeric)

    def value(self, view: SeriesView, row: SeriesRow) -> Any:
        cell = self.column.cell(view)
        assert cell is not None, self.column.field
        return cell(row, self.at)


def _alpha_text(row: SeriesRow, i: int) -> Text:
    """The terminal alpha, coloured by band; reversed at a checkpoint the layer jumped to."""
    alpha = _at(row.series.alphas, i)
    jumped = any(jump.at == i for jump in row.series.jumps)
    return Text(fmt(alpha, 2), style=alpha_style(alpha, row.thresholds) + (" bold reverse" if jumped else ""))


#: The columns of a trend's layers table, in order. The terminal leads with the block and
#: the short name; markdown, HTML and CSV name the layer in full and give its kind; only
#: CSV has the distance from init. The terminal names the flags (their evidence is listed
#: under the table); the other views give the evidence in the cell.
SERIES_COLUMNS: tuple[SeriesColumn, ...] = (
    SeriesColumn(
        "block",
        "blk",
        numeric=True,
        no_wrap=True,
        table=lambda row, _: "" if (block := block_index(row.series.name)) is None else str(block),
    ),
    SeriesColumn(
        "name",
        "layer",
        key="layer",
        no_wrap=True,
        table=lambda row, _: Text(one_line(row.short)),
        markdown=lambda row, _: f"`{md_cell(row.series.name)}`",
        html=lambda row, _: text_cell(row.series.name),
        csv=lambda row, _: row.series.name,
    ),
    SeriesColumn(
        "kind",
        "kind",
        markdown=lambda row, _: row.series.kind,
        html=lambda row, _: text_cell(row.series.kind),
        csv=lambda row, _: row.series.kind,
    ),
    SeriesColumn(
        "alpha@{label}",
        "α@{label}",
        short="{label}",
        key="at{i}",
        numeric=True,
        each_checkpoint=True,
        table=_alpha_text,
        markdown=lambda row, i: fmt(_at(row.series.alphas, i), 2),
        html=lambda row, i: html_alpha(_at(row.series.alphas, i), row.thresholds),
        csv=lambda row, i: _at(row.series.alphas, i),
    ),
    SeriesColumn(
        "dist_init@{label}",
        "dist_init@{label}",
        numeric=True,
        each_checkpoint=True,
        csv=lambda row, i: _at(row.series.distance_from_init, i),
    ),
    SeriesColumn(
        "flags",
        "flags",
        fold=True,
        table=lambda row, _: Text(", ".join(row.series.flags), style="bold"),
        markdown=lambda row, _: md_cell(flag_text(row.series, row.trend)),
        html=lambda row, _: text_cell(flag_text(row.series, row.trend), "low" if row.series.flags else ""),
        csv=lambda row, _: flag_text(row.series, row.trend),
    ),
)


def series_slots(trend: Trend, view: SeriesView) -> list[SeriesSlot]:
    """The columns ``view`` draws for this trend, in order: a per-checkpoint entry once per
    checkpoint."""
    labels = [checkpoint_label(point) for point in trend.checkpoints]
    return [
        slot
        for column in SERIES_COLUMNS
        if column.cell(view) is not None
        for slot in (
            [SeriesSlot(column, i, label) for i, label in enumerate(labels)]
            if column.each_checkpoint
            else [SeriesSlot(column)]
        )
    ]


def series_rows(
    trend: Trend, series: Sequence[LayerSeries], thresholds: Thresholds, shorts: Sequence[str] | None = None
) -> list[SeriesRow]:
    """One `SeriesRow` per layer, in the order given; ``shorts``: the terminal's names
    (default the full names)."""
    names = shorts if shorts is not None else [s.name for s in series]
    return [SeriesRow(s, short, trend, thresholds) for s, short in zip(series, names)]
