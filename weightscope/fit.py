"""Power-law tail fit of an ESD (Clauset, Shalizi & Newman 2009), vectorised over xmin.

The model is p(λ) ∝ λ^(−alpha) for λ ≥ xmin. For every candidate xmin the continuous MLE
is alpha = 1 + n_tail / Σ ln(λᵢ / xmin), and the fit quality is the Kolmogorov–Smirnov
distance D between the empirical and the fitted tail CDF; xmin is the candidate with the
smallest D. This reproduces the `powerlaw` package (2.x, called with
``parameter_ranges={"alpha": [1, None]}``) candidate for candidate, because that package is
the reference users compare against:

* Candidates are the distinct values except the largest two (powerlaw excludes the
  maximum from its xmin range and then drops the last remaining value), so every tail
  holds at least three distinct values.
* D is evaluated at the distinct tail values u only, with the empirical CDF taken as the
  fraction of the tail strictly below u (powerlaw's ``cdf``): D = max_u |F(u) − E(u)|.
* A candidate is admissible only if its alpha is not within 0.01 of the lower range bound
  1 (powerlaw flags such fits as noise). Unlike powerlaw, a candidate is never rejected
  because the likelihood overflows float64 (alpha in the hundreds on a 3-point tail);
  ``min_tail`` removes such tails anyway. If no candidate is admissible, powerlaw keeps
  the raw minimum and raises a warning; here the fit fails instead.

``min_tail`` additionally drops candidates that leave fewer than ``min_tail`` eigenvalues
in the tail; it is the same as passing powerlaw ``xmin=(smallest value, first value
whose tail is too short)`` (see tests/test_fit.py).

Input policy: eigenvalues may come in any order and any real dtype; the work is float64.
Values ≤ 0 (numerical zeros, round-off negatives from ``eigvalsh``) are dropped, since
they carry no tail information and have no logarithm. Tiny positive values (≈1e-17·λmax
from a rank-deficient matrix) are kept: judging rank collapse is the caller's business,
and they cannot capture the fit, because a tail that starts among them spans dozens of
decades with a gap and fits far worse than the real tail above them.

Cost: one sort, O(n) for every alpha at once (suffix sums of log-gaps), and O(K·U) for
every D at once (K candidates, U distinct values) with bounded memory: the candidates are
processed in blocks of at most ``_BLOCK_ELEMENTS`` (candidate, value) pairs. There is no
Python loop over candidates, only over blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from weightscope.errors import WeightscopeError

# (candidate, tail value) pairs evaluated at once: 2**18 float64 = 2 MiB per temporary,
# small enough to stay in cache, large enough that per-block overhead is negligible.
_BLOCK_ELEMENTS = 1 << 18

# powerlaw flags a fit as noise when alpha − 0.01 < 1 (its "near the range edge" check).
_ALPHA_EDGE_MARGIN = 0.01
_ALPHA_LOWER_BOUND = 1.0


class UnfittableSpectrum(WeightscopeError):
    """The spectrum has no tail a power law can be fitted to (too few distinct values...)."""


@dataclass(frozen=True)
class PowerLawFit:
    """Result of fitting p(λ) ∝ λ^(−alpha) for λ ≥ xmin.

    ``status`` is "ok" or "failed"; a failed fit has a ``reason`` and every number None —
    never a sentinel alpha.
    """

    status: str
    reason: str | None = None
    alpha: float | None = None
    xmin: float | None = None
    xmax: float | None = None
    D: float | None = None
    sigma: float | None = None
    num_tail: int | None = None


@dataclass(frozen=True)
class XminScan:
    """Every xmin candidate with its fit, in ascending xmin order.

    Kept whole (not just the winner) because alpha's stability as xmin moves by a few
    candidates is itself a diagnostic of whether the fit can be trusted.
    """

    xmins: np.ndarray  # float64, candidate lower cut-offs, ascending
    alphas: np.ndarray  # float64, MLE alpha of the tail above each xmin
    Ds: np.ndarray  # float64, KS distance of that fit
    n_tails: np.ndarray  # int64, eigenvalues ≥ xmin
    alpha_in_range: np.ndarray  # bool, alpha clear of the lower bound (admissible)
    xmax: float  # the largest eigenvalue

    @property
    def best_index(self) -> int | None:
        """Index of the admissible candidate with the smallest D (first on ties), or None."""
        if not self.alpha_in_range.any():
            return None
        return int(np.argmin(np.where(self.alpha_in_range, self.Ds, np.inf)))


def fit_power_law(evals: np.ndarray, *, min_tail: int = 10) -> PowerLawFit:
    """Fit a power law to the tail of a spectrum; see the module docstring for the method.

    Returns a failed fit (with a one-sentence reason) when the spectrum cannot be fitted:
    non-finite values, too few distinct positive values, no candidate leaving
    ``min_tail`` eigenvalues in the tail, or no admissible alpha. Raises
    ``WeightscopeError`` only for input that is not a 1-D real array or a bad ``min_tail``.
    """
    try:
        scan = scan_xmin(evals, min_tail=min_tail)
    except UnfittableSpectrum as err:
        return PowerLawFit(status="failed", reason=str(err))
    best = scan.best_index
    if best is None:
        return PowerLawFit(
            status="failed",
            reason="every xmin candidate gives an alpha at the lower bound 1, so no power law fits",
        )
    alpha = float(scan.alphas[best])
    num_tail = int(scan.n_tails[best])
    return PowerLawFit(
        status="ok",
        alpha=alpha,
        xmin=float(scan.xmins[best]),
        xmax=scan.xmax,
        D=float(scan.Ds[best]),
        sigma=(alpha - 1.0) / float(np.sqrt(num_tail)),
        num_tail=num_tail,
    )


def scan_xmin(evals: np.ndarray, *, min_tail: int = 10) -> XminScan:
    """Alpha and D for every xmin candidate leaving at least ``min_tail`` eigenvalues.

    Raises ``UnfittableSpectrum`` when fewer than two candidates remain (powerlaw's
    "less than 2 unique data values" rule), and ``WeightscopeError`` for malformed input.
    """
    if isinstance(min_tail, bool) or not isinstance(min_tail, (int, np.integer)) or min_tail < 1:
        raise WeightscopeError(f"min_tail must be a positive integer, got {min_tail!r}")
    values = _positive_sorted(evals)
    n = values.size
    distinct = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    if distinct.size < 4:
        raise UnfittableSpectrum(
            f"only {distinct.size} distinct positive eigenvalue(s); a tail fit needs at least 4"
        )
    # Candidates: distinct values minus the largest two; keep those with a long enough tail.
    at_or_above = (n - distinct).astype(np.float64)  # eigenvalues ≥ each distinct value
    n_candidates = int(np.count_nonzero(at_or_above[:-2] >= min_tail))
    if n_candidates < 2:
        raise UnfittableSpectrum(
            f"only {n_candidates} xmin candidate(s) leave at least {min_tail} eigenvalues "
            "in the tail; the xmin search needs 2"
        )
    logs = np.log(values)
    n_tails = at_or_above[:n_candidates]
    betas = n_tails / _log_excess(logs)[distinct[:n_candidates]]  # alpha − 1
    alphas = 1.0 + betas
    return XminScan(
        xmins=values[distinct[:n_candidates]],
        alphas=alphas,
        Ds=_ks_distances(logs[distinct], at_or_above, betas),
        n_tails=n_tails.astype(np.int64),
        alpha_in_range=~(alphas - _ALPHA_EDGE_MARGIN < _ALPHA_LOWER_BOUND),
        xmax=float(values[-1]),
    )


def _positive_sorted(evals: np.ndarray) -> np.ndarray:
    """The positive eigenvalues as ascending float64; rejects malformed and non-finite input."""
    array = np.asarray(evals)
    if array.ndim != 1:
        raise WeightscopeError(f"eigenvalues must be a 1-D array, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise WeightscopeError(f"eigenvalues must be real numbers, got dtype {array.dtype}")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise UnfittableSpectrum("the spectrum contains NaN or infinite eigenvalues")
    return np.sort(values[values > 0])


def _log_excess(logs: np.ndarray) -> np.ndarray:
    """Σ_{j ≥ i} (ln λⱼ − ln λᵢ) for every i of the ascending log-values, in O(n).

    Built from non-negative log-gaps, each counted once per value above it, so there is no
    cancellation even for short tails (unlike Σ ln λⱼ − n·ln λᵢ).
    """
    n = logs.size
    weighted_gaps = np.diff(logs) * np.arange(n - 1, 0, -1, dtype=np.float64)
    excess = np.zeros(n)
    excess[:-1] = np.cumsum(weighted_gaps[::-1])[::-1]
    return excess


def _ks_distances(log_u: np.ndarray, at_or_above: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """KS distance of every candidate's fit, candidate k being distinct value k.

    With N(u) the count of eigenvalues ≥ u, the CDF difference at a tail value u is
    F − E = (N(u) − N(xmin)·(u/xmin)^−beta) / N(xmin), so each block is one outer
    subtraction of logs, a scale, an exp and a subtraction. Pairs with u < xmin (the lower
    triangle of a block's leading square) are zeroed, which is harmless since D ≥ 0 and
    the pair u = xmin contributes exactly 0.
    """
    n_candidates, n_distinct = betas.size, log_u.size
    log_n_tail = np.log(at_or_above[:n_candidates])
    distances = np.empty(n_candidates)
    start = 0
    while start < n_candidates:
        width = n_distinct - start
        stop = min(n_candidates, start + max(1, _BLOCK_ELEMENTS // width))
        rows = stop - start
        gap = np.subtract.outer(log_u[start:stop], log_u[start:])  # ln(xmin/u)
        gap *= betas[start:stop, None]
        gap += log_n_tail[start:stop, None]
        with np.errstate(over="ignore"):  # only in the zeroed u < xmin triangle
            np.exp(gap, out=gap)  # N(xmin)·(u/xmin)^−beta
        gap -= at_or_above[start:]
        gap[:, :rows][np.tri(rows, k=-1, dtype=bool)] = 0.0
        distances[start:stop] = np.maximum(gap.max(axis=1), -gap.min(axis=1))
        start = stop
    return distances / at_or_above[:n_candidates]
