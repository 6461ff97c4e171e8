"""weightscope: weight-spectrum diagnostics for transformer checkpoints.

    >>> import weightscope
    >>> report = weightscope.analyze("model.safetensors")
    >>> report.summary.alpha_median

The public API is imported lazily so that `import weightscope` (and the CLI's start-up)
stays light: numpy/scipy load on first use, torch only for pickle checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "analyze": "weightscope.pipeline",
    "AnalysisOptions": "weightscope.pipeline",
    "inspect": "weightscope.pipeline",
    "Inspection": "weightscope.pipeline",
    "open_checkpoint": "weightscope.checkpoint",
    "Report": "weightscope.report",
    "LayerResult": "weightscope.report",
    "WeightscopeError": "weightscope.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .checkpoint import open_checkpoint
    from .errors import WeightscopeError
    from .pipeline import AnalysisOptions, Inspection, analyze, inspect
    from .report import LayerResult, Report


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'weightscope' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
