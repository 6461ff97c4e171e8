"""What the picture of one layer's spectrum shows, as numbers: histograms, curves, edges,
and the warnings a reader must see. No drawing library here.

Two painters draw from these numbers: `plot_esd` (matplotlib PNG, `weightscope plot`)
and `svg_esd` (inline SVG of the HTML report, where 40 matplotlib figures cost 30 s and
the SVGs 0.3 s). Computing the picture once keeps the two views the same picture.

Panels: (a) the ESD on log-log axes with the fitted power-law density from xmin to xmax;
(b) the ESD on linear axes with the Marchenko–Pastur density of the fitted bulk, its
edge, the spikes above it, and the randomised ESD with *its own* MP edge — the edge the
correlation traps are judged against; (c) the empirical CCDF of the eigenvalues on
log-log axes with the fitted power law, P(Λ ≥ λ) = (n_tail/n)·(λ/xmin)^(1−α), a straight
line of slope 1−α: the standard picture of a power-law fit (Clauset et al. 2009, fig. 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from weightscope import vocabulary
from weightscope.render.style import fmt
from weightscope.report import LayerResult

#: The linear panel shows at most this many bulk widths, so that a few huge spikes do not
#: squash the bulk into one bar; eigenvalues beyond are counted in the legend.
LINEAR_RANGE_BULKS = 4.0
BULK_BINS = 30
#: An MP fit that calls more than this share of the eigenvalues "spikes" has not found the
#: bulk (on word_embeddings of all-MiniLM-L6-v2: 226 of 384): the figure says so.
SPIKE_SHARE_WARNING = 0.3
#: The CCDF is drawn through at most this many points, log-spaced in rank (a
#: 4096-eigenvalue step curve looks the same through 200).
CCDF_POINTS = 200


@dataclass(frozen=True)
class Histogram:
    edges: np.ndarray
    heights: np.ndarray


@dataclass(frozen=True)
class Curve:
    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class LogLogPanel:
    """(a): the ESD density on log-log axes and the fitted power law."""

    histogram: Histogram
    fit: Curve | None
    xmin: float | None
    lambda_max: float
    nonpositive: int


@dataclass(frozen=True)
class LinearPanel:
    """(b): the ESD on linear axes against the MP bulk and the randomised ESD."""

    x_high: float
    histogram: Histogram
    beyond: int
    mp: Curve | None
    bulk_edge: float | None
    spikes: np.ndarray
    spikes_beyond: int
    randomised: Histogram | None
    randomised_beyond: int
    randomised_edge: float | None
    y_high: float


@dataclass(frozen=True)
class CcdfPanel:
    """(c): the empirical CCDF and the fitted power law's, on log-log axes."""

    empirical: Curve
    fit: Curve | None


@dataclass(frozen=True)
class EsdPicture:
    name: str
    subtitle: str
    title: str
    loglog: LogLogPanel
    linear: LinearPanel
    ccdf: CcdfPanel
    warnings: list[str] = field(default_factory=list)


def aspect_ratio(shape: tuple[int, ...]) -> float:
    """Q = N/M ≥ 1 of the matrices behind an ESD (a conv kernel's (out, in) slices)."""
    rows, cols = shape[:2]
    return max(rows, cols) / min(rows, cols)


def mp_edges(sigma2: float, q: float) -> tuple[float, float]:
    """Support [λ−, λ+] of the Marchenko–Pastur law of X = WᵀW/N with entry variance σ²."""
    root = 1.0 / np.sqrt(q)
    return sigma2 * (1.0 - root) ** 2, sigma2 * (1.0 + root) ** 2


def mp_density(lam: np.ndarray, sigma2: float, q: float) -> np.ndarray:
    """Marchenko–Pastur density ρ(λ) = Q √((λ+ − λ)(λ − λ−)) / (2π σ² λ), zero off the support."""
    lo, hi = mp_edges(sigma2, q)
    lam = np.asarray(lam, dtype=np.float64)
    inside = (lam > lo) & (lam < hi) & (lam > 0)
    density = np.zeros_like(lam)
    x = lam[inside]
    density[inside] = q * np.sqrt((hi - x) * (x - lo)) / (2.0 * np.pi * sigma2 * x)
    return density


