"""Plain-text lines for the model-level measures, shared by the table, HTML and markdown views.

One sentence per measure: the attention-logit bound, each embedding's row cloud, and over
a run their series, the distance from initialisation and how alpha moved with it. The
numbers of one report carry how to read them (`ATTENTION_READING`, `CLOUD_READING`): none
has a healthy band, so each says what is normal and what to compare it with.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

import numpy as np

from weightscope.render.style import fmt
from weightscope.report import ModelMeasures
from weightscope.stats.embedding import RowCloud

if TYPE_CHECKING:  # the trend and comparison machinery: not on every `analyze`'s imports
    from weightscope.commands.trend import Trend

#: How to read each model-level number, said once beside it: what is normal, what is a
#: finding, and what to compare it with (none has a band of its own, as alpha has).
ATTENTION_READING = (
    "read: a bound on |q·k|/√d_h per head; a block far above the others, or a bound that grows "
    "over a run (`trend`), points to attention-logit growth; the absolute size alone is no alarm"
)
CLOUD_READING = (
    "read: mean cosine near 0 and a first direction holding a few % mean well-spread rows; a cosine "
    "near 1 or one direction holding most of the variance is a collapse; the intrinsic dimensions "
    "are for comparing checkpoints of one run, not against a fixed value"
)


def _cloud_text(cloud: RowCloud) -> str:
    return (
        f"{cloud.name} ({cloud.rows}×{cloud.dim}): mean cosine {fmt(cloud.mean_cosine)}, first principal direction "
        f"{fmt(cloud.pc1_share * 100, 1)} % of the variance, intrinsic dimension TwoNN {fmt(cloud.twonn, 1)} ± "
        f"{fmt(cloud.twonn_se, 1)}, Levina–Bickel {fmt(cloud.mle, 1)} ± {fmt(cloud.mle_se, 1)} ({cloud.sample} rows "
        f"sampled) — {CLOUD_READING}"
    )


def measures_lines(measures: ModelMeasures | None) -> list[str]:
    """The measures of one report, one sentence each (empty when they were not computed)."""
    if measures is None:
        return []
    attention = measures.attention
    if attention.status == "ok":
        top = max(attention.layers, key=lambda bound: bound.max)
        gains = sum(bound.gain is not None for bound in attention.layers)
        lines = [
            (
                f"attention-logit bound ‖W_Qᵀ W_K‖/√d_h per head ({attention.heads} heads, {attention.kv_heads} kv heads, "
                f"head dim {attention.head_dim}; from {attention.source}): max {fmt(attention.max)} (block {top.block}), "
                f"median {fmt(attention.median)}; norm gain folded in for {gains} of {len(attention.layers)} blocks"
                f" — {ATTENTION_READING}"
            )
        ]
    else:
        lines = [f"attention-logit bound: unavailable ({attention.reason})"]
    lines += [_cloud_text(cloud) for cloud in measures.embeddings]
    return lines + list(measures.notes)


def _series(values: list[float | None], digits: int = 3) -> str:
    known = [v for v in values if v is not None]
    return f"{fmt(known[0], digits)} → {fmt(known[-1], digits)}" if known else "—"


def trend_measure_lines(trend: Trend) -> list[str]:
    """Over a run: logit bounds per block, embedding phases, distance from init, co-movement."""
    lines = []
    if trend.attention:
        parts = [
            f"block {a.block} {_series(a.bounds)} (growth {fmt(a.growth, 2)}/ln step)"
            + (" LOGIT-GROWTH" if a.flagged else "")
            for a in trend.attention
        ]
        lines.append("attention-logit bound (max over heads), first → last: " + "; ".join(parts))
    for e in trend.embeddings:
        peak = f" (peak @{trend.checkpoints[e.peak_at].step})" if e.peak_at is not None else ""
        rises = ", ".join(str(trend.checkpoints[i].step) for i in e.rises)
        lines.append(
            f"{e.name}: intrinsic dimension (TwoNN) {_series(e.twonn, 1)}, phase {e.phase}{peak}; mean cosine "
            f"{_series(e.mean_cosine)}; first principal direction {_series(e.pc1_share)} of the variance"
            + (f"; sudden rise (id-rise) at step {rises}" if rises else "")
        )
    last = [
        (s.name, s.distance_from_init[-1])
        for s in trend.layers
        if s.distance_from_init and s.distance_from_init[-1] is not None
    ]
    if last:
        name, largest = max(last, key=lambda item: item[1])
        lines.append(
            f"distance from init ‖W − W₀‖/‖W₀‖ at the last checkpoint: median {fmt(float(np.median([d for _, d in last])))}, "
            f"largest {fmt(largest)} ({name})"
        )
    for key, label in (
        ("distance_from_init", "distance from init"),
        ("log_spectral_norm", "log λmax"),
        ("shuffle_ks_distance", "shuffle_ks_distance"),
    ):
        rhos = [s.comovement.get(key) for s in trend.layers if s.comovement.get(key) is not None]
        if rhos:
            lines.append(
                f"alpha vs {label} (Spearman over the run, per layer): median {fmt(float(np.median(rhos)), 2)}, "
                f"{sum(r < -0.5 for r in rhos)} of {len(rhos)} layers below −0.5"
            )
    return lines + list(trend.notes)


def lines_html(title: str, lines: list[str]) -> str:
    """A section of sentences for the HTML pages (empty when there are none)."""
    if not lines:
        return ""
    return f"<h2>{escape(title)}</h2><ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"
