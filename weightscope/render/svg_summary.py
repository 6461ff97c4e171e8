"""Alpha of every layer by depth as inline SVG, for the HTML report.

The same picture as the left panel of `plot_summary.summary_figure` (positions from
`depth_axis`, colour per kind, hollow where alpha has no reading, shape per verdict, the healthy
band and the median), written as SVG text: the matplotlib figure took 0.6–2 s of a page
whose analysis takes ~1.3 s (all-MiniLM-L6-v2), the SVG ~5 ms. Each point names its
layer on hover and links to its spectrum when the page has one.
"""

from __future__ import annotations

import math
from html import escape

from weightscope import vocabulary
from weightscope.errors import one_line
from weightscope.render.plot_summary import (
    depth_axis,
    kind_rank,
    verdict_marker,
)
from weightscope.render.plots import kind_color
from weightscope.render.style import band_text, fmt
from weightscope.report import Report

WIDTH, HEIGHT = 1100, 330
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40
R = 5.0  # marker radius


def _marker(shape: str, x: float, y: float) -> str:
    """SVG of a matplotlib marker name at (x, y)."""
    if shape == "o":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{R}"/>'
    if shape == "s":
        return f'<rect x="{x - R:.1f}" y="{y - R:.1f}" width="{2 * R}" height="{2 * R}"/>'
    offsets = {
        "v": [(-R, -R), (R, -R), (0, R)],
        "^": [(-R, R), (R, R), (0, -R)],
        "D": [(0, -R * 1.2), (R * 1.2, 0), (0, R * 1.2), (-R * 1.2, 0)],
        # a regular pentagon, point up, as matplotlib's "p"
        "p": [(R * 1.1 * math.sin(2 * math.pi * k / 5), -R * 1.1 * math.cos(2 * math.pi * k / 5)) for k in range(5)],
        "X": [(-R, -R), (0, -R / 3), (R, -R), (R / 3, 0), (R, R), (0, R / 3), (-R, R), (-R / 3, 0)],
        "P": [
            (-R / 3, -R),
            (R / 3, -R),
            (R / 3, -R / 3),
            (R, -R / 3),
            (R, R / 3),
            (R / 3, R / 3),
            (R / 3, R),
            (-R / 3, R),
            (-R / 3, R / 3),
            (-R, R / 3),
            (-R, -R / 3),
            (-R / 3, -R / 3),
        ],
    }[shape]
    points = " ".join(f"{x + dx:.1f},{y + dy:.1f}" for dx, dy in offsets)
    return f'<polygon points="{points}"/>'


