"""The default human view: a rich table of layers, coloured by alpha band and verdict,
the robust summary, and a short list of what to look at."""

from __future__ import annotations

from collections import Counter

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from weightscope import vocabulary
from weightscope.analysis.pipeline import Inspection
from weightscope.errors import one_line
from weightscope.render.columns import TABLE, UPDATES, cell_text, layer_columns, layer_rows, layer_table
from weightscope.render.measures_views import measures_lines
from weightscope.render.rows import ordered_layers, short_names
from weightscope.render.style import (
    alpha_style,
    band_text,
    fmt,
    number,
    verdict_style,
)
from weightscope.report import LayerResult, Report


def update_table(report: Report) -> Table:
    """A LoRA adapter's layers: the update ΔW = s·B·A of each adapted module."""
    table = Table(
        title=cell_text(f"weightscope: {report.source} (LoRA updates ΔW = s·B·A)"),
        title_justify="left",
        header_style="bold",
    )
    columns = layer_columns(UPDATES)
    for column in columns:
        table.add_column(column.title, justify=column.table_justify, overflow="fold")
    for row in layer_rows(report.layers, [layer.name for layer in report.layers], report.thresholds):
        table.add_row(*(column.table_cell(row) for column in columns))
    return table


def report_table(report: Report) -> Table:
    """One row per layer, one line per row in 120 columns (`short_names`), by depth; an
    adapter's report is its table of updates (`update_table`)."""
    if any(layer.update is not None for layer in report.layers):
        return update_table(report)
    layers = ordered_layers(report)
    names = short_names([layer.name for layer in layers])
    thresholds = report.thresholds
    table = layer_table(cell_text(f"weightscope: {report.source}"), names.dropped)
    columns = layer_columns(TABLE)
    for column in columns:
        table.add_column(column.title, justify=column.table_justify, no_wrap=True, overflow="ellipsis")
    for row in layer_rows(layers, names.names, thresholds):
        table.add_row(*(column.table_cell(row) for column in columns))
    return table


def _unread_verdicts(report: Report) -> str:
    """ " (2 no-reading, 1 random-like)": the verdicts of the fitted layers whose alpha has
    no reading, so that the count left out of the median adds up with the verdict counts."""
    unread = Counter(
        layer.verdict or "none"
        for layer in report.layers
        if layer.ok and layer.alpha is not None and not layer.has_reading
    )
    return (
        " ("
        + ", ".join(f"{n} {v}" for v, n in sorted(unread.items(), key=lambda kv: vocabulary.look_at_order(kv[0])))
        + ")"
    )


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
        for n, why in (
            (s.excluded_no_reading, f"without a reading{_unread_verdicts(report)}"),
            (s.excluded_above_8, f"with alpha > {random}"),
        )
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


#: At most this many layers of one verdict are named under "what to look at" (with their
#: own reason); the verdict's meaning and advice are said once for all of them.
LOOK_AT_MAX = 4


def look_at_text(report: Report) -> Text | None:
    """Every verdict but healthy, most severe first (`vocabulary.look_at_order`): what it
    means and what to do (the layers' ``advice``, said once per verdict), then its
    layers, each with the reason of its own verdict."""
    groups: dict[str, list[LayerResult]] = {}
    for layer in ordered_layers(report):
        verdict = layer.verdict or ("failed" if not layer.ok else None)
        if verdict is not None and verdict != "healthy":
            groups.setdefault(verdict, []).append(layer)
    if not groups:
        return None
    text = Text("what to look at:\n", style="bold")
    for verdict in sorted(groups, key=vocabulary.look_at_order):
        layers = groups[verdict]
        text.append(f"  {verdict}", style=verdict_style(verdict) + " bold")
        text.append(f" ({len(layers)} layer{'s' if len(layers) > 1 else ''})\n")
        record = vocabulary.finding(verdict)
        if record is not None:
            text.append(f"    means: {record.meaning}\n    to do: {record.advice}\n")
        else:  # a verdict this version does not know (a newer report): its own advice
            text.append(f"    {one_line(next((layer.advice for layer in layers if layer.advice), ''))}\n")
        for layer in layers[:LOOK_AT_MAX]:
            reason = layer.reasons[0] if layer.reasons and layer.ok else (layer.reason or "")
            text.append(f"    {one_line(layer.name)}")
            text.append(f": {one_line(reason)}\n" if reason else "\n", style="dim")
        if len(layers) > LOOK_AT_MAX:
            text.append(f"    … and {len(layers) - LOOK_AT_MAX} more (see --format json)\n", style="dim")
    return text


def fit_statistics_lines(report: Report) -> list[str]:
    """One line per fitted layer with the statistics behind its reading (``-v``): alpha
    and its standard error, the tail, the KS distance against its critical value, alpha's
    spread in standard errors, the likelihood-ratio tests, and the confidence."""
    lines = []
    for layer in ordered_layers(report):
        trust = layer.fit_trust
        if layer.alpha is None or trust is None:
            continue
        sigma = layer.sigma or 0.0
        spread = f"{trust.alpha_spread / sigma:.2f}σ" if trust.alpha_spread is not None and sigma else "—"
        tests = ", ".join(
            f"vs {name} R {test.R:.2f} p {test.p:.3f}"
            for name, test in (("lognormal", trust.vs_lognormal), ("exponential", trust.vs_exponential))
            if test is not None
        )
        lines.append(
            f"{one_line(layer.name)}: alpha {layer.alpha:.2f} ± {sigma:.2f}, tail {layer.num_tail}, "
            f"KS {fmt(trust.ks_distance)} (critical {fmt(trust.ks_critical)}), spread {spread}, {tests}; "
            f"{layer.confidence or 'no reading'}"
        )
    return lines


def render_report(report: Report, console: Console) -> None:
    parts: list[RenderableType] = [report_table(report), summary_text(report)]
    parts += [cell_text(line, style="dim") for line in measures_lines(report.measures)]
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
    table = Table(
        title=cell_text(f"{inspection.source} ({inspection.format})"), title_justify="left", header_style="bold"
    )
    for column in ("tensor", "shape", "dtype", "analysed as"):
        table.add_column(column, overflow="fold")
    roles = _roles(inspection)
    for info in inspection.tensors:
        role, chosen = roles[info.name]
        verdict = Text(role, style="green") if chosen else cell_text(role, style="dim")
        table.add_row(cell_text(info.name), "×".join(map(str, info.shape)) or "scalar", cell_text(info.dtype), verdict)
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
