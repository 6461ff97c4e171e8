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

#: Stored dtypes whose rank thresholds (their rounding noise, ~2e-6·λmax) lie far inside
#: float32's error band (0.25·M·eps₃₂·λmax = 1.2e-4·λmax at M = 4096); see `solve_dtype`.
FLOAT64_FIRST_DTYPES = ("F16", "BF16")
#: Smallest aspect ratio (smaller side / larger) at which such a layer is solved in float64
#: first under "auto": from about there the spectrum reaches down into that band.
FLOAT64_FIRST_ASPECT = 0.8


def check_precision(precision: str) -> str:
    """Validate an eigenvalue precision name (`EIG_PRECISIONS`); returns it."""
    if precision not in EIG_PRECISIONS:
        raise WeightscopeError(f"eigenvalue dtype must be one of {', '.join(EIG_PRECISIONS)}, got {precision!r}")
    return precision


def fixed_dtype(precision: str) -> str:
    """The dtype for a computation that does not apply the "auto" policy itself (the
    pipeline does, `weightscope.analysis.spectra`): "auto" means float64 there."""
    return "float64" if check_precision(precision) == "auto" else precision


def solve_dtype(precision: str, stored_dtype: str, shape: tuple[int, ...]) -> str:
    """The dtype a layer's eigenvalues are solved in first: the fixed one asked for, and
    under "auto" float32 — but float64 outright for a near-square F16/BF16 layer.

    Why: "auto" reports float64's rank (`weightscope.analysis.spectra`), counting in float64
    the eigenvalues float32 cannot place. A 16-bit layer's rank thresholds (its rounding
    noise) lie far inside float32's error band, and a near-square layer has eigenvalues
    down to zero (Marchenko–Pastur's lower edge (1 − √(M/N))² → 0), so the count always
    runs there: on the Llama-7B block's 4096² BF16 layers 208 eigenvalues lay in the band
    and the count cost 7.2 s on top of the float32 solve's 5.2 s, against 9.4 s for a
    float64 solve alone (process CPU, one layer, quiet 2-core VM). Its 11008×4096 layers
    (aspect 0.37) had none in the band, and stay float32. The choice depends on the
    stored dtype and shape alone, so the scheduler budgets the float64 Gram matrix before
    the layer starts (`weightscope.execution.plan.working_set`)."""
    if check_precision(precision) != "auto":
        return precision
    small, large = sorted(shape[:2])
    if stored_dtype in FLOAT64_FIRST_DTYPES and large and small >= FLOAT64_FIRST_ASPECT * large:
        return "float64"
    return "float32"


def check_device(choice: str) -> str:
    """``choice`` if it names a device (`DEVICE_CHOICES`), else a `WeightscopeError`.
    The one place a device name is validated (`Execution` checks it when built)."""
    if choice not in DEVICE_CHOICES:
        raise WeightscopeError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    return choice
