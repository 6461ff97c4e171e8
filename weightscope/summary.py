"""Model-level figures from per-layer results.

The median and the median absolute deviation (MAD) are the headline: one broken layer
must not move the model's number. Layers whose alpha carries no information — no
reading (`LayerResult.has_reading`), or alpha > ``alpha_random`` (a random-like layer,
where "alpha" only says "no tail") — are left out of the robust figures and counted
instead. The mean is kept, labelled as
such. Every band edge is the report's own `Thresholds` (weightscope.config), the one
definition of the alpha band.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from weightscope.config import Thresholds
from weightscope.report import LayerResult, SkippedTensor, Summary


def _median(values: list[float]) -> float:
    return float(np.median(values))


def summarize(layers: list[LayerResult], skipped: list[SkippedTensor], thresholds: Thresholds | None = None) -> Summary:
    """The model's figures, with the band edges of ``thresholds`` (default: the defaults)."""
    band = thresholds or Thresholds()
    fitted = [r for r in layers if r.ok and r.alpha is not None]
    alphas = np.array([r.alpha for r in fitted], dtype=np.float64)
    unread = [r for r in fitted if not r.has_reading]
    above_8 = [r for r in fitted if r.has_reading and r.alpha > band.alpha_random]
    robust = [r for r in fitted if r.has_reading and r.alpha <= band.alpha_random]
    robust_alphas = [r.alpha for r in robust]
    median = _median(robust_alphas) if robust else None

    by_kind: dict[str, list[float]] = defaultdict(list)
    by_block: dict[str, list[float]] = defaultdict(list)
    for r in robust:
        by_kind[r.kind].append(r.alpha)
        if r.block is not None:
            by_block[str(r.block)].append(r.alpha)

    return Summary(
        analysed=sum(r.ok for r in layers),
        skipped=len(skipped),
        failed=sum(not r.ok for r in layers),
        alpha_median=median,
        alpha_mad=_median([abs(a - median) for a in robust_alphas]) if robust else None,
        alpha_mean=float(alphas.mean()) if fitted else None,
        below_2=int((alphas < band.alpha_low).sum()),
        in_2_6=int(((alphas >= band.alpha_low) & (alphas <= band.alpha_high)).sum()),
        above_6=int((alphas > band.alpha_high).sum()),
        robust_layers=len(robust),
        excluded_above_8=len(above_8),
        excluded_no_reading=len(unread),
        alpha_median_by_kind={k: _median(v) for k, v in sorted(by_kind.items())},
        alpha_median_by_block={b: _median(v) for b, v in sorted(by_block.items(), key=lambda kv: int(kv[0]))},
        verdicts=dict(Counter(r.verdict for r in layers if r.verdict is not None)),
    )
