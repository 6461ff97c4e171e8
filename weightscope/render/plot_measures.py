"""The model-level measures over a run, drawn on two axes below the median alpha.

Left: each block's attention-logit bound (max over heads) on a log axis, blocks flagged
`logit-growth` in red. Right: each embedding's TwoNN intrinsic dimension with its
standard error over independent row samples, the phase in the legend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from weightscope.commands.trend import Trend

GROWTH_COLOR = "#c0392b"


def _values(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def draw_measures(trend: Trend, x: np.ndarray, bound_axes: Axes, id_axes: Axes) -> None:
    """Logit bounds per block (left) and embedding intrinsic dimensions (right) over ``x``."""
    for series in trend.attention:
        style = {"color": GROWTH_COLOR, "lw": 2.2} if series.flagged else {"lw": 1.2}
        label = f"block {series.block}" + (" (logit-growth)" if series.flagged else "")
        bound_axes.plot(x, _values(series.bounds), "o-", ms=3, label=label, gid=f"logit-bound-{series.block}", **style)
    if trend.attention:
        bound_axes.set_yscale("log")
        bound_axes.legend(fontsize=7, ncol=2, loc="best")
    else:
        bound_axes.text(
            0.5, 0.5, "no logit bound (heads unknown)", ha="center", va="center", transform=bound_axes.transAxes
        )
    bound_axes.set_title("attention-logit bound ‖W_Qᵀ W_K‖/√d_h (max over heads)", loc="left", fontsize=9.5)
    for cloud in trend.embeddings:
        values, errors = _values(cloud.twonn), _values(cloud.twonn_se)
        id_axes.errorbar(
            x,
            values,
            yerr=errors,
            fmt="o-",
            ms=3,
            capsize=2,
            label=f"{cloud.name} ({cloud.phase})",
            gid=f"intrinsic-dimension-{cloud.name}",
        )
    if trend.embeddings:
        id_axes.legend(fontsize=7, loc="best")
    id_axes.set_title("embedding intrinsic dimension (TwoNN ± SE)", loc="left", fontsize=9.5)
