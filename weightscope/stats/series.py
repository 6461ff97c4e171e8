"""Numbers over a training run: growth rates on log-time, rank correlation, phases, rises.

Training moves on a log-time scale (checkpoints are usually spaced geometrically, and the
early phase is fast), so rates are taken per unit of log(1 + step). These helpers are
pure numerics on short series (one value per checkpoint); `weightscope.commands.trend`
decides what they mean.
"""

from __future__ import annotations

import itertools

import numpy as np


def log_slope(values: list[float | None], positions: np.ndarray) -> float | None:
    """Least-squares slope of ln(value) on ``positions`` over the positive known values (≥ 3)."""
    known = [(p, v) for p, v in zip(positions, values) if v is not None and v > 0]
    if len(known) < 3:
        return None
    x = np.array([p for p, _ in known], dtype=np.float64)
    y = np.log([v for _, v in known])
    spread = x - x.mean()
    denominator = float(spread @ spread)
    return float(spread @ (y - y.mean()) / denominator) if denominator > 0 else None


def high_outliers(values: list[float | None], k: float, floor: float) -> list[bool]:
    """Which values exceed the median of the others' by more than max(k × MAD, ``floor``).

    Leave-one-out: each value is judged against the median and MAD of the *other* values,
    so one runaway series cannot inflate the MAD that judges it. None is never an outlier.
    """
    out = []
    for index, value in enumerate(values):
        others = np.array([v for j, v in enumerate(values) if j != index and v is not None], dtype=np.float64)
        if value is None or others.size < 2:
            out.append(False)
            continue
        centre = float(np.median(others))
        mad = float(np.median(np.abs(others - centre)))
        out.append(value - centre > max(k * mad, floor))
    return out


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0…n−1 with ties averaged (Spearman's convention)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(values.size, dtype=np.float64)
    for value in np.unique(values):
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: list[float | None], y: list[float | None], min_points: int = 4) -> float | None:
    """Spearman rank correlation over the positions where both are known (≥ ``min_points``)."""
    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    if len(pairs) < min_points:
        return None
    rx = _ranks(np.array([a for a, _ in pairs], dtype=np.float64))
    ry = _ranks(np.array([b for _, b in pairs], dtype=np.float64))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = float(np.sqrt((rx @ rx) * (ry @ ry)))
    return float(rx @ ry / denominator) if denominator > 0 else None


def sudden_rises(values: list[float | None], errors: list[float | None], sigmas: float, share: float) -> list[int]:
    """Indices whose value rose from the previous known one by > ``sigmas`` combined
    standard errors and by > ``share`` of the previous value: a rise beyond the
    estimator's noise and large in itself."""
    known = [(i, v, e or 0.0) for i, (v, e) in enumerate(zip(values, errors)) if v is not None]
    rises = []
    for (_, before, e0), (index, after, e1) in itertools.pairwise(known):
        if after - before > sigmas * float(np.hypot(e0, e1)) and after - before > share * abs(before):
            rises.append(index)
    return rises


def peak_phase(values: list[float | None], errors: list[float | None], sigmas: float = 2.0) -> tuple[str, int | None]:
    """The phase a series went through: ("inflation → compression", peak index) when it rose
    to an inner peak and fell after it (each by > ``sigmas`` standard errors), else
    "inflation" (net rise), "compression" (net fall) or "flat", with None.
    """
    known = [(i, v, e or 0.0) for i, (v, e) in enumerate(zip(values, errors)) if v is not None]
    if len(known) < 2:
        return "flat", None
    peak = max(range(len(known)), key=lambda j: known[j][1])
    index = known[peak][0]

    def beyond(a: tuple[int, float, float], b: tuple[int, float, float]) -> bool:
        return b[1] - a[1] > sigmas * float(np.hypot(a[2], b[2]))

    if 0 < peak < len(known) - 1 and beyond(known[0], known[peak]) and beyond(known[-1], known[peak]):
        return "inflation → compression", index
    if beyond(known[0], known[-1]):
        return "inflation", None
    if beyond(known[-1], known[0]):
        return "compression", None
    return "flat", None
