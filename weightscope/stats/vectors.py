"""Where a layer's eigenvectors live: localised in a few coordinates, or spread out.

Learned correlations live in a few directions, so trained tail eigenvectors are more
localised than the delocalised (Haar-like) bulk. Opt-in (``--vectors``): it costs a full
eigendecomposition with eigenvectors, through scipy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from weightscope.linalg.gram import oriented
from weightscope.linalg.spectrum import SpectrumOptions


@dataclass(frozen=True)
class VectorStats:
    """Localisation of eigenvectors in the tail vs the bulk (opt-in, costs a full eigh)."""

    tail_localization: float
    bulk_localization: float
    tail_entropy: float
    bulk_entropy: float


def eigenvector_localization(
    matrices: list[np.ndarray], tail_start: float, options: SpectrumOptions
) -> VectorStats | None:
    """Mean localisation and entropy of tail eigenvectors (λ ≥ tail_start) vs bulk ones.

    Learned correlations live in a few directions, so trained tail eigenvectors are more
    localised than the delocalised (Haar-like) bulk. Localisation is the inverse
    participation ratio Σvᵢ⁴ of a unit eigenvector (1/M: spread evenly; 1: one
    coordinate); entropy is the Shannon entropy of vᵢ² over ln M (1: spread evenly). None
    when the tail or the bulk is empty.
    """
    import scipy.linalg  # lazy, like xlogy: only the opt-in --vectors path needs scipy
    from scipy.special import xlogy

    ipr, entropy, in_tail = [], [], []
    for matrix in matrices:
        w = np.asarray(oriented(matrix), dtype=options.dtype)
        values, vectors = scipy.linalg.eigh(w.T @ w / w.shape[0], driver="evd", check_finite=False)
        weights = vectors**2
        ipr.append(np.sum(weights**2, axis=0))
        entropy.append(-np.sum(xlogy(weights, weights), axis=0) / np.log(len(values)))
        in_tail.append(values >= tail_start)
    ipr_all, entropy_all, tail = np.concatenate(ipr), np.concatenate(entropy), np.concatenate(in_tail)
    if tail.all() or not tail.any():
        return None
    return VectorStats(
        tail_localization=float(ipr_all[tail].mean()),
        bulk_localization=float(ipr_all[~tail].mean()),
        tail_entropy=float(entropy_all[tail].mean()),
        bulk_entropy=float(entropy_all[~tail].mean()),
    )