def bin_count(n: int) -> int:
    return int(np.clip(2 * np.sqrt(n), 20, 80))


def reading_note(result: LayerResult) -> str | None:
    """What limits the reading of alpha, by the flags behind it (`vocabulary`): no
    reading and why, or an approximate fit and why; None for a solid reading."""
    if result.alpha is None:
        return None
    if not result.has_reading:
        why = [flag for flag in result.flags if flag in vocabulary.NO_READING_FLAGS]
        return "no reading of alpha" + (": " + ", ".join(why) if why else "")
    if result.confidence == "approximate":
        why = [flag for flag in result.flags if flag in vocabulary.APPROXIMATE_FLAGS]
        return "approximate fit" + (": " + ", ".join(why) if why else "")
    return None


def title(result: LayerResult) -> str:
    """alpha ± sigma, D, the verdict, and what limits the reading of alpha."""
    if result.alpha is None:
        return f"no power-law fit: {result.reason or 'not fitted'}"
    parts = [f"α = {fmt(result.alpha, 2)}" + (f" ± {fmt(result.sigma, 2)}" if result.sigma is not None else "")]
    parts.append(f"D = {fmt(result.D)}")
    if result.verdict is not None:
        parts.append(f"verdict: {result.verdict}")
    note = reading_note(result)
    if note:
        parts.append(note)
    return ",  ".join(parts)


def _loglog(result: LayerResult, evals: np.ndarray) -> LogLogPanel:
    positive = evals[evals > 0]
    low, high = positive[0], positive[-1]
    if low == high:
        low, high = low / 1.1, high * 1.1
    edges = np.geomspace(low, high, bin_count(positive.size) + 1)
    heights, _ = np.histogram(positive, bins=edges, density=True)
    fit = None
    if result.alpha is not None and result.xmin and result.xmax and result.num_tail:
        # The tail's pdf scaled by its share of the plotted eigenvalues, so that it sits on
        # the density histogram: share · (α−1)/xmin · (λ/xmin)^−α, slope −α in log-log.
        x = np.geomspace(result.xmin, result.xmax, 64)
        share = result.num_tail / positive.size
        fit = Curve(x, share * (result.alpha - 1.0) / result.xmin * (x / result.xmin) ** (-result.alpha))
    lambda_max = float(evals[-1])  # in the ESD's units (result.lambda_max is σmax², WeightWatcher's)
    return LogLogPanel(
        Histogram(edges, heights),
        fit,
        result.xmin if fit is not None else None,
        lambda_max,
        int(evals.size - positive.size),
    )


