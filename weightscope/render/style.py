"""Shared number formatting and the alpha colour bands of every human-facing view."""

from __future__ import annotations

from typing import Any

#: HTSR reading of alpha (DESIGN.md): < 2 possibly over-fit, 2–6 healthy, > 6 under-trained.
ALPHA_LOW = 2.0
ALPHA_HIGH = 6.0


def alpha_band(alpha: float) -> str:
    if alpha < ALPHA_LOW:
        return "low"
    if alpha > ALPHA_HIGH:
        return "high"
    return "ok"


def alpha_style(alpha: float | None) -> str:
    if alpha is None:
        return "dim"
    return {"low": "bold red", "ok": "green", "high": "yellow"}[alpha_band(alpha)]


def fmt(value: Any, digits: int = 3) -> str:
    """Compact human formatting: 3 significant decimals, '—' for missing values."""
    if value is None:
        return "—"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


#: Colour of each verdict in human views.
VERDICT_STYLES = {
    "healthy": "green",
    "under-trained": "yellow",
    "over-trained": "bold red",
    "random-like": "yellow",
    "correlation-trap": "bold magenta",
    "rank-collapsed": "bold magenta",
    "untrusted-fit": "dim",
    "failed": "red",
}


def verdict_style(verdict: str | None) -> str:
    return VERDICT_STYLES.get(verdict or "", "dim")
