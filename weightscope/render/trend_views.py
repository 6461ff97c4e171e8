"""Views of a `Trend`: rich tables (checkpoints, then layers × steps) and CSV."""

from __future__ import annotations

import os
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
from weightscope.render.compare_columns import signed
from weightscope.render.compare_views import csv_text
from weightscope.render.formats import Formats, json_text
from weightscope.render.measures_views import trend_measure_lines
from weightscope.render.rows import depth_order, short_names
from weightscope.render.style import alpha_style, fmt


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


def checkpoints_table(trend: Trend, thresholds: Thresholds = Thresholds()) -> Table:
    root = run_root(trend)
    paths = [os.path.relpath(os.path.abspath(point.path), root) for point in trend.checkpoints]
    table = Table(title=Text(one_line(f"weightscope trend: {root}")), title_justify="left", header_style="bold")
    for column in ("step", "checkpoint", "from", "layers", "median alpha", "MAD", "median log‖W‖²", "verdicts"):
        table.add_column(
            column,
            justify="right" if column in ("step", "layers", "median alpha", "MAD", "median log‖W‖²") else "left",
            overflow="fold",
        )
    for point, path in zip(trend.checkpoints, paths):
        s = point.summary
        table.add_row(
            fmt(point.step),
            Text(one_line(path)),
            point.origin,
            str(s.analysed + s.failed),
            Text(fmt(s.alpha_median), style=alpha_style(s.alpha_median, thresholds)),
            fmt(s.alpha_mad),
            fmt(point.log_norm_median),
            _verdict_text(point),
        )
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
    lines += ["| step | checkpoint | median alpha | MAD | verdicts |", "|---|---|---|---|---|"]
    for point, label in zip(trend.checkpoints, labels):
        s = point.summary
        lines.append(
            f"| {_md(label)} | `{_md(point.path)}` | {fmt(s.alpha_median, 2)} | {fmt(s.alpha_mad, 2)} | {_md(_verdict_text(point))} |"
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
