"""The default human view: a rich table of layers, coloured by alpha band and verdict,
the robust summary, and a short list of what to look at."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from weightscope.pipeline import Inspection
from weightscope.render.style import alpha_style, fmt, verdict_style
from weightscope.report import Report


def report_table(report: Report) -> Table:
    table = Table(title=f"weightscope: {report.source}", title_justify="left", header_style="bold")
    for column, justify in (
        ("layer", "left"), ("kind", "left"), ("blk", "right"), ("shape", "right"), ("alpha", "right"),
        ("D", "right"), ("tail", "right"), ("σmax²", "right"), ("log‖W‖²", "right"),
        ("stable rank", "right"), ("verdict", "left"),
    ):
        wraps = column in ("layer", "verdict")
        table.add_column(column, justify=justify, overflow="fold", no_wrap=not wraps, min_width=16 if column == "layer" else None)  # type: ignore[arg-type]
    for layer in report.layers:
        verdict = layer.verdict or ("ok" if layer.ok else "failed")
        status = Text(verdict, style=verdict_style(verdict) if layer.ok or layer.verdict else "red")
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
    text.append(f"  (MAD {fmt(s.alpha_mad)}, over {s.robust_layers} layers")
    excluded = [f"{n} {why}" for n, why in ((s.excluded_untrusted, "untrusted"), (s.excluded_above_8, "with alpha > 8")) if n]
    text.append(f"; excluded: {', '.join(excluded)}" if excluded else "")
    text.append(f")   mean of all fitted layers {fmt(s.alpha_mean)}\n")
    text.append(f"alpha < 2: {s.below_2}", style="red" if s.below_2 else "")
    text.append(f"   2–6: {s.in_2_6}", style="green")
    text.append(f"   > 6: {s.above_6}", style="yellow" if s.above_6 else "")
    if s.alpha_median_by_kind:
        text.append("\nmedian alpha by kind: " + ", ".join(f"{k} {fmt(v, 2)}" for k, v in s.alpha_median_by_kind.items()))
    if s.verdicts:
        text.append("\nverdicts: ")
        for index, (verdict, count) in enumerate(sorted(s.verdicts.items(), key=lambda kv: -kv[1])):
            text.append(", " if index else "")
            text.append(f"{count} {verdict}", style=verdict_style(verdict))
    return text


#: At most this many layers are named under "what to look at", most actionable first:
#: broken weights before suspicious alphas, unreadable fits last.
LOOK_AT_MAX = 8
LOOK_AT_ORDER = (
    "rank-collapsed", "correlation-trap", "failed", "over-trained", "random-like", "under-trained", "untrusted-fit",
)


def look_at_text(report: Report) -> Text | None:
    """The layers most worth a look (not healthy, worst verdicts first), one line each."""
    flagged = [r for r in report.layers if r.verdict not in (None, "healthy")]
    if not flagged:
        return None
    flagged.sort(key=lambda r: LOOK_AT_ORDER.index(r.verdict) if r.verdict in LOOK_AT_ORDER else len(LOOK_AT_ORDER))
    text = Text("what to look at:\n", style="bold")
    for layer in flagged[:LOOK_AT_MAX]:
        text.append(f"  {layer.verdict:<17}", style=verdict_style(layer.verdict))
        reason = layer.reasons[0] if layer.reasons else (layer.reason or "")
        text.append(f"{layer.name}: {reason}\n")
    if len(flagged) > LOOK_AT_MAX:
        text.append(f"  … and {len(flagged) - LOOK_AT_MAX} more (see --format json)\n", style="dim")
    return text


def render_report(report: Report, console: Console) -> None:
    parts = [report_table(report), summary_text(report)]
    look_at = look_at_text(report)
    if look_at is not None:
        parts.append(look_at)
    console.print(Group(*parts))


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
