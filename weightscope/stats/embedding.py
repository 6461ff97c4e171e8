"""The shape of a row cloud: anisotropy and intrinsic dimension of an embedding matrix.

Token embeddings (and an untied output head) of trained language models crowd into a
narrow cone (Ethayarajh 2019; Gao et al. 2019, "Representation degeneration"), and the
intrinsic dimension of learned representations first grows and then shrinks over training
(Ansuini et al. 2019; Valeriani et al. 2023), with sharp rises reported shortly before loss
spikes. Three numbers read that shape from the weights alone:

- ``mean_cosine``: the mean cosine similarity over all pairs of distinct rows, before
  centring. Exact in O(n·d): with unit rows u_i, Σ_{i≠j} u_iᵀu_j = ‖Σ u_i‖² − n.
  0 for an isotropic cloud, → 1 for a cone.
- ``pc1_share``: the share of the centred cloud's variance on its first principal
  direction (1/d for an isotropic cloud, → 1 for a line), exact, from the d × d
  covariance accumulated over row blocks (never a centred copy of the matrix).
- intrinsic dimension of the rows on a seeded sample: TwoNN (Facco, d'Errico, Rodriguez &
  Laio 2017, Sci. Rep. 7:12140), the maximum-likelihood estimate d = (n − 1)/Σ ln(r₂/r₁)
  from each point's two nearest neighbours, and the Levina–Bickel MLE (NeurIPS 2004) with
  k neighbours, averaged as MacKay & Ghahramani suggest (the inverse of the mean inverse).
  Each is the mean over independent row samples, with its standard error from their spread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from weightscope.errors import WeightscopeError
from weightscope.linalg.gram import oriented

#: Rows sampled for the intrinsic dimension: TwoNN's standard error is about d/√n, so
#: 1000 points pin a dimension of 40 to ±1.3, and the n×n distances cost n²·d flops
#: (2000 points cost 4×: 0.5 s on a 384-wide vocabulary, over the 20 % cost budget).
DEFAULT_SAMPLE = 1000
#: Neighbours of the Levina–Bickel estimate (their paper uses k = 10–20).
LB_NEIGHBOURS = 20
#: Independent row samples the intrinsic dimensions are averaged over. Their spread is
#: the estimate's real noise: a bootstrap over one sample's points keeps each point's
#: neighbours fixed and under-stated it (all-MiniLM-L6-v2's token embedding, 12 samples
#: of 1000 rows: TwoNN sd 7.9 against a bootstrap SE of 6.8, Levina–Bickel 5.0 against
#: 2.8). Six samples cost six n×n distance products (0.4 G flop each at d = 384).
SAMPLES = 6


@dataclass(frozen=True)
class RowCloud:
    """Anisotropy and intrinsic dimension of the rows of one matrix (rows = tokens).

    ``sample`` is the number of rows each intrinsic-dimension sample used (duplicates
    dropped; the smallest of the `SAMPLES` samples); ``twonn`` and ``mle`` are means over
    the samples and ``twonn_se``, ``mle_se`` their standard errors (sample-to-sample sd/√SAMPLES).
    """

    name: str
    rows: int
    dim: int
    mean_cosine: float
    pc1_share: float
    twonn: float
    twonn_se: float
    mle: float
    mle_se: float
    sample: int


#: Rows per block of the passes over the matrix: a 2048 × 4096 float32 block is 32 MB,
#: and for d ≤ 1024 a block stays in cache between its two products.
_BLOCK_ROWS = 2048


def _blocks(w: np.ndarray) -> Iterator[np.ndarray]:
    """Row blocks of ``w`` (views, no copies)."""
    for start in range(0, len(w), _BLOCK_ROWS):
        yield w[start : start + _BLOCK_ROWS]


#: Widest embedding whose d × d Gram matrix is accumulated for the exact first principal
#: direction. The Gram costs n·d² flops: 4.5 G for MiniLM's 30522 × 384 (0.1 s), but
#: 2 T for a 152064 × 3584 vocabulary (~40 s, as much again as that layer's own analysis);
#: wider matrices use a block subspace iteration costing ~20·n·d·`_SUBSPACE_RANK` flops.
GRAM_MAX_DIM = 1024
_SUBSPACE_RANK = 8
_SUBSPACE_ITERATIONS = 8


@dataclass(frozen=True)
class RowMoments:
    """One pass over the rows: count, Σw_i, Σ‖w_i‖², Σ w_i/‖w_i‖ over non-zero rows, and WᵀW
    (only up to `GRAM_MAX_DIM` columns, else None).

    One pass, not three: on MiniLM's 30522 × 384 embedding the separate passes for the
    norms, the sums and the Gram matrix cost about 30 ms more than this fused one.
    """

    n: int
    nonzero: int
    total: np.ndarray
    square: float
    unit_sum: np.ndarray
    gram: np.ndarray | None


def row_moments(w: np.ndarray, gram: np.ndarray | None = None) -> RowMoments:
    """The moments of ``w``'s rows; ``gram`` is WᵀW (float64, d × d) where the caller has
    it already (the layer's spectrum formed it), else it is accumulated here up to
    `GRAM_MAX_DIM` columns."""
    d = w.shape[1]
    total, unit = np.zeros(d), np.zeros(d)
    given = gram is not None
    if gram is None and d <= GRAM_MAX_DIM:
        gram = np.zeros((d, d))
    square, nonzero = 0.0, 0
    for block in _blocks(w):
        sq = np.einsum("ij,ij->i", block, block, dtype=np.float64)
        keep = sq > 0
        inverse = np.where(keep, 1.0 / np.sqrt(np.where(keep, sq, 1.0)), 0.0).astype(w.dtype)
        unit += block.T @ inverse
        total += block.sum(axis=0, dtype=np.float64)
        if gram is not None and not given:
            gram += block.T @ block  # float32 products of ≤ 2048 rows, summed in float64
        square += float(sq.sum())
        nonzero += int(keep.sum())
    return RowMoments(len(w), nonzero, total, square, unit, gram)


def mean_cosine(w: np.ndarray, moments: RowMoments | None = None) -> float:
    """Mean cosine similarity over pairs of distinct non-zero rows of ``w``.

    Σ_{i≠j} u_iᵀu_j = ‖Σ u_i‖² − n for unit rows u_i, so the mean over all n(n − 1) pairs
    costs one pass; Σ u_i is accumulated from float32 products per block, whose rounding
    moves the mean by < 1e-6 for any vocabulary below 10⁷ rows.
    """
    m = moments or row_moments(w)
    if m.nonzero < 2:
        raise WeightscopeError("fewer than two non-zero rows: no cosine similarity")
    return float((m.unit_sum @ m.unit_sum - m.nonzero) / (m.nonzero * (m.nonzero - 1)))


def pc1_share(w: np.ndarray, moments: RowMoments | None = None, *, seed: int = 0) -> float:
    """Share of the centred rows' variance on their first principal direction.

    Up to `GRAM_MAX_DIM` columns exact: the covariance is WᵀW/n − μμᵀ, with WᵀW from
    the moments pass (no centred copy of a vocabulary-sized matrix, only the d × d
    result). On MiniLM's 30522 × 384 embedding the Gram cost 0.11 s where three thin
    products of a subspace iteration cost 0.14 s and came out 19 % low. Wider matrices:
    a seeded block subspace iteration (Halko, Martinsson & Tropp 2011) with
    `_SUBSPACE_RANK` vectors and `_SUBSPACE_ITERATIONS` passes, each pass one read of W
    (a block's W_b V and W_bᵀ(W_b V) back to back), centring applied on the fly. Its Ritz
    value is a lower bound that converges as (λ_{k+1}/λ₁)^(2·iterations): exact to
    rounding when the first direction stands out, the case this number is read for
    (tests check it against the full eigendecomposition on a planted spike).
    """
    m = moments or row_moments(w)
    mean = m.total / m.n
    variance = m.square / m.n - float(mean @ mean)
    if variance <= 0:
        return 0.0
    top = _gram_top(m, mean) if m.gram is not None else _subspace_top(w, m.n, mean, seed)
    return float(min(max(top, 0.0) / variance, 1.0))


def _gram_top(m: RowMoments, mean: np.ndarray) -> float:
    assert m.gram is not None
    return float(np.linalg.eigvalsh(m.gram / m.n - np.outer(mean, mean))[-1])


def _subspace_top(w: np.ndarray, n: int, mean: np.ndarray, seed: int) -> float:
    """Top eigenvalue of the covariance WᵀW/n − μμᵀ by block subspace iteration."""
    k = min(_SUBSPACE_RANK, w.shape[1])
    basis = np.linalg.qr(np.random.default_rng(seed).standard_normal((w.shape[1], k)))[0]

    def covariance_times(v: np.ndarray) -> np.ndarray:
        v_stored = v.astype(w.dtype)
        out = np.zeros_like(v)
        for block in _blocks(w):
            out += block.T @ (block @ v_stored)
        return out / n - np.outer(mean, mean @ v)

    for _ in range(_SUBSPACE_ITERATIONS):
        basis = np.linalg.qr(covariance_times(basis))[0]
    return float(np.linalg.eigvalsh(basis.T @ covariance_times(basis))[-1])


def neighbour_distances(points: np.ndarray, k: int) -> np.ndarray:
    """Distances to the k nearest other points, ascending, one row per point (n × k).

    From the n × n Gram matrix of the centred points in float32 (half the cost of
    float64): the rounding of a squared distance is ~1e-7 of the squared norms, so even a
    nearest-neighbour distance of 1 % of the cloud's radius keeps ~3 correct digits, and
    TwoNN's log-ratios move by < 1e-3 (tests compare against float64).
    """
    x = np.asarray(points, dtype=np.float64)
    x = (x - x.mean(axis=0)).astype(np.float32)
    sq = np.einsum("ij,ij->i", x, x)
    dist2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.fill_diagonal(dist2, np.inf)
    nearest = np.partition(dist2, k - 1, axis=1)[:, :k]
    return np.sqrt(np.sort(np.maximum(nearest, 0.0), axis=1).astype(np.float64))


def twonn_terms(distances: np.ndarray) -> np.ndarray:
    """ln(r₂/r₁) per point (points whose r₁ is 0 already removed)."""
    return np.log(distances[:, 1] / distances[:, 0])


def twonn_from_terms(terms: np.ndarray) -> np.ndarray:
    """TwoNN maximum-likelihood dimension: μ = r₂/r₁ is Pareto(d), so d = (n − 1)/Σ ln μ
    (over the last axis: one estimate per row of a stack of resamples)."""
    return (terms.shape[-1] - 1) / terms.sum(axis=-1)


def levina_bickel_terms(distances: np.ndarray, k: int = LB_NEIGHBOURS) -> np.ndarray:
    """Per point the inverse Levina–Bickel estimate 1/m̂_k(x) = mean_j<k ln(T_k/T_j)."""
    t = distances[:, :k]
    return np.log(t[:, -1:] / t[:, :-1]).mean(axis=1)


def levina_bickel_from_terms(terms: np.ndarray) -> np.ndarray:
    """MacKay & Ghahramani's average of the per-point estimates: the inverse of their mean
    inverse (over the last axis)."""
    return 1.0 / terms.mean(axis=-1)


def intrinsic_dimension(
    w: np.ndarray, *, sample: int = DEFAULT_SAMPLE, seed: int = 0, k: int = LB_NEIGHBOURS
) -> tuple[float, float, float, float, int]:
    """(TwoNN, its SE, Levina–Bickel MLE, its SE, points used) of the rows of ``w``: the
    means over `SAMPLES` independent seeded samples of ``sample`` rows (half the rows when
    there are fewer than twice that), and the standard errors of those means from the
    samples' spread."""
    rng = np.random.default_rng(seed)
    # Samples of every row would be one sample repeated, with a spread of exactly 0 (a
    # 256-token vocabulary read "± 1.6e-15"): below 2·sample rows each takes half of them.
    size = min(sample, len(w) // 2)
    estimates, used = [], []
    for _ in range(SAMPLES):
        rows = np.sort(rng.choice(len(w), size=size, replace=False))
        points = np.asarray(w[rows], dtype=np.float64)
        if len(points) <= k + 1:
            raise WeightscopeError(f"{len(points)} rows are too few for an intrinsic dimension (need > {k + 1})")
        distances = neighbour_distances(points, k)
        distances = distances[np.all(distances > 0, axis=1)]
        if len(distances) <= k + 1:
            raise WeightscopeError("too few distinct rows for an intrinsic dimension")
        estimates.append(
            (
                float(twonn_from_terms(twonn_terms(distances))),
                float(levina_bickel_from_terms(levina_bickel_terms(distances, k))),
            )
        )
        used.append(len(distances))
    values = np.asarray(estimates)
    se = values.std(axis=0, ddof=1) / np.sqrt(SAMPLES)
    return float(values[:, 0].mean()), float(se[0]), float(values[:, 1].mean()), float(se[1]), min(used)


def row_cloud(
    name: str, matrix: np.ndarray, *, seed: int = 0, sample: int = DEFAULT_SAMPLE, gram: np.ndarray | None = None
) -> RowCloud:
    """Anisotropy and intrinsic dimension of a matrix's rows (the longer side is the rows);
    ``gram``, WᵀW of the oriented matrix where the caller formed it (`row_moments`)."""
    w = oriented(matrix)
    if w.ndim != 2 or min(w.shape) < 2:
        raise WeightscopeError(f"{name}: a row cloud needs a 2-D matrix, got shape {matrix.shape}")
    twonn, twonn_se, mle, mle_se, used = intrinsic_dimension(w, sample=sample, seed=seed)
    moments = row_moments(w, gram)
    return RowCloud(
        name,
        int(w.shape[0]),
        int(w.shape[1]),
        mean_cosine(w, moments),
        pc1_share(w, moments, seed=seed),
        twonn,
        twonn_se,
        mle,
        mle_se,
        used,
    )
