"""weightscope: weight-spectrum diagnostics for transformer checkpoints.

    >>> import weightscope
    >>> report = weightscope.analyze("model.safetensors")
    >>> report.summary.alpha_median

The public API is imported lazily so that `import weightscope` (and the CLI's start-up)
stays light: numpy loads on first use, torch only for pickle checkpoints, scipy only
for ``vectors=True``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from weightscope._version import __version__

_EXPORTS = {
    "analyze": "weightscope.analysis.pipeline",
    "compare": "weightscope.commands.compare",
    "AnalysisOptions": "weightscope.options",
    "Execution": "weightscope.execution.plan",
    "inspect": "weightscope.analysis.pipeline",
    "Inspection": "weightscope.analysis.pipeline",
    "open_checkpoint": "weightscope.checkpoint",
    "Report": "weightscope.report",
    "LayerResult": "weightscope.report",
    "WeightscopeError": "weightscope.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from weightscope.analysis.pipeline import Inspection, analyze, inspect
    from weightscope.checkpoint import open_checkpoint
    from weightscope.commands.compare import compare
    from weightscope.errors import WeightscopeError
    from weightscope.execution.plan import Execution
    from weightscope.options import AnalysisOptions
    from weightscope.report import LayerResult, Report


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'weightscope' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
