"""Machine-readable views of a report: JSON, CSV (one row per layer) and markdown."""

from __future__ import annotations

import json
from typing import Any

from weightscope.analysis.pipeline import Inspection
from weightscope.render.columns import MARKDOWN, layer_columns, layer_rows
from weightscope.render.formats import Formats, csv_text, json_text
from weightscope.render.rows import ordered_layers
from weightscope.render.style import (
    band_text,
    fmt,
    number,
)
from weightscope.report import Report


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


def inspection_json(inspection: Inspection) -> str:
    """`weightscope inspect -f json`: every tensor, and what `analyze` would do with it."""
    chosen = {spec.name: spec for spec in inspection.selection.layers}
    skipped = {s.name: s.reason for s in inspection.selection.skipped}
    tensors = []
    for info in inspection.tensors:
        spec = chosen.get(info.name)
        entry: dict[str, Any] = {"name": info.name, "shape": list(info.shape), "dtype": info.dtype, "file": info.file}
        if spec is not None:
            entry.update(analysed=True, kind=spec.kind, block=spec.block)
        else:
            entry.update(analysed=False, skipped_because=skipped.get(info.name))
        tensors.append(entry)
    data = {
        "source": inspection.source,
        "format": inspection.format,
        "analysed": len(inspection.selection.layers),
        "skipped": len(inspection.selection.skipped),
        "tensors": tensors,
    }
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def to_markdown(report: Report) -> str:
    s = report.summary
    t = report.thresholds
    columns = layer_columns(MARKDOWN)
    lines = [
        f"# weightscope report: `{report.source}`",
        "",
        f"{s.analysed} layers analysed, {s.failed} failed, {s.skipped} tensors skipped. "
        f"Median alpha **{fmt(s.alpha_median)}** (MAD {fmt(s.alpha_mad)}); "
        f"below {number(t.alpha_low)}: {s.below_2}, {band_text(t)}: {s.in_2_6}, above {number(t.alpha_high)}: {s.above_6}.",
        "",
        "| " + " | ".join(column.field for column in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    layers = ordered_layers(report)
    for row in layer_rows(layers, [layer.name for layer in layers], t):
        cells = [column.markdown_cell(row).replace("|", "\\|") for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: The text formats of a report (`weightscope.render.formats`).
REPORT_FORMATS: Formats = {"json": json_text, "csv": to_csv, "md": to_markdown}
