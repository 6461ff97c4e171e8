"""A path given to compare, trend or gate: a checkpoint to analyse, or a saved report.

`weightscope analyze -o report.json` once, then `gate report.json`, `compare base.json
ft/` or `trend` over saved reports cost no recompute. A ``.json`` path is a saved report
only when it says so (a ``"schema": "weightscope.…"`` key); any other JSON (a shard index)
is a checkpoint and goes to the reader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from weightscope.analysis.pipeline import ProgressHook, analyze_with
from weightscope.errors import WeightscopeError
from weightscope.execution.plan import Execution
from weightscope.options import AnalysisOptions
from weightscope.report import Report

#: Saved reports are small (a few KB per layer); refuse to parse anything absurd.
_MAX_REPORT_BYTES = 256 * 1024 * 1024


def read_saved_report(path: str | os.PathLike[str]) -> Report | None:
    """The report saved at ``path``, or None when ``path`` is not a saved weightscope report.

    A JSON file that claims a weightscope schema but is not a valid report raises
    `WeightscopeError` (a compare or trend document given where a report is expected, a
    hand-edited file): silently analysing it as a checkpoint would only confuse.
    """
    if not isinstance(path, (str, os.PathLike)):
        return None  # a model or state dict in memory
    path = Path(path)
    if path.suffix.lower() != ".json" or not path.is_file():
        return None
    try:
        if path.stat().st_size > _MAX_REPORT_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None  # not readable JSON: let the checkpoint reader say what it is
    schema = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(schema, str) or not schema.startswith("weightscope."):
        return None
    try:
        return Report.from_dict(data)
    except WeightscopeError as exc:
        raise WeightscopeError(f"{path}: {exc}") from None


def report_for(
    path: str | os.PathLike[str],
    options: AnalysisOptions,
    progress: ProgressHook | None = None,
    execution: Execution = Execution(),
) -> Report:
    """The report of ``path``: loaded when it is a saved report, else analysed now."""
    saved = read_saved_report(path)
    if saved is not None:
        return saved
    return analyze_with(path, options, progress, execution=execution)
