"""Output formats: the one JSON and the one CSV text of every result type, and what a
format registry is.

Each result type has one registry of its text formats, beside its views
(`weightscope.render.text.REPORT_FORMATS`, `compare_views.COMPARE_FORMATS`,
`trend_views.TREND_FORMATS`, `gate_views.GATE_FORMATS`); every command writes through
its type's registry, so a new format is one entry there.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from weightscope.errors import one_line


class Versioned(Protocol):
    """A result type with a versioned JSON form (`weightscope.report.json_document`)."""

    def to_dict(self) -> dict[str, Any]: ...


#: A result type's text formats: format name → the text of a result in it.
Formats = dict[str, Callable[[Any], str]]


def json_text(result: Versioned) -> str:
    """A result as JSON text: indented, and never NaN or Infinity (not JSON; a result
    holds None where a number is missing)."""
    return json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"


def csv_text(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    """CSV with a header; missing cells and None are empty. Every CSV view (report,
    comparison, trend) writes through here."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    """A CSV cell: names and reasons on one line, with no ``::`` (`one_line`)."""
    return "" if value is None else one_line(value) if isinstance(value, str) else value
