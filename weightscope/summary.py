"""Model-level figures from per-layer results.

The median and the median absolute deviation (MAD) are the headline: one broken layer
must not move the model's number. The mean is kept, labelled as such, for comparison.
"""

from __future__ import annotations

import numpy as np

from .report import LayerResult, SkippedTensor, Summary


def summarize(layers: list[LayerResult], skipped: list[SkippedTensor]) -> Summary:
    alphas = np.array([r.alpha for r in layers if r.ok and r.alpha is not None], dtype=np.float64)
    has_alpha = alphas.size > 0
    median = float(np.median(alphas)) if has_alpha else None
    return Summary(
        analysed=sum(r.ok for r in layers),
        skipped=len(skipped),
        failed=sum(not r.ok for r in layers),
        alpha_median=median,
        alpha_mad=float(np.median(np.abs(alphas - median))) if has_alpha else None,
        alpha_mean=float(alphas.mean()) if has_alpha else None,
        below_2=int((alphas < 2).sum()),
        in_2_6=int(((alphas >= 2) & (alphas <= 6)).sum()),
        above_6=int((alphas > 6).sum()),
    )
