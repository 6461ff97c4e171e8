"""Size and rank of a weight update ΔW, from its singular values.

One definition serves three uses: `compare` (ΔW = W_B − W_A of two checkpoints), LoRA
adapters (ΔW = s·B·A, whose singular values come from the factors alone, see
`lowrank_singular_values`) and the GGUF quantization damage report (ΔW = W_q − W).

A LoRA update of a 4096×4096 layer at r = 16 has 16 non-zero singular values; forming
the 4096×4096 product to find them costs d·k·r flops and 64 MB, and an SVD of it ~10 s.
QR of the two thin factors and an r×r SVD costs (d + k)·r² flops and gives the same
values to float64 rounding (tests check against numpy's SVD of the explicit product).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from weightscope.linalg.spectrum import SpectrumOptions, esd
from weightscope.stats.finetune import energy_rank, update_ranks

#: Share of ‖ΔW‖_F² that `rank90` counts directions up to.
ENERGY_SHARE = 0.9


@dataclass(frozen=True)
class UpdateStats:
    """Size and spectrum of one layer's update ΔW.

    ``relative_norm`` is ‖ΔW‖_F / ‖W‖_F against the weights it updates (None when they
    are unknown, as for an adapter analysed alone, or all zero); ``norm`` is ‖ΔW‖_F. The
    ranks are of ΔW's singular values σ: stable rank Σσ²/σ²max, effective rank
    exp(entropy of σ²/Σσ²), rank90 the fewest directions holding 90 % of ‖ΔW‖_F². ``dim``
    is the most a rank can be (the smaller side, times kernel positions for a conv; r for
    a LoRA update). A zero update has ranks 0. For a LoRA update, ``lora_rank`` is r,
    ``scale`` the s of ΔW = s·B·A, ``rank_share`` effective rank / r (how much of the
    rank paid for is used), ``singular_values`` all r of them (descending); ``note``
    says what was left out (a DoRA magnitude vector without its base weights).
    """

    relative_norm: float | None
    stable_rank: float
    effective_rank: float
    rank90: int
    dim: int
    norm: float | None = None
    lora_rank: int | None = None
    scale: float | None = None
    rank_share: float | None = None
    singular_values: list[float] = field(default_factory=list)
    note: str | None = None
    #: smallest LoRA rank holding 99 % of ‖ΔW‖², a Gaussian update's rank90 (same shape and
    #: norm), whether this update is more concentrated, and what its rank90 directions cost
    #: in parameters against the matrix's own (`weightscope.stats.finetune`)
    rank99: int | None = None
    random_rank90: int | None = None
    concentrated: bool | None = None
    params90: int | None = None
    params: int | None = None


def stats_from_squares(
    squares: np.ndarray, dim: int, reference_sq_norm: float | None = None, **lora: object
) -> UpdateStats:
    """`UpdateStats` from ΔW's squared singular values (any order, any common scale when
    ``reference_sq_norm`` is None; otherwise the true σ² and ‖W‖_F² of the reference)."""
    sq = np.sort(np.clip(np.asarray(squares, dtype=np.float64), 0.0, None))[::-1]
    total = float(sq.sum())
    relative = float(np.sqrt(total / reference_sq_norm)) if reference_sq_norm else None
    if total <= 0:
        return UpdateStats(relative, 0.0, 0.0, 0, dim, **lora)  # type: ignore[arg-type]  # LoRA's rank and note, typed by the caller
    share = sq / total
    nonzero = share[share > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum())
    return UpdateStats(
        relative_norm=relative,
        stable_rank=total / float(sq[0]),
        effective_rank=float(np.exp(entropy)),
        rank90=energy_rank(sq, ENERGY_SHARE),
        dim=dim,
        **lora,  # type: ignore[arg-type]  # LoRA's rank and note, typed by the caller
    )


def lowrank_singular_values(a: np.ndarray, b: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Singular values (descending, float64) of s·B·A for B (d×r) and A (r×k).

    B = Q_B R_B and Aᵀ = Q_A R_A (thin QR), so s·B·A = Q_B (s·R_B R_Aᵀ) Q_Aᵀ with
    orthonormal Q's: the singular values are those of the r×r core.

    A core that is not finite (``lora_alpha: 1e308``, a factor of ±1e200) raises
    FloatingPointError before LAPACK sees it: LAPACK's ``DLASCL`` would print to stdout
    (inside a JSON report) and return singular values of 0, read as an untrained adapter.
    So do singular values whose squares (the energies) overflow.
    """
    if a.ndim != 2 or b.ndim != 2 or b.shape[1] != a.shape[0]:
        raise ValueError(f"LoRA factors do not chain: B {b.shape} · A {a.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        r_b: np.ndarray = np.linalg.qr(np.asarray(b, dtype=np.float64), mode="r")  # type: ignore[assignment]  # numpy's stubs type qr(mode="r") as QRResult; it returns R alone
        r_a: np.ndarray = np.linalg.qr(np.asarray(a, dtype=np.float64).T, mode="r")  # type: ignore[assignment]  # numpy's stubs type qr(mode="r") as QRResult; it returns R alone
        core = abs(scale) * (r_b @ r_a.T)
        if not np.all(np.isfinite(core)):
            cause = "a factor holds NaN or Inf" if np.isnan(core).any() else "the update overflows"
            raise FloatingPointError(f"ΔW = s·B·A is not finite in float64 (s = {scale:.4g}): {cause}")
        singular = np.linalg.svd(core, compute_uv=False)
        if not np.all(np.isfinite(np.square(singular))):
            raise FloatingPointError(f"ΔW = s·B·A is not finite in float64 (s = {scale:.4g}): its energy σ² overflows")
    return singular


def lora_update_stats(
    a: np.ndarray, b: np.ndarray, scale: float, reference_sq_norm: float | None = None, note: str | None = None
) -> UpdateStats:
    """`UpdateStats` of ΔW = s·B·A from its factors (never forming the d×k product)."""
    sv = lowrank_singular_values(a, b, scale)
    rank = int(a.shape[0])
    total = float((sv**2).sum())
    stats = stats_from_squares(
        sv**2,
        rank,
        reference_sq_norm,
        norm=float(np.sqrt(total)),
        lora_rank=rank,
        scale=float(scale),
        singular_values=[float(s) for s in sv],
        note=note,
    )
    share = stats.effective_rank / rank if rank else None
    return UpdateStats(**{**stats.__dict__, "rank_share": share})


#: How a tensor is cut into the 2-D matrices whose spectra pool (conv kernels: one per
#: kernel position); `weightscope.checkpoint.layers.layer_matrices`.
Slicer = Callable[[np.ndarray], list[np.ndarray]]


def sum_squares(array: np.ndarray) -> float:
    """‖array‖_F² accumulated in float64 without a float64 copy of the array."""
    flat = array.reshape(-1)
    return float(np.einsum("i,i->", flat, flat, dtype=np.float64))


def update_stats(
    w_a: np.ndarray, w_b: np.ndarray, slices: Slicer, options: SpectrumOptions | None = None
) -> UpdateStats:
    """Size and spectrum of ΔW = w_b − w_a (same shape, finite values); ``slices`` cuts a
    tensor into the 2-D matrices whose spectra pool (`checkpoint.layers.layer_matrices`)."""
    delta = np.subtract(w_b, w_a, dtype=np.result_type(w_a, w_b))
    evals = esd(slices(delta), options or SpectrumOptions())  # σ²/N
    n = max(delta.shape[:2])
    norm_a = sum_squares(w_a)
    stats = stats_from_squares(evals * n, int(evals.size), norm_a if norm_a > 0 else None)
    slice_shape = slices(delta)[0].shape
    ranks = update_ranks(np.sort(evals)[::-1], *slice_shape)
    return dataclasses.replace(
        stats,
        norm=float(np.sqrt(sum_squares(delta))),
        rank99=ranks.rank99,
        random_rank90=ranks.random_rank90,
        concentrated=ranks.concentrated,
        params90=stats.rank90 * sum(slice_shape),
        params=int(delta.size),
    )


def update_between(
    w_a: np.ndarray | None, w_b: np.ndarray | None, slices: Slicer, options: SpectrumOptions
) -> tuple[UpdateStats | None, str | None]:
    """The update of a matched pair, or why there is none."""
    if w_a is None or w_b is None:
        return None, "a tensor could not be read"
    if w_a.shape != w_b.shape:
        return None, f"shapes differ ({'×'.join(map(str, w_a.shape))} vs {'×'.join(map(str, w_b.shape))})"
    if not (np.isfinite(w_a).all() and np.isfinite(w_b).all()):
        return None, "non-finite weights"
    return update_stats(w_a, w_b, slices, options), None
