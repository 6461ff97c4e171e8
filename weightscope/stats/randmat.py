"""What a random matrix of the same shape would look like: Marchenko–Pastur, randomisation.

HTSR reads a layer against two random references. The Marchenko–Pastur (MP) law is the
ESD of a matrix with i.i.d. entries; the part of the ESD it explains is the *bulk*, and
eigenvalues above the bulk edge (spikes) are what training added. The element-wise
randomised copy of W (its entries permuted) keeps every weight value but destroys every
correlation; its ESD is what the layer's values alone, without structure, would give.

Conventions: W is N×M with N ≥ M, Q = N/M ≥ 1, X = WᵀW/N; for i.i.d. entries of
variance σ² the ESD of X tends to MP with support [σ²(1 − 1/√Q)², σ²(1 + 1/√Q)²].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from weightscope.linalg.spectrum import SpectrumOptions, esd
from weightscope.stats.permutation import centred_permutation

#: Share of the ESD, from the bottom, that the MP scale is fitted to. The lower half is
#: left untouched by spikes and heavy tails as long as they hold under half the
#: eigenvalues, which is what makes the fit robust (a 50 % breakdown point).
BULK_FIT_SHARE = 0.5

# Angles on which the MP CDF is tabulated (see `mp_quantiles`).
_ANGLES = np.linspace(0.0, np.pi, 4097)


@dataclass(frozen=True)
class MPBulk:
    """Marchenko–Pastur fit of the ESD bulk: variance, bulk edges, spikes above the edge,
    and ``ks``, the KS distance of the whole ESD from the fitted law (how MP-shaped it is).

    Named for what they are, not WeightWatcher's ``bulk_max``/``num_spikes``/``mp_softrank``
    (`weightscope.stats.ww_columns` computes those): the edge here carries a Tracy–Widom
    margin and σ² is a quantile regression, not WeightWatcher's kernel-density fit.
    """

    sigma2: float
    bulk_min: float
    #: σ²(1 + 1/√Q)² plus ``tw_margin`` Tracy–Widom scales: the edge a spike must clear
    bulk_edge: float
    #: eigenvalues above ``bulk_edge``
    spikes_above_edge: int
    #: bulk_edge/λmax, capped at 1 (1: nothing stands out of the bulk)
    bulk_edge_ratio: float
    ks: float = 0.0


def mp_quantiles(q: float, probs: np.ndarray) -> np.ndarray:
    """Quantiles of the MP law with σ² = 1 and aspect ratio Q = N/M ≥ 1.

    With y = 1/Q the density is √((b − x)(x − a)) / (2π y x) on [a, b] = [(1 ∓ √y)²].
    Substituting x = (1 + y) − 2√y cos θ turns the CDF into the integral over [0, θ] of
    the smooth function 2 sin²t / (π ((1 + y) − 2√y cos t)) (no square-root endpoint
    singularities, even at Q = 1), which a midpoint rule on 4096 angles integrates to
    ~1e-7; the table is then inverted by interpolation in θ.
    """
    y = 1.0 / q
    centre, radius = 1.0 + y, 2.0 * np.sqrt(y)
    mid = 0.5 * (_ANGLES[1:] + _ANGLES[:-1])
    density = radius**2 * np.sin(mid) ** 2 / (centre - radius * np.cos(mid))
    cdf = np.concatenate(([0.0], np.cumsum(density)))
    cdf /= cdf[-1]
    theta = np.interp(np.asarray(probs, dtype=np.float64), cdf, _ANGLES)
    return centre - radius * np.cos(theta)


def mp_cdf(q: float, x: np.ndarray) -> np.ndarray:
    """CDF of the MP law with σ² = 1 and aspect ratio Q at ``x`` (the inverse of `mp_quantiles`)."""
    probs = np.linspace(0.0, 1.0, _ANGLES.size)
    return np.interp(np.asarray(x, dtype=np.float64), mp_quantiles(q, probs), probs)


def mp_ks(evals: np.ndarray, sigma2: float, q: float) -> float:
    """Kolmogorov–Smirnov distance between an ascending ESD and the MP law (σ², Q).

    Why: "no spike above the edge" alone cannot tell a random ESD from one that is heavy
    tailed all the way down (a layer with no bulk at all: its lower half, read as MP,
    gives a huge σ² and an edge above everything). An ESD is random-like only when the
    MP law also fits its *shape*.
    """
    count = len(evals)
    if count == 0 or sigma2 <= 0:
        return 1.0
    model = mp_cdf(q, np.asarray(evals, dtype=np.float64) / sigma2)
    above = np.arange(1, count + 1) / count - model
    below = model - np.arange(count) / count
    return float(max(above.max(), below.max()))


def tracy_widom_scale(n: int, m: int) -> float:
    """Standard deviation scale of λmax of X = WᵀW/N around the MP edge, per unit σ².

    Johnstone (2001, Ann. Statist. 29:295, Thm 1.1): for an N×M white Wishart,
    (λmax(WᵀW) − μ)/s tends to Tracy–Widom TW1 with μ = (√N + √M)² and
    s = (√N + √M)(1/√N + 1/√M)^(1/3); the ±1 corrections to N and M are O(1/N) and
    dropped. Divided by N this is σ²(1 + 1/√Q)^(4/3) Q^(1/6) N^(−2/3).
    """
    root_n, root_m = np.sqrt(n), np.sqrt(m)
    return float((root_n + root_m) * (1.0 / root_n + 1.0 / root_m) ** (1.0 / 3.0) / n)


def mp_edge(sigma2: float, n: int, m: int, tw_margin: float) -> float:
    """Upper MP edge σ²(1 + 1/√Q)² plus ``tw_margin`` Tracy–Widom scales.

    TW1 quantiles (Bornemann's Fredholm-determinant evaluation): P(TW1 > 2.02) = 1 %,
    P(TW1 > 3.27) = 0.1 %, P(TW1 > 4) ≈ 2e-4.
    """
    q = n / m
    return float(sigma2 * ((1.0 + 1.0 / np.sqrt(q)) ** 2 + tw_margin * tracy_widom_scale(n, m)))


def fit_mp_bulk(evals: np.ndarray, n: int, m: int, tw_margin: float) -> MPBulk:
    """Fit the MP law to the bulk of an ascending ESD of N×M matrices.

    MP with variance σ² is MP with variance 1 scaled by σ², so its quantiles are
    σ² q(p): the sorted eigenvalues regressed through the origin on the unit-variance MP
    quantiles at their plotting positions p = (i − ½)/M give σ² in closed form. Only
    the lower `BULK_FIT_SHARE` of the ESD enters, so spikes and a heavy tail do not
    inflate σ². ``bulk_edge`` is the edge a spike must clear (MP edge plus the TW margin);
    ``bulk_edge_ratio`` = bulk_edge/λmax, capped at 1 (1: nothing stands out of the bulk);
    ``ks`` is the KS distance of the whole ESD from the fitted law (`mp_ks`).
    """
    count = len(evals)
    probs = (np.arange(count) + 0.5) / count
    lower = probs <= BULK_FIT_SHARE
    quantiles = mp_quantiles(n / m, probs[lower])
    # Sums, not BLAS dots: a dot over > 10⁴ values is threaded and rounds by thread count.
    sigma2 = max(float(np.sum(evals[lower] * quantiles) / np.sum(quantiles * quantiles)), 0.0)
    bulk_edge = mp_edge(sigma2, n, m, tw_margin)
    lambda_max = float(evals[-1])
    return MPBulk(
        sigma2=sigma2,
        bulk_min=float(sigma2 * (1.0 - 1.0 / np.sqrt(n / m)) ** 2),
        bulk_edge=bulk_edge,
        spikes_above_edge=int(np.count_nonzero(evals > bulk_edge)),
        bulk_edge_ratio=min(1.0, bulk_edge / lambda_max) if lambda_max > 0 else 1.0,
        ks=mp_ks(evals, sigma2, n / m),
    )


@dataclass(frozen=True)
class RandomizedESD:
    """The ESD of a layer's element-wise shuffled copy, and the entry variance σ² that fixes
    its Marchenko–Pastur law in closed form."""

    evals: np.ndarray
    variance: float


def randomized_esd(matrices: list[np.ndarray], seed: int, options: SpectrumOptions) -> RandomizedESD:
    """ESD of the layer with its entries permuted (one uniform permutation over all matrices).

    The entries are centred first: a common mean is a rank-one component that no
    permutation removes, so it would leave a spike in the randomised ESD that says
    nothing about individual weights. The eigenvalues are computed in float32 whatever
    ``options.dtype`` says: they only feed a rank-based distance and a comparison with
    the MP edge, which float32's 1e-7·λmax error cannot change, and it makes the extra
    eigensolve ~1.7× cheaper. Returns the ascending ESD and the entry variance σ², which
    fixes the randomised ESD's MP law in closed form (no fit needed).
    """
    entries = centred_permutation(matrices, np.random.default_rng(seed))
    variance = _mean_square(entries)
    shape = matrices[0].shape
    slices = list(entries.reshape(len(matrices), *shape))
    return RandomizedESD(esd(slices, dataclasses.replace(options, dtype="float32")), variance)


#: Entries squared in float64 at a time by `_mean_square`.
_SQUARE_CHUNK = 1 << 20


def _mean_square(values: np.ndarray) -> float:
    """Mean of the squares, accumulated in float64 over chunks: as exact as np.var with a
    float64 dtype, without its full-size float64 temporary (8 bytes per weight). numpy's
    own sum, not a BLAS dot: a threaded dot rounds differently with each thread count."""
    total = 0.0
    for start in range(0, len(values), _SQUARE_CHUNK):
        chunk = values[start : start + _SQUARE_CHUNK].astype(np.float64)
        total += float(np.sum(np.square(chunk, out=chunk)))
    return total / len(values) if len(values) else 0.0


def ks_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov distance sup |F₁ − F₂| between two ascending samples.

    Chosen as the distance from random because it is a metric on distributions, lies in
    [0, 1], needs no binning, and is invariant under any monotone map of λ (log or linear
    axes give the same number).
    """
    grid = np.concatenate((first, second))
    gap = np.searchsorted(first, grid, side="right") / len(first) - np.searchsorted(second, grid, side="right") / len(
        second
    )
    return float(np.max(np.abs(gap)))
