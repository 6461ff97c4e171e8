"""Views of a `Comparison`: rich table, CSV and markdown (JSON is its `to_dict`)."""

from __future__ import annotations

import numpy as np
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from weightscope.checkpoint.layers import block_index
from weightscope.commands.compare import Comparison, LayerChange
from weightscope.config import Thresholds
from weightscope.errors import one_line
from weightscope.render.columns import layer_table
from weightscope.render.compare_columns import (
    MARKDOWN,
    TABLE,
    csv_columns,
    pair_columns,
    pair_rows,
    signed,
    verdict_change,
)
from weightscope.render.formats import Formats, csv_text, json_text
from weightscope.render.rows import depth_order, short_names
from weightscope.render.style import fmt


def signed_percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.2f} %"


def ordered_changes(comparison: Comparison) -> list[LayerChange]:
    """The matched layers by depth: embeddings, blocks 0…N, head."""
    order = depth_order([c.kind for c in comparison.layers], [block_index(c.name) for c in comparison.layers])
    return [comparison.layers[i] for i in order]


def comparison_table(comparison: Comparison, thresholds: Thresholds = Thresholds()) -> Table:
    """The terminal table: one line per layer in 120 columns (short names, by depth; the
    kind and the update's stable rank are in JSON, CSV, markdown and HTML)."""
    changes = ordered_changes(comparison)
    names = short_names([c.name for c in changes])
    table = layer_table(Text(one_line(f"weightscope compare: {comparison.a} → {comparison.b}")), names.dropped)
    for column in pair_columns(TABLE, comparison.weights):
        table.add_column(
            column.header,
            justify="right" if column.numeric else "left",
            no_wrap=not column.wrap,
            overflow="fold" if column.wrap else "ellipsis",
        )
    for row in pair_rows(changes, names.names, thresholds):
        table.add_row(*(column.table_cell(row) for column in pair_columns(TABLE, comparison.weights)))
    return table


def _named_list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def summary_lines(comparison: Comparison) -> list[str]:
    """The summary as plain lines, shared by the table view and markdown."""
    s = comparison.summary
    by_name = {change.name: change for change in comparison.layers}
    lines = [
        f"{s.matched} layers matched"
        + (f" (prefixes stripped: {', '.join(comparison.strip_prefix)})" if comparison.strip_prefix else "")
    ]
    if comparison.only_a:
        lines.append(f"only in A ({len(comparison.only_a)}): {_named_list(comparison.only_a)}")
    if comparison.only_b:
        lines.append(f"only in B ({len(comparison.only_b)}): {_named_list(comparison.only_b)}")
    if comparison.unchanged:
        lines.append(
            f"unchanged by the adapter, not recomputed ({len(comparison.unchanged)}): {_named_list(comparison.unchanged)}"
        )
    lines.append(f"median Δalpha {signed(s.delta_alpha_median)}")
    if s.moved_most:
        moved = [f"{name} ({signed(by_name[name].delta_alpha)})" for name in s.moved_most]
        lines.append("alpha moved most: " + ", ".join(moved))
    if s.changed_most:
        changed = []
        for name in s.changed_most:
            update = by_name[name].update
            assert update is not None
            changed.append(
                f"{name} ({fmt(update.relative_norm)}, eff. rank {fmt(update.effective_rank, 1)}/{update.dim})"
            )
        if comparison.mode == "quantization":
            hurt = [
                f"{name} (error {fmt(by_name[name].update.relative_norm)}, Δalpha {signed(by_name[name].delta_alpha)}, "  # type: ignore[union-attr]  # a quantization pair always has an update
                f"λmax {signed_percent(by_name[name].lambda_max_change)}, stable rank {signed_percent(by_name[name].stable_rank_change)})"
                for name in s.changed_most
            ]
            lines.append("hurt most by quantization, ‖W_q − W‖/‖W‖: " + ", ".join(hurt))
            worse = [f"{name} ({verdict_change(by_name[name])})" for name in s.worse]
            lines.append("verdicts worse: " + (", ".join(worse) if worse else "none"))
            return lines
        lines.append("largest updates ‖ΔW‖/‖W‖: " + ", ".join(changed))
        updates = [c.update for c in comparison.layers if c.update is not None and c.update.dim > 0]
        shares = [u.effective_rank / u.dim for u in updates]
        lines.append(
            f"update rank: median effective rank {fmt(float(np.median([u.effective_rank for u in updates])), 1)}, "
            f"median {fmt(float(np.median(shares)) * 100, 1)} % of full rank"
        )
    if s.finetune is not None:
        f = s.finetune
        lines.append(
            f"intrinsic dimension of the update: {f.directions90} directions hold 90 % of ‖ΔW‖² over {f.layers} layers, "
            f"{f.params90:,} of {f.params:,} parameters ({fmt(f.share * 100, 2)} %); "
            f"{f.concentrated} of {f.layers} layers more concentrated than a random update"
        )
    worse = [f"{name} ({verdict_change(by_name[name])})" for name in s.worse]
    lines.append("verdicts worse: " + (", ".join(worse) if worse else "none"))
    return lines


def render_comparison(comparison: Comparison, console: Console, thresholds: Thresholds = Thresholds()) -> None:
    console.print(
        Group(comparison_table(comparison, thresholds), Text("\n".join(map(one_line, summary_lines(comparison)))))
    )


def to_csv(comparison: Comparison) -> str:
    rows = []
    for change in comparison.to_dict()["layers"]:
        update = change.pop("update") or {}
        update.pop("singular_values", None)  # a list: in the JSON, not a CSV cell
        rows.append({**change, **{f"update.{k}": v for k, v in update.items()}})
    return csv_text(csv_columns(), rows)


def to_markdown(comparison: Comparison) -> str:
    columns = pair_columns(MARKDOWN, comparison.weights)
    lines = [f"# weightscope compare: `{comparison.a}` → `{comparison.b}`", ""]
    lines += [f"- {line}" for line in summary_lines(comparison)]
    lines += ["", "| " + " | ".join(column.title for column in columns) + " |", "|" + "---|" * len(columns)]
    for change in ordered_changes(comparison):
        cells = [column.markdown_cell(change) for column in columns]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


#: The text formats of a comparison (`weightscope.render.formats`).
COMPARE_FORMATS: Formats = {"json": json_text, "csv": to_csv, "md": to_markdown}
