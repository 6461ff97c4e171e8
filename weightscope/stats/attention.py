"""How large the attention logits of each head can get, from W_Q and W_K alone.

The logit of head h between a query input x and a key input y is
xᵀ W_Q^hᵀ W_K^h y / √d_h (W_Q^h, W_K^h are the head's d_h × d slices of the projections).
Its largest value over unit inputs is the spectral norm of the bilinear form
B_h = W_Q^hᵀ W_K^h / √d_h. Training diverges when these logits grow without bound
(Dehghani et al. 2023, "Scaling Vision Transformers to 22B parameters"; Wortsman et al.
2023, "Small-scale proxies for large-scale Transformer training instabilities"), which is
why QK-norm exists: the bound over a run is an early-warning signal readable from the
weights alone.

B_h is d × d but has rank ≤ d_h, so it is never formed: with the thin QR factorisations
W_Q^hᵀ = U_q R_q and W_K^hᵀ = U_k R_k (U orthonormal, R d_h × d_h),
B_h = U_q (R_q R_kᵀ) U_kᵀ / √d_h and ‖B_h‖₂ = ‖R_q R_kᵀ‖₂ / √d_h: two QRs of d × d_h and
one d_h × d_h SVD per head, O(d·d_h²) instead of O(d²·d_h) and no d × d buffer.

A preceding norm layer multiplies its (normalised) output by a gain g before the
projections, so the logit is xᵀ diag(g) W_Q^hᵀ W_K^h diag(g) y: the gain is folded in by
scaling the columns of both slices. With grouped-query attention (GQA, Ainslie et al. 2023)
query head h reads key head h // (heads / kv_heads), the grouping of Hugging Face's
``repeat_kv``.

Rotary embeddings (RoPE) rotate q and k by position before the product; the bound here is
that of relative position 0 (exact for models without RoPE). For any rotation the logit is
at most ‖W_Q^h‖₂‖W_K^h‖₂/√d_h, reported per layer as ``rotation_bound``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from weightscope.errors import WeightscopeError


def check_head_split(heads: int, kv_heads: int, head_dim: int) -> None:
    """Refuse a head split that cannot be: counts below 1, or query heads that do not
    group evenly onto the key/value heads."""
    if min(heads, kv_heads, head_dim) < 1:
        raise WeightscopeError(
            f"heads, kv heads and head dim must be ≥ 1, got HeadLayout(heads={heads}, kv_heads={kv_heads}, head_dim={head_dim})"
        )
    if heads % kv_heads:
        raise WeightscopeError(f"{heads} query heads cannot be grouped onto {kv_heads} kv heads")


@dataclass(frozen=True)
class LogitBound:
    """One block's per-head bounds ‖W_Q^hᵀ W_K^h‖₂/√d_h and their max and median.

    ``gain`` names the norm gain folded in (None when none was identifiable).
    ``rotation_bound`` is the largest ‖W_Q^h‖₂‖W_K^h‖₂/√d_h: the bound under any RoPE rotation.
    """

    block: int | None
    q: str
    k: str
    gain: str | None
    heads: list[float]
    max: float
    median: float
    rotation_bound: float


#: Float64 head slices converted at a time by `head_factors`: a whole 4096² projection
#: would be two 134 MB float64 copies beside the layer's own working set.
HEAD_GROUP_BYTES = 8 * 2**20


def head_factors(w: np.ndarray, count: int, head_dim: int, gain: np.ndarray | None = None) -> np.ndarray:
    """R factors (count × d_h × d_h) of every head's d × d_h slice of one projection
    (``w`` is count·d_h × d, as nn.Linear stores it), columns scaled by the norm gain.
    All a block's bound needs of the projection, so it is taken while the projection
    streams past and the matrix dropped. Batched QRs over groups of heads of at most
    `HEAD_GROUP_BYTES` in float64: numpy factorises a stack one matrix at a time, so the
    grouping changes no bit of the result, and it is faster (a 4096² projection of 32
    heads, one thread: 0.44 s against 0.83 s for the whole stack at once)."""
    if w.ndim != 2 or w.shape[0] != count * head_dim:
        raise WeightscopeError(f"projection {w.shape} does not split into {count} heads of {head_dim}")
    if gain is not None and gain.shape != (w.shape[1],):
        raise WeightscopeError(f"norm gain of shape {gain.shape} does not match input width {w.shape[1]}")
    scale = np.asarray(gain, dtype=np.float64) if gain is not None else np.ones(w.shape[1])
    group = max(1, HEAD_GROUP_BYTES // (head_dim * w.shape[1] * 8))
    factors = []
    for first in range(0, count, group):
        rows = w[first * head_dim : (first + group) * head_dim]
        slices = np.asarray(rows, dtype=np.float64).reshape(-1, head_dim, w.shape[1]) * scale
        factors.append(np.linalg.qr(slices.transpose(0, 2, 1), mode="r"))
    return np.concatenate(factors)


def bounds_from_factors(
    r_q: np.ndarray, r_k: np.ndarray, heads: int, kv_heads: int, head_dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per query head: (‖R_q R_kᵀ‖₂/√d_h, ‖R_q‖₂‖R_k‖₂/√d_h) from `head_factors` of q and k."""
    check_head_split(heads, kv_heads, head_dim)
    if r_q.shape[0] != heads or r_k.shape[0] != kv_heads:
        raise WeightscopeError(f"{r_q.shape[0]} q heads / {r_k.shape[0]} k heads, expected {heads}/{kv_heads}")
    group = np.arange(heads) // (heads // kv_heads)
    # one batched SVD of [R_q R_kᵀ; R_q; R_k] (each call costs ~1 ms of overhead on small heads)
    stacked = np.concatenate([r_q @ r_k[group].transpose(0, 2, 1), r_q, r_k])
    top = np.linalg.svd(stacked, compute_uv=False)[:, 0]
    bounds, rotation = top[:heads], top[heads : 2 * heads] * top[2 * heads :][group]
    root = np.sqrt(head_dim)
    return bounds / root, rotation / root


def head_bounds(
    wq: np.ndarray, wk: np.ndarray, heads: int, kv_heads: int, head_dim: int, gain: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per query head: ‖diag(g) W_Q^hᵀ W_K^h diag(g)‖₂/√d_h, and the any-rotation bound.

    ``wq`` is (heads·d_h, d) and ``wk`` (kv_heads·d_h, d), as nn.Linear stores them.
    Returns (bounds, rotation_bounds), each of length ``heads``.
    """
    check_head_split(heads, kv_heads, head_dim)
    dh = head_dim
    if wq.shape != (heads * dh, wq.shape[1]) or wk.shape != (kv_heads * dh, wq.shape[1]):
        raise WeightscopeError(f"q {wq.shape} / k {wk.shape} do not split into {heads}/{kv_heads} heads of {dh}")
    return bounds_from_factors(
        head_factors(wq, heads, dh, gain), head_factors(wk, kv_heads, dh, gain), heads, kv_heads, dh
    )


def bound_of(
    block: int | None, q_name: str, k_name: str, bounds: np.ndarray, rotation: np.ndarray, gain_name: str | None
) -> LogitBound:
    """One block's `LogitBound` from its per-head bounds."""
    return LogitBound(
        block,
        q_name,
        k_name,
        gain_name,
        [float(b) for b in bounds],
        float(bounds.max()),
        float(np.median(bounds)),
        float(rotation.max()),
    )
