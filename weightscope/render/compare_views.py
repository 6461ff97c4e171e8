"""Views of a `Comparison`: rich table, CSV and markdown (JSON is its `to_dict`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from weightscope.commands.compare import Comparison, LayerChange
from weightscope.render.style import alpha_style, fmt

#: CSV columns, in order; update.* are empty when no weights were compared.
CSV_COLUMNS = (
    "name", "name_a", "name_b", "kind", "alpha_a", "alpha_b", "delta_alpha", "delta_log_norm",
    "delta_log_spectral_norm", "verdict_a", "verdict_b", "worse", "update.relative_norm",
    "update.stable_rank", "update.effective_rank", "update.rank90", "update.dim", "update.rank99",
    "update.random_rank90", "update.concentrated", "update.params90", "update.params", "note",
)


def csv_text(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    """CSV with a header; missing cells and None are empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def signed(value: float | None) -> str:
    return "—" if value is None else ("+" if value > 0 else "") + fmt(value)


def verdict_change(change: LayerChange) -> str:
    if change.verdict_a is None and change.verdict_b is None:
        return "—"
    if change.verdict_a == change.verdict_b:
        return f"= {change.verdict_b}"
    return f"{change.verdict_a or '—'} → {change.verdict_b or '—'}"


def _update_cells(change: LayerChange) -> list[str]:
    update = change.update
    if update is None:
        return [change.note or "—", "", "", ""]
    return [fmt(update.relative_norm), fmt(update.effective_rank, 1), fmt(update.stable_rank, 1), f"{update.rank90}/{update.dim}"]


def _headers(comparison: Comparison) -> list[str]:
    headers = ["layer", "kind", "alpha A", "alpha B", "Δalpha", "Δlog‖W‖²", "Δlog λmax", "verdict"]
    return headers + (["‖ΔW‖/‖W‖", "eff. rank", "stable rank", "rank90"] if comparison.weights else [])


def _cells(change: LayerChange, weights: bool) -> list[str]:
    """One row's cells in `_headers` order."""
    cells = [
        change.name, change.kind, fmt(change.alpha_a), fmt(change.alpha_b), signed(change.delta_alpha),
        signed(change.delta_log_norm), signed(change.delta_log_spectral_norm), verdict_change(change),
    ]
    return cells + (_update_cells(change) if weights else [])


def comparison_table(comparison: Comparison) -> Table:
    table = Table(title=f"weightscope compare: {comparison.a} → {comparison.b}", title_justify="left", header_style="bold")
    for column in _headers(comparison):
        table.add_column(column, justify="left" if column in ("layer", "kind", "verdict") else "right", overflow="fold")
    for change in comparison.layers:
        styles = {2: alpha_style(change.alpha_a), 3: alpha_style(change.alpha_b), 7: "bold red" if change.worse else ""}
        table.add_row(*(Text(cell, style=styles.get(i, "")) for i, cell in enumerate(_cells(change, comparison.weights))))
    return table


def _named_list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def summary_lines(comparison: Comparison) -> list[str]:
    """The summary as plain lines, shared by the table view and markdown."""
    s = comparison.summary
    by_name = {change.name: change for change in comparison.layers}
    lines = [f"{s.matched} layers matched" + (f" (prefixes stripped: {', '.join(comparison.strip_prefix)})" if comparison.strip_prefix else "")]
    if comparison.only_a:
        lines.append(f"only in A ({len(comparison.only_a)}): {_named_list(comparison.only_a)}")
    if comparison.only_b:
        lines.append(f"only in B ({len(comparison.only_b)}): {_named_list(comparison.only_b)}")
    lines.append(f"median Δalpha {signed(s.delta_alpha_median)}")
    if s.moved_most:
        moved = [f"{name} ({signed(by_name[name].delta_alpha)})" for name in s.moved_most]
        lines.append("alpha moved most: " + ", ".join(moved))
    if s.changed_most:
        changed = []
        for name in s.changed_most:
            update = by_name[name].update
            assert update is not None
            changed.append(f"{name} ({fmt(update.relative_norm)}, eff. rank {fmt(update.effective_rank, 1)}/{update.dim})")
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


def render_comparison(comparison: Comparison, console: Console) -> None:
    console.print(Group(comparison_table(comparison), Text("\n".join(summary_lines(comparison)))))


def to_csv(comparison: Comparison) -> str:
    rows = []
    for change in comparison.to_dict()["layers"]:
        update = change.pop("update") or {}
        rows.append({**change, **{f"update.{k}": v for k, v in update.items()}})
    return csv_text(CSV_COLUMNS, rows)


def to_markdown(comparison: Comparison) -> str:
    header = _headers(comparison)
    lines = [f"# weightscope compare: `{comparison.a}` → `{comparison.b}`", ""]
    lines += [f"- {line}" for line in summary_lines(comparison)]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for change in comparison.layers:
        cells = _cells(change, comparison.weights)
        if change.worse:
            cells[7] = f"**worse:** {cells[7]}"
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
