"""The default human view: a rich table of layers, coloured by alpha band and verdict,
the robust summary, and a short list of what to look at."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from weightscope.analysis.pipeline import Inspection
from weightscope.errors import one_line
from weightscope.render.measures_views import measures_lines
from weightscope.render.rows import ordered_layers, short_names
from weightscope.render.style import (
    alpha_style,
    band_text,
    fmt,
    layer_number_texts,
    number,
    verdict_style,
)
from weightscope.report import Report


def _text(value: str, style: str = "") -> Text:
    """A cell from a string of the checkpoint: never markup, never a control character."""
    return Text(one_line(value), style=style)


#: (header, justify) of the layer table; numbers are right-aligned with one format per column.
#: The kind is not a column: the short name says it (attention.self.query, mlp.up_proj),
#: and the 10 columns it took keep a 120-column row on one line (JSON/CSV/md/HTML have it).
_COLUMNS = (
    ("blk", "right"),
    ("layer", "left"),
    ("shape", "right"),
    ("alpha", "right"),
    ("D", "right"),
    ("tail", "right"),
    ("σmax²", "right"),
    ("log‖W‖²", "right"),
    ("s.rank", "right"),
    ("verdict", "left"),
)


def update_table(report: Report) -> Table:
    """A LoRA adapter's layers: the update ΔW = s·B·A of each adapted module."""
    table = Table(
        title=_text(f"weightscope: {report.source} (LoRA updates ΔW = s·B·A)"),
        title_justify="left",
        header_style="bold",
    )
    for column in (
        "layer",
        "kind",
        "blk",
        "shape",
        "r",
        "scale",
        "‖ΔW‖_F",
        "σmax",
        "eff. rank",
        "rank90",
        "r used",
        "note",
    ):
        table.add_column(column, justify="left" if column in ("layer", "kind", "note") else "right", overflow="fold")
    for layer in report.layers:
        update = layer.update
        if update is None:  # a modules_to_save tensor or a failed module: its verdict says
            table.add_row(
                _text(layer.name),
                layer.kind,
                fmt(layer.block),
                "×".join(map(str, layer.shape)),
                *[""] * 7,
                _text(layer.reason or layer.verdict or ""),
            )
            continue
        table.add_row(
            _text(layer.name),
            layer.kind,
            fmt(layer.block),
            "×".join(map(str, layer.shape)),
            fmt(update.lora_rank),
            fmt(update.scale),
            fmt(update.norm),
            fmt(update.singular_values[0] if update.singular_values else None),
            fmt(update.effective_rank, 1),
            fmt(update.rank90),
            f"{fmt((update.rank_share or 0) * 100, 0)} %",
            _text(update.note or ""),
        )
    return table


