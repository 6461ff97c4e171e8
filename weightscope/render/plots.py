"""The matplotlib seam shared by every picture: lazy import, Agg canvas, PNG bytes, colours.

matplotlib is an optional extra (the ``plot`` extra), so nothing here imports it at
module load; `require_matplotlib` turns its absence into a one-line `WeightscopeError`
that tells the user how to install it (the CLI maps that to exit code 2).

Figures are built with the object API on an explicit Agg canvas — pyplot is never
imported — so rendering never looks for a display, never blocks, and keeps no global
figure registry that could leak memory across many layers.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from weightscope.checkpoint.layers import KINDS
from weightscope.config import Thresholds
from weightscope.errors import WeightscopeError, install_hint
from weightscope.io import write_atomic
from weightscope.render.style import band_text

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = install_hint("plot")

#: Pixels per inch of every saved PNG; figure sizes below are in inches at this density,
#: chosen so that 10-pt text is readable at 100 % zoom.
DPI = 100

#: Shading of the healthy alpha band (the report's alpha_low–alpha_high) wherever alpha is on an axis.
BAND_COLOR = "#2ca02c"
BAND_ALPHA = 0.12


def require_matplotlib() -> None:
    """Fail early, with the install line, when the `plot` extra is missing."""
    try:
        import matplotlib  # noqa: F401 - imported only to see whether it is installed
    except ImportError:
        raise WeightscopeError(f"pictures need matplotlib, which is not installed: {INSTALL_HINT}") from None


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (no pyplot, no display), laid out automatically."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG file contents."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def save_png(figure: Figure, path: str | Path) -> Path:
    """Render first, then write atomically: a failed render or a full disk leaves no partial file."""
    return write_atomic(path, png_bytes(figure))


#: Characters of the layer name kept in a picture's file name: NAME_MAX is 255 bytes, and
#: the atomic writer's temporary file adds ~20 to the name.
PNG_NAME_CHARS = 120


def png_file_name(layer_name: str, suffix: str) -> str:
    """A file name for a layer's picture: the layer name with path-unsafe characters
    replaced. A name that had to change (``a/b.weight``, ``ü.weight``) or be cut (300
    characters) gets a digest of the full name, so two layers never share a picture and
    no name is too long for the file system."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", layer_name).strip("._")
    if safe != layer_name or len(safe) > PNG_NAME_CHARS:
        digest = hashlib.sha256(layer_name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        safe = f"{safe[:PNG_NAME_CHARS]}-{digest}".lstrip("-")
    return safe + suffix


#: One fixed, saturated colour per layer kind (the order of `weightscope.checkpoint.layers.KINDS`):
#: matplotlib's tab10, then three dark tones, so every kind reads well on a white page.
KIND_COLORS = dict(
    zip(
        KINDS,
        (
            "#1f77b4",
            "#ff7f0e",
            "#2ca02c",
            "#d62728",
            "#9467bd",
            "#8c564b",
            "#e377c2",
            "#7f7f7f",
            "#bcbd22",
            "#17becf",
            "#393b79",
            "#637939",
            "#843c39",
        ),
        strict=True,
    )
)


def kind_color(kind: str) -> str:
    """The colour of a layer kind, the same in every picture (unknown kinds as "other")."""
    return KIND_COLORS.get(kind, KIND_COLORS["other"])


def tag_artists(artists: Iterable[Artist], gid: str) -> None:
    """Name drawn artists (SVG ids) so that tests and users can find what a picture shows."""
    for artist in artists:
        artist.set_gid(gid)


def shade_alpha_band(axes: Axes, thresholds: Thresholds, *, vertical: bool = False) -> None:
    """Shade the healthy band alpha_low ≤ alpha ≤ alpha_high (alpha on y, or on x with ``vertical``)."""
    span = axes.axvspan if vertical else axes.axhspan
    span(
        thresholds.alpha_low,
        thresholds.alpha_high,
        color=BAND_COLOR,
        alpha=BAND_ALPHA,
        lw=0,
        zorder=0,
        label=f"healthy band {band_text(thresholds)}",
        gid="alpha-band",
    )
