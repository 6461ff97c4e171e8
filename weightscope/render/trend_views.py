"""Views of a `Trend`: rich tables (checkpoints, then layers × steps) and CSV."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from weightscope.checkpoint.layers import block_index
from weightscope.commands.trend import LayerSeries, Trend
from weightscope.config import Thresholds
from weightscope.errors import one_line
from weightscope.render.formats import Formats, csv_text, json_text
from weightscope.render.measures_views import trend_measure_lines
from weightscope.render.rows import depth_order, short_names
from weightscope.render.style import fmt
from weightscope.render.trend_columns import (
    POINT_COLUMNS,
    flag_text,
    md_cell,
    point_rows,
    run_root,
    series_rows,
    series_slots,
)


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
    slots = series_slots(trend, "table")
    for slot in slots:
        table.add_column(
            slot.header,
            justify="right" if slot.column.numeric else "left",
            no_wrap=slot.column.no_wrap,
            overflow="fold" if slot.column.fold else "ellipsis",
        )
    for row in series_rows(trend, series_list, thresholds, names.names):
        table.add_row(*(slot.value("table", row) for slot in slots))
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
    slots = series_slots(trend, "csv")
    rows = series_rows(trend, trend.layers, Thresholds())
    return csv_text(
        [slot.field for slot in slots], ({slot.field: slot.value("csv", row) for slot in slots} for row in rows)
    )


def to_markdown(trend: Trend) -> str:
    """The checkpoints and the layers × steps alpha table as markdown (a PR comment)."""
    lines = [f"# weightscope trend: `{md_cell(run_root(trend))}`", ""]
    columns = [column for column in POINT_COLUMNS if column.markdown is not None]
    lines += ["| " + " | ".join(column.title for column in columns) + " |", "|" + "---|" * len(columns)]
    for row in point_rows(trend, Thresholds()):
        lines.append(
            "| " + " | ".join(column.markdown(row) for column in columns if column.markdown is not None) + " |"
        )
    slots = series_slots(trend, "markdown")
    lines += ["", "| " + " | ".join(slot.markdown_header for slot in slots) + " |", "|" + "---|" * len(slots)]
    for layer in series_rows(trend, ordered_series(trend), Thresholds()):
        lines.append("| " + " | ".join(slot.value("markdown", layer) for slot in slots) + " |")
    flagged = trend.flagged
    lines += ["", f"{len(trend.checkpoints)} checkpoints, {len(trend.layers)} layers; {len(flagged)} flagged."]
    return "\n".join(lines) + "\n"


#: The text formats of a trend (`weightscope.render.formats`).
TREND_FORMATS: Formats = {"json": json_text, "csv": to_csv, "md": to_markdown}