def report_table(report: Report) -> Table:
    """One row per layer, one line per row in 120 columns (`short_names`), by depth; an
    adapter's report is its table of updates (`update_table`)."""
    if any(layer.update is not None for layer in report.layers):
        return update_table(report)
    layers = ordered_layers(report)
    names = short_names([layer.name for layer in layers])
    thresholds = report.thresholds
    table = Table(
        title=_text(f"weightscope: {report.source}"),
        title_justify="left",
        header_style="bold",
        caption=names.dropped or None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    for column, justify in _COLUMNS:
        table.add_column(column, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]  # justify: rich's Literal, our column table holds str
    numbers = layer_number_texts(layers)
    for i, (layer, name) in enumerate(zip(layers, names.names)):
        verdict = layer.verdict or ("ok" if layer.ok else "failed")
        table.add_row(
            fmt(layer.block) if layer.block is not None else "",
            _text(name),
            "×".join(map(str, layer.shape)),
            Text(numbers["alpha"][i], style=alpha_style(layer.alpha, thresholds)),
            numbers["D"][i],
            fmt(layer.num_tail),
            numbers["lambda_max"][i],
            numbers["log_norm"][i],
            numbers["stable_rank"][i],
            Text(verdict, style=verdict_style(verdict) if layer.ok or layer.verdict else "red"),
        )
    return table


def summary_text(report: Report) -> Text:
    s = report.summary
    t = report.thresholds
    low, high, random = number(t.alpha_low), number(t.alpha_high), number(t.alpha_random)
    text = Text()
    text.append(f"{s.analysed} layers analysed, {s.failed} failed, {s.skipped} tensors skipped")
    if s.alpha_mean is None:  # nothing fitted (an adapter's rank-r updates): no alpha figures to show
        return _with_verdicts(text, s.verdicts)
    text.append("\nmedian alpha ")
    text.append(fmt(s.alpha_median, 2), style=alpha_style(s.alpha_median, t) + " bold")
    text.append(f"  (MAD {fmt(s.alpha_mad, 2)}, over {s.robust_layers} layers")
    excluded = [
        f"{n} {why}"
        for n, why in ((s.excluded_untrusted, "untrusted"), (s.excluded_above_8, f"with alpha > {random}"))
        if n
    ]
    text.append(f"; excluded: {', '.join(excluded)}" if excluded else "")
    text.append(f")   mean of all fitted layers {fmt(s.alpha_mean, 2)}\n")
    text.append(f"alpha < {low}: {s.below_2}", style="red" if s.below_2 else "")
    text.append(f"   {band_text(t)}: {s.in_2_6}", style="green")
    text.append(f"   > {high}: {s.above_6}", style="yellow" if s.above_6 else "")
    if s.alpha_median_by_kind:
        text.append(
            "\nmedian alpha by kind: " + ", ".join(f"{k} {fmt(v, 2)}" for k, v in s.alpha_median_by_kind.items())
        )
    if s.alpha_median_by_block:
        text.append("\nmedian alpha by block: ")
        for index, (block, median) in enumerate(s.alpha_median_by_block.items()):
            text.append(", " if index else "")
            text.append(f"{block}: ")
            text.append(fmt(median, 2), style=alpha_style(median, t))
    return _with_verdicts(text, s.verdicts)


def _with_verdicts(text: Text, verdicts: dict[str, int]) -> Text:
    if verdicts:
        text.append("\nverdicts: ")
        for index, (verdict, count) in enumerate(sorted(verdicts.items(), key=lambda kv: -kv[1])):
            text.append(", " if index else "")
            text.append(f"{count} {verdict}", style=verdict_style(verdict))
    return text


#: At most this many layers are named under "what to look at", most actionable first:
#: broken weights before suspicious alphas, unreadable fits last.
LOOK_AT_MAX = 8
LOOK_AT_ORDER = (
    "rank-collapsed",
    "correlation-trap",
    "failed",
    "over-trained",
    "random-like",
    "under-trained",
    "untrusted-fit",
)


def look_at_text(report: Report) -> Text | None:
    """The layers most worth a look (not healthy, worst verdicts first), one line each."""
    flagged = [r for r in ordered_layers(report) if r.verdict not in (None, "healthy")]
    if not flagged:
        return None
    flagged.sort(key=lambda r: LOOK_AT_ORDER.index(r.verdict) if r.verdict in LOOK_AT_ORDER else len(LOOK_AT_ORDER))
    text = Text("what to look at:\n", style="bold")
    for layer in flagged[:LOOK_AT_MAX]:
        text.append(f"  {layer.verdict:<17}", style=verdict_style(layer.verdict))
        reason = layer.reasons[0] if layer.reasons else (layer.reason or "")
        text.append(f"{one_line(layer.name)}\n")
        if reason:
            text.append(f"  {'':<17}{one_line(reason)}\n", style="dim")
    if len(flagged) > LOOK_AT_MAX:
        text.append(f"  … and {len(flagged) - LOOK_AT_MAX} more (see --format json)\n", style="dim")
    return text


def render_report(report: Report, console: Console) -> None:
    parts: list[RenderableType] = [report_table(report), summary_text(report)]
    parts += [_text(line, style="dim") for line in measures_lines(report.measures)]
    look_at = look_at_text(report)
    if look_at is not None:
        parts.append(look_at)
    console.print(Group(*parts))


#: Above this many tensors `inspect` prints plain aligned columns: rich's Table measures
#: and wraps every cell, 3 ms a row (30 s for 10k tensors, measured), where the plain
#: columns take microseconds.
PLAIN_INSPECTION_ROWS = 500


def _roles(inspection: Inspection) -> dict[str, tuple[str, bool]]:
    """What each stored tensor becomes, and whether it is analysed: a layer (kind, block),
    a factor of an adapted module's update ΔW = s·B·A, or skipped with its reason."""
    roles: dict[str, tuple[str, bool]] = {info.name: ("not selected", False) for info in inspection.tensors}
    roles.update({s.name: (f"skipped: {s.reason}", False) for s in inspection.selection.skipped})
    for spec in inspection.selection.layers:
        where = spec.kind + (f", block {spec.block}" if spec.block is not None else "")
        module = spec.lora
        if spec.part is not None:
            source = spec.part.source.name
            parts = roles[source][0] + ", " if roles.get(source, ("", False))[1] else "split: "
            roles[source] = (parts + f"{spec.name.removeprefix(source)} {where}", True)
            continue
        if module is None:
            roles[spec.name] = (where, True)
            continue
        for part, info in (("A", module.a), ("B", module.b), ("DoRA magnitude", module.magnitude)):
            if info is not None:
                roles[info.name] = (f"LoRA {part} of {spec.name} ({where})", True)
    return roles


def render_inspection(inspection: Inspection, console: Console) -> None:
    if len(inspection.tensors) > PLAIN_INSPECTION_ROWS:
        _render_plain_inspection(inspection, console)
        return
    table = Table(title=_text(f"{inspection.source} ({inspection.format})"), title_justify="left", header_style="bold")
    for column in ("tensor", "shape", "dtype", "analysed as"):
        table.add_column(column, overflow="fold")
    roles = _roles(inspection)
    for info in inspection.tensors:
        role, chosen = roles[info.name]
        verdict = Text(role, style="green") if chosen else _text(role, style="dim")
        table.add_row(_text(info.name), "×".join(map(str, info.shape)) or "scalar", _text(info.dtype), verdict)
    console.print(table)
    console.print(
        f"{len(inspection.selection.layers)} of {len(inspection.tensors)} tensors would be analysed, "
        f"{len(inspection.selection.skipped)} skipped"
    )


def _render_plain_inspection(inspection: Inspection, console: Console) -> None:
    """The same columns as the table, as plain text: linear in the number of tensors."""
    roles = _roles(inspection)
    rows = [("tensor", "shape", "dtype", "analysed as")]
    for info in inspection.tensors:
        rows.append(
            (one_line(info.name), "×".join(map(str, info.shape)) or "scalar", info.dtype, one_line(roles[info.name][0]))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{one_line(inspection.source)} ({inspection.format})"]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    ]
    console.out("\n".join(lines), highlight=False)
    console.out(
        f"{len(inspection.selection.layers)} of {len(inspection.tensors)} tensors would be analysed, "
        f"{len(inspection.selection.skipped)} skipped",
        highlight=False,
    )
