"""What every human-facing view shares: the alpha band as read from a report's thresholds,
number formats, verdict colours, and names made safe to print.

The band edges are never constants here: they are the `Thresholds` a report was judged
with (`Report.thresholds`), so a report made with ``alpha_high=2.5`` is counted, coloured
and drawn with 2.5 everywhere (tests/test_architecture.py fails if a second definition
of the band comes back).

Numbers: one format per column (`column_texts`; the layer columns' decimals are in
`render.columns`), and the ASCII hyphen-minus for negative numbers everywhere — it is
what CSV, JSON, grep and a copy-paste into Python all read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from weightscope import vocabulary
from weightscope.config import Thresholds


def alpha_band(alpha: float, thresholds: Thresholds) -> str:
    """ "low" (< alpha_low), "high" (> alpha_high) or "ok"."""
    if alpha < thresholds.alpha_low:
        return "low"
    if alpha > thresholds.alpha_high:
        return "high"
    return "ok"


def alpha_style(alpha: float | None, thresholds: Thresholds) -> str:
    if alpha is None:
        return "dim"
    return {"low": "bold red", "ok": "green", "high": "yellow"}[alpha_band(alpha, thresholds)]


def number(value: float) -> str:
    """A threshold as people write it: 2, 2.5, 6 (no trailing zeros)."""
    return f"{value:g}"


def band_text(thresholds: Thresholds) -> str:
    """The healthy band as a label, e.g. "2–6"."""
    return f"{number(thresholds.alpha_low)}–{number(thresholds.alpha_high)}"


MISSING = "—"


def fmt(value: Any, digits: int = 3) -> str:
    """One value on its own: ``digits`` decimals, '—' for missing values.

    Values of 100 and more get one decimal, those ≥ 1e5 or < 1e-3 scientific notation.
    In tables use `column_texts`, which picks one of these formats for the whole column.
    """
    if value is None:
        return MISSING
    if isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, float):
        return _format(value, _style_of([value]), digits)
    return str(value)


def _style_of(values: Sequence[float]) -> str:
    finite = [abs(v) for v in values if v == v and v not in (float("inf"), float("-inf"))]
    nonzero = [v for v in finite if v != 0]
    if nonzero and (max(nonzero) >= 1e5 or min(nonzero) < 1e-3):
        return "sci"
    if finite and max(finite) >= 100:
        return "short"
    return "fixed"


def _format(value: float, style: str, digits: int) -> str:
    if style == "sci":
        return f"{value:.{max(digits - 1, 1)}e}"
    if style == "short":
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def column_texts(values: Sequence[float | int | None], digits: int = 3, signed: bool = False) -> list[str]:
    """A column's values in one format (same decimals on every row), '—' for missing.

    ``signed`` writes '+' before positive values (changes). Integers stay integers.
    """
    floats = [float(v) for v in values if isinstance(v, float)]
    style = _style_of(floats)
    texts = []
    for value in values:
        if value is None:
            texts.append(MISSING)
        elif isinstance(value, (bool, int)):
            texts.append(str(value))
        else:
            text = _format(float(value), style, digits)
            texts.append(("+" + text) if signed and value > 0 else text)
    return texts


def verdict_style(verdict: str | None) -> str:
    """A verdict's colour: its severity's (`weightscope.vocabulary`), so that only what
    the default gate fails looks like a failure."""
    return vocabulary.style(verdict)