def _linear(result: LayerResult, evals: np.ndarray, rand_evals: np.ndarray | None) -> LinearPanel:
    evals = np.clip(evals, 0.0, None)
    mp = result.mp if result.mp is not None and result.mp.bulk_edge > 0 else None  # a degenerate fit has no bulk
    top = float(evals[-1])
    x_high = 1.05 * (min(top, LINEAR_RANGE_BULKS * mp.bulk_edge) if mp is not None else top)
    rand = np.clip(np.sort(np.asarray(rand_evals, dtype=np.float64)), 0.0, None) if rand_evals is not None else None
    randomised_edge = result.traps.bulk_edge if result.traps is not None and result.traps.bulk_edge > 0 else None
    if randomised_edge is not None:  # the edge the traps are judged against must be on the axis
        x_high = max(x_high, 1.05 * randomised_edge)
    # Resolve the bulk: about BULK_BINS bins across [0, bulk edge] when the bulk is known.
    count = bin_count(evals.size) if mp is None else int(np.clip(np.ceil(BULK_BINS * x_high / mp.bulk_edge), 20, 200))
    edges = np.linspace(0.0, x_high, count + 1)
    width = edges[1] - edges[0]
    # Density relative to *all* eigenvalues, so bars compare with the MP curve even when
    # some eigenvalues lie beyond the axis.
    shown = evals[evals <= x_high]
    heights = np.histogram(shown, edges)[0] / (evals.size * width)
    y_high = float(heights.max())
    randomised = None
    rand_beyond = 0
    if rand is not None and rand.size:
        rand_shown = rand[rand <= x_high]
        randomised = Histogram(edges, np.histogram(rand_shown, edges)[0] / (rand.size * width))
        rand_beyond = int(rand.size - rand_shown.size)
        y_high = max(y_high, float(randomised.heights.max()))
    curve = None
    spikes = np.empty(0)
    bulk_edge = None
    if mp is not None:
        q = aspect_ratio(result.shape)
        lo, hi = mp_edges(mp.sigma2, q)
        grid = np.linspace(lo, hi, 202)[1:-1]  # open support: the density is 0 (or ∞ at 0) at the edges
        bulk_share = (evals.size - mp.spikes_above_edge) / evals.size
        curve = Curve(grid, bulk_share * mp_density(grid, mp.sigma2, q))
        bulk_edge = mp.bulk_edge
        # The report's spike count decides (its edge may carry a Tracy–Widom margin): the
        # spikes are the largest ``spikes_above_edge`` eigenvalues.
        spikes = evals[evals.size - mp.spikes_above_edge :] if mp.spikes_above_edge else np.empty(0)
    visible = spikes[spikes <= x_high]
    return LinearPanel(
        x_high,
        Histogram(edges, heights),
        int(evals.size - shown.size),
        curve,
        bulk_edge,
        visible,
        int(spikes.size - visible.size),
        randomised,
        rand_beyond,
        randomised_edge,
        1.3 * y_high,
    )


def _ccdf(result: LayerResult, evals: np.ndarray) -> CcdfPanel:
    positive = evals[evals > 0]
    n = positive.size
    survival = (n - np.arange(n)) / n  # P(Λ ≥ λ_i) for the sorted λ_i
    keep = np.unique(np.round(np.geomspace(1, n, min(n, CCDF_POINTS))).astype(int) - 1)
    empirical = Curve(positive[keep], survival[keep])
    fit = None
    if result.alpha is not None and result.xmin and result.xmax and result.num_tail:
        x = np.geomspace(result.xmin, result.xmax, 64)
        fit = Curve(x, result.num_tail / n * (x / result.xmin) ** (1.0 - result.alpha))
    return CcdfPanel(empirical, fit)


def warnings(result: LayerResult, evals: np.ndarray) -> list[str]:
    """What a reader must not miss: an MP fit that found no bulk, an alpha without a reading."""
    notes = []
    if result.mp is not None and evals.size and result.mp.spikes_above_edge > SPIKE_SHARE_WARNING * evals.size:
        notes.append(
            f"MP fit doubtful: {result.mp.spikes_above_edge} of {evals.size} eigenvalues "
            f"({result.mp.spikes_above_edge / evals.size:.0%}) lie above its bulk edge"
        )
    if not result.has_reading and result.alpha is not None:
        notes.append(reading_note(result) or "no reading of alpha")
    return notes


def esd_picture(result: LayerResult, evals: np.ndarray, rand_evals: np.ndarray | None = None) -> EsdPicture:
    """The numbers of the three panels of one layer; ``evals`` must hold a positive value."""
    ordered = np.sort(np.asarray(evals, dtype=np.float64))
    shape = "×".join(map(str, result.shape))
    return EsdPicture(
        name=result.name,
        subtitle=f"{result.kind}, {shape}, {ordered.size} eigenvalues",
        title=title(result),
        loglog=_loglog(result, ordered),
        linear=_linear(result, ordered, rand_evals),
        ccdf=_ccdf(result, ordered),
        warnings=warnings(result, ordered),
    )
