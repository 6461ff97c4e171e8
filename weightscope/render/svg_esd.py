"""The spectrum of a layer as inline SVG, for the HTML report.

Why not the matplotlib PNG: on all-MiniLM-L6-v2 (39 layers) `analyze --html` spent 31 s
of its 33 s drawing 40 matplotlib figures (constrained layout and log-axis tick labels
cost ~0.8 s a figure), against 1.2 s for the analysis itself. The same three panels
(`weightscope.render.esd_data`, shared with `plot_esd`) written as SVG text cost ~5 ms a
layer, stay sharp at any zoom, and weigh ~15 KB instead of ~90 KB of base64 PNG.

Only plain SVG elements with CSS classes (styled by the page) are written: no script,
no external reference. Every drawn element carries a ``data-role`` so tests can find it.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np
from numpy.typing import ArrayLike

from weightscope.render.esd_data import EsdPicture
from weightscope.render.style import fmt

#: Size of one panel in SVG units (CSS pixels at 100 %), and its inner margins.
PANEL_W, PANEL_H = 340, 250
LEFT, RIGHT, TOP, BOTTOM = 54, 12, 24, 40
GAP = 8

#: CSS of the SVG classes (the page includes it once).
SVG_CSS = """
svg.esd { display: block; max-width: 100%; height: auto; font: 11px system-ui, sans-serif; }
svg.esd .frame { fill: none; stroke: #9ca3af; }
svg.esd .tick { stroke: #9ca3af; } svg.esd .grid { stroke: #f0f1f3; }
svg.esd text { fill: #374151; } svg.esd text.ptitle { font-weight: 600; fill: #111827; }
svg.esd .bar { fill: #4c72b0; opacity: .75; }
svg.esd .fit { fill: none; stroke: #d62728; stroke-width: 2.2; }
svg.esd .xmin { stroke: #d62728; stroke-dasharray: 5 3; }
svg.esd .lmax { stroke: #111827; stroke-dasharray: 2 3; }
svg.esd .mp { fill: none; stroke: #2ca02c; stroke-width: 2; }
svg.esd .edge { stroke: #2ca02c; stroke-dasharray: 5 3; stroke-width: 1.4; }
svg.esd .rand { fill: none; stroke: #ff7f0e; stroke-width: 1.6; }
svg.esd .randedge { stroke: #ff7f0e; stroke-dasharray: 7 3 2 3; stroke-width: 1.6; }
svg.esd .spike { stroke: #d62728; stroke-width: 1.6; }
svg.esd .ccdf { fill: none; stroke: #4c72b0; stroke-width: 1.6; }
svg.esd .ccdffit { fill: none; stroke: #d62728; stroke-width: 2; stroke-dasharray: 6 3; }
"""


def _nice_step(span: float) -> float:
    raw = span / 5
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


class _Axes:
    """One panel: data → SVG coordinates, and the elements drawn on it."""

    def __init__(self, index: int, xlim: tuple[float, float], ylim: tuple[float, float], xlog: bool, ylog: bool):
        self.x0 = index * (PANEL_W + GAP) + LEFT
        self.width = PANEL_W - LEFT - RIGHT
        self.y0, self.height = TOP, PANEL_H - TOP - BOTTOM
        self.xlog, self.ylog = xlog, ylog
        self.xlim = (math.log10(xlim[0]), math.log10(xlim[1])) if xlog else xlim
        self.ylim = (math.log10(ylim[0]), math.log10(ylim[1])) if ylog else ylim
        self.parts: list[str] = []

    def px(self, x: float) -> float:
        return float(self.pxs(np.array([x]))[0])

    def py(self, y: float) -> float:
        return float(self.pys(np.array([y]))[0])

    def pxs(self, x: np.ndarray) -> np.ndarray:
        """SVG x of data values (vectorised: a layer has thousands of points)."""
        value = np.log10(np.asarray(x, dtype=np.float64)) if self.xlog else np.asarray(x, dtype=np.float64)
        lo, hi = self.xlim
        return self.x0 + (value - lo) / ((hi - lo) or 1.0) * self.width

    def pys(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        value = np.log10(np.maximum(y, 10 ** self.ylim[0])) if self.ylog else y
        lo, hi = self.ylim
        return self.y0 + self.height - np.clip((value - lo) / ((hi - lo) or 1.0), 0.0, 1.0) * self.height

    def bars(self, edges: np.ndarray, heights: np.ndarray, role: str) -> None:
        base = self.y0 + self.height
        filled = heights > 0
        xs, tops = self.pxs(edges[:-1][filled]), self.pys(heights[filled])
        widths = np.maximum(self.pxs(edges[1:][filled]) - xs, 0.5)
        rects = [
            f'<rect x="{x:.1f}" y="{top:.1f}" width="{w:.1f}" height="{base - top:.1f}"/>'
            for x, top, w in zip(xs.tolist(), tops.tolist(), widths.tolist())
        ]
        self.parts.append(f'<g class="bar" data-role="{role}">' + "".join(rects) + "</g>")

    def line(self, x: ArrayLike, y: ArrayLike, css: str, role: str, label: str = "") -> None:
        xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        keep = (ys > 0 if self.ylog else np.isfinite(ys)) & (xs > 0 if self.xlog else np.isfinite(xs))
        if keep.sum() < 2:
            return
        points = " ".join(map("{:.1f},{:.1f}".format, self.pxs(xs[keep]).tolist(), self.pys(ys[keep]).tolist()))
        self.parts.append(
            f'<polyline class="{css}" data-role="{role}" points="{points}"><title>{escape(label)}</title></polyline>'
        )

    def vline(self, x: float, css: str, role: str, label: str) -> None:
        at = self.px(x)
        self.parts.append(
            f'<line class="{css}" data-role="{role}" x1="{at:.1f}" x2="{at:.1f}" y1="{self.y0}" y2="{self.y0 + self.height}">'
            f"<title>{escape(label)}</title></line>"
        )

    def rug(self, xs: np.ndarray, css: str, role: str, label: str) -> None:
        base = self.y0 + self.height
        marks = "".join(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base - 9}" y2="{base}"/>' for x in self.pxs(xs).tolist())
        self.parts.append(f'<g class="{css}" data-role="{role}"><title>{escape(label)}</title>{marks}</g>')

    def _ticks(self, lo: float, hi: float, log: bool) -> list[tuple[float, str]]:
        if log:
            first, last = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
            stride = max(1, math.ceil((last - first + 1) / 6))
            return [(10.0**k, f"1e{k}" if k not in (0, 1) else str(10**k)) for k in range(first, last + 1, stride)]
        step = _nice_step(hi - lo)
        start = math.ceil(lo / step) * step
        if step < 1e-3:
            return [(v, f"{v:.1e}") for v in np.arange(start, hi + step / 2, step)]
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        return [(v, f"{v:.{decimals}f}") for v in np.arange(start, hi + step / 2, step)]

    def finish(self, title: str, xlabel: str, ylabel: str) -> str:
        base, right = self.y0 + self.height, self.x0 + self.width
        out = [f'<rect class="frame" x="{self.x0}" y="{self.y0}" width="{self.width}" height="{self.height}"/>']
        for value, text in self._ticks(*self.xlim, self.xlog):
            x = self.px(value)
            out.append(
                f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}"/>'
                f'<text x="{x:.1f}" y="{base + 15}" text-anchor="middle">{escape(text)}</text>'
            )
        for value, text in self._ticks(*self.ylim, self.ylog):
            y = self.py(value)
            out.append(
                f'<line class="tick" x1="{self.x0 - 4}" x2="{self.x0}" y1="{y:.1f}" y2="{y:.1f}"/>'
                f'<text x="{self.x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(text)}</text>'
            )
        out.append(
            f'<text x="{(self.x0 + right) / 2:.1f}" y="{base + 32}" text-anchor="middle">{escape(xlabel)}</text>'
        )
        out.append(
            f'<text x="{self.x0 - 44}" y="{self.y0 + self.height / 2:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 {self.x0 - 44} {self.y0 + self.height / 2:.1f})">{escape(ylabel)}</text>'
        )
        out.append(f'<text class="ptitle" x="{self.x0}" y="{self.y0 - 8}">{escape(title)}</text>')
        clip = f'<clipPath id="{{clip}}"><rect x="{self.x0}" y="{self.y0}" width="{self.width}" height="{self.height}"/></clipPath>'
        return (
            "".join(out[:1]) + clip + '<g clip-path="url(#{clip})">' + "".join(self.parts) + "</g>" + "".join(out[1:])
        )


def _log_limits(values: np.ndarray) -> tuple[float, float]:
    positive = values[values > 0]
    lo, hi = float(positive.min()), float(positive.max())
    return (lo / 1.5, hi * 1.5) if hi > lo else (lo / 10, hi * 10)


def esd_svg(picture: EsdPicture, key: str) -> str:
    """The three panels of one layer as one ``<svg>``; ``key`` makes its ids unique on the page."""
    a = picture.loglog
    heights = a.histogram.heights[a.histogram.heights > 0]
    loglog = _Axes(0, (float(a.histogram.edges[0]), float(a.histogram.edges[-1])), _log_limits(heights), True, True)
    loglog.bars(a.histogram.edges, a.histogram.heights, "esd-loglog")
    if a.fit is not None:
        loglog.line(a.fit.x, a.fit.y, "fit", "powerlaw-fit", "fitted power law")
        loglog.vline(float(a.xmin), "xmin", "xmin", f"xmin = {fmt(a.xmin)}")
    loglog.vline(a.lambda_max, "lmax", "lambda-max", f"λmax = {fmt(a.lambda_max)}")

    b = picture.linear
    linear = _Axes(1, (0.0, b.x_high), (0.0, b.y_high or 1.0), False, False)
    linear.bars(b.histogram.edges, b.histogram.heights, "esd-linear")
    if b.randomised is not None:
        edges, values = b.randomised.edges, b.randomised.heights
        linear.line(np.repeat(edges, 2)[1:-1], np.repeat(values, 2), "rand", "randomised", "ESD of the randomised W")
    if b.mp is not None:
        linear.line(b.mp.x, b.mp.y, "mp", "mp-density", "Marchenko–Pastur density of the fitted bulk")
    if b.bulk_edge is not None:
        linear.vline(b.bulk_edge, "edge", "bulk-edge", f"fitted bulk edge {fmt(b.bulk_edge)}")
    if b.randomised_edge is not None:
        linear.vline(
            b.randomised_edge,
            "randedge",
            "randomised-edge",
            f"MP edge of the randomised W {fmt(b.randomised_edge)}: traps lie above it",
        )
    if b.spikes.size:
        linear.rug(b.spikes, "spike", "spikes", f"{b.spikes.size + b.spikes_beyond} spikes above the bulk edge")

    c = picture.ccdf
    ccdf = _Axes(2, _log_limits(c.empirical.x), (float(c.empirical.y.min()) / 1.5, 1.5), True, True)
    ccdf.line(np.repeat(c.empirical.x, 2)[1:], np.repeat(c.empirical.y, 2)[:-1], "ccdf", "ccdf", "empirical CCDF")
    if c.fit is not None:
        ccdf.line(c.fit.x, c.fit.y, "ccdffit", "ccdf-fit", "fitted power law")

    panels = [
        loglog.finish("(a) ESD, log-log", "eigenvalue λ of WᵀW/N", "density"),
        linear.finish("(b) bulk vs Marchenko–Pastur", "eigenvalue λ", "density"),
        ccdf.finish("(c) CCDF", "eigenvalue λ", "P(Λ ≥ λ)"),
    ]
    body = "".join(panel.replace("{clip}", f"clip-{escape(key)}-{i}") for i, panel in enumerate(panels))
    width = 3 * PANEL_W + 2 * GAP
    return (
        f'<svg class="esd" viewBox="0 0 {width} {PANEL_H}" width="{width}" height="{PANEL_H}" '
        f'role="img" aria-label="{escape(picture.name)}">{body}</svg>'
    )
