"""Output formats: the one JSON text of every result type, and what a format registry is.

Each result type has one registry of its text formats, beside its views
(`weightscope.render.text.REPORT_FORMATS`, `compare_views.COMPARE_FORMATS`,
`trend_views.TREND_FORMATS`, `gate_views.GATE_FORMATS`); every command writes through
its type's registry, so a new format is one entry there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol


class Versioned(Protocol):
    """A result type with a versioned JSON form (`weightscope.report.json_document`)."""

    def to_dict(self) -> dict[str, Any]: ...


#: A result type's text formats: format name → the text of a result in it.
Formats = dict[str, Callable[[Any], str]]


def json_text(result: Versioned) -> str:
    """A result as JSON text: indented, and never NaN or Infinity (not JSON; a result
    holds None where a number is missing)."""
    return json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"
