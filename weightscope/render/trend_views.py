"""Views of a `Trend`: rich tables (checkpoints, then layers × steps) and CSV."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
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
from weightscope.render.compare_views import csv_text
from weightscope.render.formats import Formats, json_text
from weightscope.render.measures_views import trend_measure_lines
from weightscope.render.rows import depth_order, short_names
from weightscope.render.style import alpha_band, alpha_style, fmt


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
        markdown=lambda row: _md(row.label),
        html=lambda row: number_cell(row.point.step),
    ),
    PointColumn(
        "checkpoint",
        "checkpoint",
        table=lambda row: Text(one_line(row.relative)),
        markdown=lambda row: f"`{_md(row.point.path)}`",
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
        markdown=lambda row: _md(_verdict_text(row.point)),
        html=lambda row: text_cell(_verdict_counts(row.point)),
    ),
)


def point_rows(trend: Trend, thresholds: Thresholds) -> list[PointRow]:
    root = run_root(trend)
    return [PointRow(point, checkpoint_label(point), root, thresholds) for point in trend.checkpoints]


def checkpoints_table(trend: Trend, thresholds: Thresholds = Thresholds()) -> Table:
    columns = [column for column in POINT_COLUMNS if column.table is not None]
    table = Table(
        title=Text(one_line(f"weightscope trend: {run_root(trend)}")), title_justify="left", header_style="bold"
    )
    for column in columns:
        table.add_column(column.title, justify="right" if column.numeric else "left", overflow="fold")
    for row in point_rows(trend, thresholds):
        table.add_row(*(column.table(row) for column in columns if column.table is not None))
    return table


def ordered_series(trend: Trend) -> list[LayerSeries]:
    """The layers of a trend by depth: embeddings, blocks 0…N, head."""
    order = depth_order([s.kind for s in trend.layers], [block_index(s.name) for s in trend.layers])
    return [trend.layers[i] for i in order]


def layers_table(trend: Trend, thresholds: Thresholds = Thresholds()) -> Table:
    series_list = ordered_series(trend)
    names = short_names([s.name for s in series_list])
    table = Table(
        title="alpha per layer and step",
        title_justify="left",
        header_style="bold",
        caption=names.dropped or None,
        caption_justify="left",
    )
    table.add_column("blk", justify="right", no_wrap=True)
    table.add_column("layer", no_wrap=True, overflow="ellipsis")
    for point in trend.checkpoints:
        table.add_column(checkpoint_label(point), justify="right")
    table.add_column("flags", overflow="fold")
    for series, name in zip(series_list, names.names):
        jumped = {jump.at for jump in series.jumps}
        cells = [
            Text(fmt(alpha, 2), style=alpha_style(alpha, thresholds) + (" bold reverse" if i in jumped else ""))
            for i, alpha in enumerate(series.alphas)
        ]
        block = block_index(series.name)
        table.add_row(
            "" if block is None else str(block),
            Text(one_line(name)),
            *cells,
            Text(", ".join(series.flags), style="bold"),
        )
    return table


def render_trend(trend: Trend, console: Console, thresholds: Thresholds = Thresholds()) -> None:
    console.print(checkpoints_table(trend, thresholds))
    console.print(layers_table(trend, thresholds))
    flagged = trend.flagged
    console.print(
        Text(
            f"{len(trend.checkpoints)} checkpoints, {len(trend.layers)} layers; {len(flagged)} flagged "
            f"(jumps: alpha change per log-step > {fmt(trend.jump_k)} × MAD off the layer's median, and ≥ {fmt(trend.min_swing)})"
        ),
        soft_wrap=True,
    )
    for series in flagged:
        console.print(Text(one_line(f"  {series.name}: {flag_text(series, trend)}")), soft_wrap=True)
    for line in trend_measure_lines(trend):
        console.print(Text(one_line(line)), soft_wrap=True)


def to_csv(trend: Trend) -> str:
    """The layers × steps alpha matrix, one row per layer, with its flags."""
    steps = [f"alpha@{checkpoint_label(point)}" for point in trend.checkpoints]
    distances = [f"dist_init@{checkpoint_label(point)}" for point in trend.checkpoints]
    rows = [
        {
            "name": s.name,
            "kind": s.kind,
            **dict(zip(steps, s.alphas)),
            **dict(zip(distances, s.distance_from_init)),
            "flags": flag_text(s, trend),
        }
        for s in trend.layers
    ]
    return csv_text(["name", "kind", *steps, *distances, "flags"], rows)


def _md(text: str) -> str:
    return one_line(text).replace("|", "\\|")


def to_markdown(trend: Trend) -> str:
    """The checkpoints and the layers × steps alpha table as markdown (a PR comment)."""
    labels = [checkpoint_label(point) for point in trend.checkpoints]
    lines = [f"# weightscope trend: `{_md(run_root(trend))}`", ""]
    columns = [column for column in POINT_COLUMNS if column.markdown is not None]
    lines += ["| " + " | ".join(column.title for column in columns) + " |", "|" + "---|" * len(columns)]
    for row in point_rows(trend, Thresholds()):
        lines.append(
            "| " + " | ".join(column.markdown(row) for column in columns if column.markdown is not None) + " |"
        )
    lines += ["", "| layer | kind | " + " | ".join(f"α@{_md(label)}" for label in labels) + " | flags |"]
    lines.append("|" + "---|" * (len(labels) + 3))
    for series in ordered_series(trend):
        alphas = " | ".join(fmt(alpha, 2) for alpha in series.alphas)
        lines.append(f"| `{_md(series.name)}` | {series.kind} | {alphas} | {_md(flag_text(series, trend))} |")
    flagged = trend.flagged
    lines += ["", f"{len(trend.checkpoints)} checkpoints, {len(trend.layers)} layers; {len(flagged)} flagged."]
    return "\n".join(lines) + "\n"


#: The text formats of a trend (`weightscope.render.formats`).
TREND_FORMATS: Formats = {"json": json_text, "csv": to_csv, "md": to_markdown}
