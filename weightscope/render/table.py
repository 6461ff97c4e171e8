"""The default human view: a rich table of layers, coloured by alpha band, and a summary."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..pipeline import Inspection
from ..report import Report
from .style import alpha_style, fmt


def report_table(report: Report) -> Table:
    table = Table(title=f"weightscope: {report.source}", title_justify="left", header_style="bold")
    for column, justify in (
        ("layer", "left"), ("kind", "left"), ("blk", "right"), ("shape", "right"), ("alpha", "right"),
        ("D", "right"), ("tail", "right"), ("λmax", "right"), ("log‖W‖²", "right"),
        ("stable rank", "right"), ("status", "left"),
    ):
        wraps = column in ("layer", "status")
        table.add_column(column, justify=justify, overflow="fold", no_wrap=not wraps, min_width=16 if column == "layer" else None)  # type: ignore[arg-type]
    for layer in report.layers:
        status = Text("ok", style="green") if layer.ok else Text(f"failed: {layer.reason}", style="red")
        table.add_row(
            layer.name,
            layer.kind,
            fmt(layer.block),
            "×".join(map(str, layer.shape)),
            Text(fmt(layer.alpha), style=alpha_style(layer.alpha)),
            fmt(layer.D),
            fmt(layer.num_tail),
            fmt(layer.lambda_max),
            fmt(layer.log_norm),
            fmt(layer.stable_rank, 1),
            status,
        )
    return table


def summary_text(report: Report) -> Text:
    s = report.summary
    text = Text()
    text.append(f"{s.analysed} layers analysed, {s.failed} failed, {s.skipped} tensors skipped\n")
    text.append("median alpha ")
    text.append(fmt(s.alpha_median), style=alpha_style(s.alpha_median) + " bold")
    text.append(f"  (MAD {fmt(s.alpha_mad)}, mean {fmt(s.alpha_mean)})\n")
    text.append(f"alpha < 2: {s.below_2}", style="red" if s.below_2 else "")
    text.append(f"   2–6: {s.in_2_6}", style="green")
    text.append(f"   > 6: {s.above_6}", style="yellow" if s.above_6 else "")
    return text


def render_report(report: Report, console: Console) -> None:
    console.print(Group(report_table(report), summary_text(report)))


def render_inspection(inspection: Inspection, console: Console) -> None:
    table = Table(title=f"{inspection.source} ({inspection.format})", title_justify="left", header_style="bold")
    for column in ("tensor", "shape", "dtype", "analysed as"):
        table.add_column(column, overflow="fold")
    chosen = {spec.name: spec for spec in inspection.selection.layers}
    skipped = {s.name: s.reason for s in inspection.selection.skipped}
    for info in inspection.tensors:
        spec = chosen.get(info.name)
        verdict = (
            Text(f"{spec.kind}" + (f", block {spec.block}" if spec.block is not None else ""), style="green")
            if spec
            else Text(f"skipped: {skipped[info.name]}", style="dim")
        )
        table.add_row(info.name, "×".join(map(str, info.shape)) or "scalar", info.dtype, verdict)
    console.print(table)
    console.print(
        f"{len(inspection.selection.layers)} of {len(inspection.tensors)} tensors would be analysed, "
        f"{len(inspection.selection.skipped)} skipped"
    )