def alpha_by_depth_svg(report: Report, anchors: dict[str, str]) -> str:
    """The chart; ``anchors`` maps layer names to the ids of their spectra on the page."""
    band = report.thresholds
    fitted = [layer for layer in report.layers if layer.ok and layer.alpha is not None]
    axis = depth_axis([layer.kind for layer in fitted], [layer.block for layer in fitted])
    alphas = [float(layer.alpha) for layer in fitted]  # type: ignore[arg-type]  # fitted: alpha is not None
    y_lo = min([band.alpha_low - 1.0, *(a - 0.5 for a in alphas)])
    y_hi = max([band.alpha_high + 1.0, *(a + 0.5 for a in alphas)])
    x_lo = min(axis.positions + axis.ticks, default=0.0) - 0.6
    x_hi = max(axis.positions + axis.ticks, default=1.0) + 0.6
    width, height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x_lo) / (x_hi - x_lo) * width

    def py(y: float) -> float:
        return TOP + height - (y - y_lo) / (y_hi - y_lo) * height

    out = [
        f'<rect data-role="alpha-band" x="{LEFT}" y="{py(band.alpha_high):.1f}" width="{width}" '
        f'height="{py(band.alpha_low) - py(band.alpha_high):.1f}" fill="#2ca02c" fill-opacity=".12">'
        f"<title>healthy band {band_text(band)}</title></rect>",
        f'<rect x="{LEFT}" y="{TOP}" width="{width}" height="{height}" fill="none" stroke="#9ca3af"/>',
    ]
    step = max(0.5, 10 ** math.floor(math.log10(max(y_hi - y_lo, 1e-9) / 4)))
    step = next(m * step for m in (1, 2, 5, 10) if (y_hi - y_lo) / (m * step) <= 8)
    tick = math.ceil(y_lo / step) * step
    while tick <= y_hi:
        out.append(
            f'<line x1="{LEFT - 4}" x2="{LEFT + width}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" stroke="#eef0f3"/>'
            f'<text x="{LEFT - 7}" y="{py(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
        )
        tick += step
    for value, label in zip(axis.ticks, axis.tick_labels):
        out.append(f'<text x="{px(value):.1f}" y="{TOP + height + 16}" text-anchor="middle">{escape(label)}</text>')
    out.append(f'<text x="{LEFT + width / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(axis.label)}</text>')
    out.append(
        f'<text x="14" y="{TOP + height / 2}" text-anchor="middle" transform="rotate(-90 14 {TOP + height / 2})">alpha</text>'
    )
    median = report.summary.alpha_median
    if median is not None:
        out.append(
            f'<line data-role="median" x1="{LEFT}" x2="{LEFT + width}" y1="{py(median):.1f}" y2="{py(median):.1f}" '
            f'stroke="#111827" stroke-dasharray="6 4"><title>median alpha {fmt(median, 2)}</title></line>'
        )
    order = sorted(range(len(fitted)), key=lambda i: kind_rank(fitted[i].kind))
    for i in order:
        layer = fitted[i]
        color = kind_color(layer.kind)
        fill = color if layer.has_reading else "none"
        tip = escape(one_line(f"{layer.name}: alpha {fmt(layer.alpha, 2)}, {layer.verdict or 'no verdict'}"))
        mark = (
            f'<g data-role="alpha-point" data-verdict="{escape(layer.verdict or "none")}" fill="{fill}" stroke="{color}" '
            f'stroke-width="1.6"><title>{tip}</title>{_marker(verdict_marker(layer.verdict), px(axis.positions[i]), py(alphas[i]))}</g>'
        )
        anchor = anchors.get(layer.name)
        out.append(f'<a href="#{anchor}">{mark}</a>' if anchor else mark)
    return (
        f'<svg class="esd depth" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="alpha of every layer by depth">{"".join(out)}</svg>'
    )


def depth_legend(report: Report) -> str:
    """The legend of `alpha_by_depth_svg` as HTML: kinds (colour), verdicts (shape)."""
    fitted = [layer for layer in report.layers if layer.ok and layer.alpha is not None]
    kinds = sorted({layer.kind for layer in fitted}, key=kind_rank)
    verdicts = sorted({layer.verdict or "none" for layer in fitted})
    items = [
        f'<span><svg width="12" height="12"><circle cx="6" cy="6" r="5" fill="{kind_color(kind)}"/></svg> {escape(kind)}</span>'
        for kind in kinds
    ]
    for verdict in verdicts:
        shape = _marker(verdict_marker(None if verdict == "none" else verdict), 7, 7)
        hollow = "none" if verdict == vocabulary.NO_READING else "#6b7280"
        items.append(
            f'<span><svg width="14" height="14"><g fill="{hollow}" stroke="#6b7280" stroke-width="1.4">{shape}</g></svg> '
            f"{escape(verdict)}</span>"
        )
    items.append(
        f'<span><i class="sw" style="border-color:#2ca02c"></i>healthy band {band_text(report.thresholds)}</span>'
    )
    items.append('<span><i class="sw" style="border-color:#111827;border-top-style:dashed"></i>median alpha</span>')
    return (
        '<p class="legend meta">'
        + "".join(items)
        + " (hollow: no reading of alpha; click a point for its spectrum)</p>"
    )
