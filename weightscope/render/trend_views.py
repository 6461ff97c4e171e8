"""Views of a `Trend`: rich tables (checkpoints, then layers × steps) and CSV."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from weightscope.commands.trend import FLAG_FALL_THEN_RISE, FLAG_JUMP, LayerSeries, Trend, TrendPoint
from weightscope.render.compare_views import csv_text, signed
from weightscope.render.measures_views import trend_measure_lines
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
            parts.append(f"fall-then-rise (low @{labels[dip.low_at]}: −{fmt(dip.fall)}, +{fmt(dip.rise)})")
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


def checkpoints_table(trend: Trend) -> Table:
    root = run_root(trend)
    paths = [os.path.relpath(os.path.abspath(point.path), root) for point in trend.checkpoints]
    table = Table(title=f"weightscope trend: {root}", title_justify="left", header_style="bold")
    for column in ("step", "checkpoint", "from", "layers", "median alpha", "MAD", "median log‖W‖²", "verdicts"):
        table.add_column(column, justify="right" if column in ("step", "layers", "median alpha", "MAD", "median log‖W‖²") else "left", overflow="fold")
    for point, path in zip(trend.checkpoints, paths):
        s = point.summary
        table.add_row(
            fmt(point.step),
            path,
            point.origin,
            str(s.analysed + s.failed),
            Text(fmt(s.alpha_median), style=alpha_style(s.alpha_median)),
            fmt(s.alpha_mad),
            fmt(point.log_norm_median),
            _verdict_text(point),
        )
    return table


def layers_table(trend: Trend) -> Table:
    table = Table(title="alpha per layer and step", title_justify="left", header_style="bold")
    table.add_column("layer", overflow="fold")
    for point in trend.checkpoints:
        table.add_column(checkpoint_label(point), justify="right")
    table.add_column("flags", overflow="fold")
    for series in trend.layers:
        jumped = {jump.at for jump in series.jumps}
        cells = [
            Text(fmt(alpha), style=alpha_style(alpha) + (" bold reverse" if i in jumped else ""))
            for i, alpha in enumerate(series.alphas)
        ]
        table.add_row(series.name, *cells, Text(", ".join(series.flags), style="bold"))
    return table


def render_trend(trend: Trend, console: Console) -> None:
    console.print(checkpoints_table(trend))
    console.print(layers_table(trend))
    flagged = trend.flagged
    console.print(
        f"{len(trend.checkpoints)} checkpoints, {len(trend.layers)} layers; {len(flagged)} flagged "
        f"(jumps: alpha change per log-step > {fmt(trend.jump_k)} × MAD off the layer's median, and ≥ {fmt(trend.min_swing)})",
        soft_wrap=True,
    )
    for series in flagged:
        console.print(f"  {series.name}: {flag_text(series, trend)}", soft_wrap=True)
    for line in trend_measure_lines(trend):
        console.print(line, soft_wrap=True)


def to_csv(trend: Trend) -> str:
    """The layers × steps alpha matrix, one row per layer, with its flags."""
    steps = [f"alpha@{checkpoint_label(point)}" for point in trend.checkpoints]
    distances = [f"dist_init@{checkpoint_label(point)}" for point in trend.checkpoints]
    rows = [
        {"name": s.name, "kind": s.kind, **dict(zip(steps, s.alphas)), **dict(zip(distances, s.distance_from_init)),
         "flags": flag_text(s, trend)}
        for s in trend.layers
    ]
    return csv_text(["name", "kind", *steps, *distances, "flags"], rows)
