"""Machine-readable views of a report: JSON, CSV (one row per layer) and markdown."""

from __future__ import annotations

import json
from typing import Any

from weightscope.render.compare_views import csv_text
from weightscope.render.style import alpha_band, fmt
from weightscope.report import Report

#: The columns of the markdown table, in order (the CSV has every key).
MARKDOWN_COLUMNS = ("name", "kind", "block", "shape", "alpha", "D", "num_tail", "lambda_max", "log_norm", "stable_rank", "verdict")


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"


def _flatten(prefix: str, value: Any, row: dict[str, Any]) -> None:
    """Nested JSON → flat CSV cells: dicts get dotted keys, lists of scalars join with ';'."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, inner, row)
    elif isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        row[prefix] = ";".join("x".join(map(str, v)) if isinstance(v, list) else str(v) for v in value)
    elif isinstance(value, list):
        row[prefix] = json.dumps(value)
    else:
        row[prefix] = value


def to_csv(report: Report) -> str:
    rows = []
    for layer in report.to_dict()["layers"]:
        row: dict[str, Any] = {}
        _flatten("", layer, row)
        row["shape"] = "x".join(str(d) for d in layer["shape"])
        rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    return csv_text(columns, rows)


def to_markdown(report: Report) -> str:
    s = report.summary
    lines = [
        f"# weightscope report: `{report.source}`",
        "",
        f"{s.analysed} layers analysed, {s.failed} failed, {s.skipped} tensors skipped. "
        f"Median alpha **{fmt(s.alpha_median)}** (MAD {fmt(s.alpha_mad)}); "
        f"below 2: {s.below_2}, 2–6: {s.in_2_6}, above 6: {s.above_6}.",
        "",
        "| " + " | ".join(MARKDOWN_COLUMNS) + " |",
        "|" + "---|" * len(MARKDOWN_COLUMNS),
    ]
    for layer in report.layers:
        cells = []
        for column in MARKDOWN_COLUMNS:
            value = getattr(layer, column)
            if column == "shape":
                value = "×".join(map(str, value))
            elif column == "verdict" and not layer.ok:
                value = f"failed: {layer.reason}"
            elif column == "alpha" and value is not None:
                value = f"{fmt(value)} ({alpha_band(value)})"
            cells.append(fmt(value).replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
