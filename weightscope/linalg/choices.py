"""The numerics a user may choose — eigenvalue precision and device — and their checks.

Without numpy or torch: the command line declares and validates its options from these
names, and `weightscope analyze --help` or a usage error should not pay numpy's import.
"""

from __future__ import annotations

from weightscope.errors import WeightscopeError

EIG_DTYPES = ("float64", "float32")
#: What a user may ask for: a fixed dtype, or "auto" (float32, float64 where it matters).
EIG_PRECISIONS = ("auto", *EIG_DTYPES)

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def check_precision(precision: str) -> str:
    """Validate an eigenvalue precision name (`EIG_PRECISIONS`); returns it."""
    if precision not in EIG_PRECISIONS:
        raise WeightscopeError(f"eigenvalue dtype must be one of {', '.join(EIG_PRECISIONS)}, got {precision!r}")
    return precision


def fixed_dtype(precision: str) -> str:
    """The dtype for a computation that does not apply the "auto" policy itself (the
    pipeline does, `weightscope.analysis.spectra`): "auto" means float64 there."""
    return "float64" if check_precision(precision) == "auto" else precision


def check_device(choice: str) -> str:
    """``choice`` if it names a device (`DEVICE_CHOICES`), else a `WeightscopeError`.
    The one place a device name is validated (`Execution` checks it when built)."""
    if choice not in DEVICE_CHOICES:
        raise WeightscopeError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    return choice
