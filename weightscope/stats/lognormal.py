"""The maximum-likelihood lognormal truncated to x ≥ xmin, exactly, in numpy + math.

Why not scipy.optimize: importing it (and scipy.special for log_ndtr) costs ~0.25 s of
every run's start-up, and its L-BFGS took milliseconds per layer to stop short of the
optimum, where this takes ~0.1 ms to reach it.

In u = ln(x/xmin) ≥ 0 the truncated lognormal is the exponential family
p(u) = e^(bu − cu²)/Z(b, c), c > 0, with b = m/σ², c = 1/(2σ²) for the normal N(m, σ²)
it is cut from (m = μ − ln xmin). The data enter only through mean(u) and mean(u²), and
the log-likelihood per sample, b·mean(u) − c·mean(u²) − ln Z, is concave in (b, c): its
gradient is (mean(u) − E[U], E[U²] − mean(u²)) and its Hessian −Cov(U, −U²). Newton's
method with a backtracking line search (the likelihood never decreases) therefore
reaches the one maximum in a few O(1) steps, to full precision.

The moments of the truncated normal are taken in standard units: U = σ·(Z − a) with
Z ~ N(0, 1) given Z ≥ a, a = −m/σ the truncation point. Where the truncation is shallow
(a < 4) they follow in closed form from the inverse Mills ratio λ(a) = φ(a)/(1 − Φ(a)),
computed with math.erfc. Deep in the tail those forms cancel (λ − a → 1/a while λ → a);
there the moments of Y = Z − a come from a continued fraction instead, all of whose
terms are positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)

# From this truncation point on, tail quantities come from the continued fraction; with
# this many terms it converges to double precision for every a ≥ 4 (measured: 5e-17 at 4).
_FRACTION_FROM = 4.0
_FRACTION_TERMS = 40

# Newton stops once the gain it predicts (half the Newton decrement, per sample) is below
# what double precision resolves in the per-sample log-likelihood — this many times the
# size of its terms — or when the line search finds no step that raises it measurably.
# A handful of steps get there from the moment-matched start; the caps are a backstop.
_RESOLUTION = 1e-15
_MAX_STEPS = 100
_MAX_HALVINGS = 60
_ARMIJO = 1e-4


def normal_log_sf(z: float) -> float:
    """ln(1 − Φ(z)) of the standard normal, to a few ulps for every z (scipy: log_ndtr(−z))."""
    if z >= _FRACTION_FROM:
        return -0.5 * z * z - _LOG_SQRT_2PI - math.log(inverse_mills_ratio(z))
    if z < -1.0:
        return math.log1p(-0.5 * math.erfc(-z * _SQRT_HALF))
    return math.log(0.5 * math.erfc(z * _SQRT_HALF))


def inverse_mills_ratio(z: float) -> float:
    """λ(z) = φ(z)/(1 − Φ(z)), the standard normal's hazard and E[Z | Z ≥ z]."""
    if z >= _FRACTION_FROM:
        return z + _excess_ratios(z)[0]
    return math.exp(-0.5 * z * z - _LOG_SQRT_2PI) / (0.5 * math.erfc(z * _SQRT_HALF))


def _excess_ratios(a: float) -> tuple[float, float, float, float]:
    """ρₖ = E[Yᵏ]/E[Yᵏ⁻¹], k = 1…4, for Y = Z − a given Z ≥ a (a ≥ ``_FRACTION_FROM``).

    Integrating yᵏ against Y's density φ(a + y)/(1 − Φ(a)) by parts gives
    E[Yᵏ⁺¹] = k·E[Yᵏ⁻¹] − a·E[Yᵏ], hence ρₖ = k/(a + ρₖ₊₁): a continued fraction,
    evaluated from the bottom up, in which nothing cancels. ρ₁ = λ(a) − a.
    """
    deeper = 0.0
    for k in range(_FRACTION_TERMS, 4, -1):
        deeper = k / (a + deeper)
    r4 = 4.0 / (a + deeper)
    r3 = 3.0 / (a + r4)
    r2 = 2.0 / (a + r3)
    return 1.0 / (a + r2), r2, r3, r4


@dataclass(frozen=True)
class _Moments:
    """E[U], E[U²] and Cov(U, U²) = [[var, cov], [cov, var_sq]] of U under p(u) ∝ e^(bu − cu²),
    u ≥ 0, with the covariance's determinant ``det`` formed where it is stable."""

    mean: float
    mean_sq: float
    var: float
    cov: float
    var_sq: float
    det: float


def _truncation(b: float, c: float) -> tuple[float, float]:
    """(σ, a) of the normal that e^(bu − cu²) on u ≥ 0 is cut from: σ = 1/√(2c), a = −bσ."""
    sigma = 1.0 / math.sqrt(2.0 * c)
    return sigma, -b * sigma


def _log_partition(b: float, c: float) -> float:
    """ln Z(b, c) = ln ∫₀^∞ e^(bu − cu²) du = ln σ + ln((1 − Φ(a))/φ(a)).

    For a < 0 the second term is a²/2 + ln √(2π) + ln(1 − Φ(a)) (φ(a) underflows far out);
    for a ≥ 0 it is −ln λ(a), which does not cancel where ln(1 − Φ(a)) ≈ −a²/2.
    """
    sigma, a = _truncation(b, c)
    if a < 0:
        return math.log(sigma) + 0.5 * a * a + _LOG_SQRT_2PI + normal_log_sf(a)
    return math.log(sigma) - math.log(inverse_mills_ratio(a))


def _moments(b: float, c: float) -> _Moments:
    sigma, a = _truncation(b, c)
    if a >= _FRACTION_FROM:
        return _deep_moments(sigma, a)
    return _shallow_moments(sigma, a)


def _deep_moments(sigma: float, a: float) -> _Moments:
    """From the raw moments of U = σY, products of the positive ratios σρₖ (≈ k/|b|)."""
    r1, r2, r3, r4 = (sigma * ratio for ratio in _excess_ratios(a))
    mean, mean_sq = r1, r1 * r2
    var, cov, var_sq = r1 * (r2 - r1), mean_sq * (r3 - r1), mean_sq * (r3 * r4 - mean_sq)
    return _Moments(mean, mean_sq, var, cov, var_sq, var * var_sq - cov * cov)


def _shallow_moments(sigma: float, a: float) -> _Moments:
    """From the closed-form moments of Z given Z ≥ a, in terms of λ = λ(a).

    E[Z] = λ, E[Z²] = 1 + aλ, E[Z³] = (a² + 2)λ, E[Z⁴] = 3 + (a³ + 3a)λ; U = σ(Z − a) is
    a unit-triangular transform of (Z, Z²), so det Cov(U, U²) = σ⁶·det Cov(Z, Z²).
    """
    hazard = inverse_mills_ratio(a)
    excess = hazard - a  # E[Z − a]
    var_z = 1.0 - hazard * excess
    cov_z = hazard * (a * a + 1.0 - a * hazard)  # Cov(Z, Z²)
    var_z2 = 2.0 + (a * a + 1.0) * a * hazard - a * a * hazard * hazard  # Var(Z²)
    s2 = sigma * sigma
    return _Moments(
        mean=sigma * excess,
        mean_sq=s2 * (var_z + excess * excess),
        var=s2 * var_z,
        cov=s2 * sigma * (cov_z - 2.0 * a * var_z),
        var_sq=s2 * s2 * (var_z2 - 4.0 * a * cov_z + 4.0 * a * a * var_z),
        det=s2 * s2 * s2 * (var_z * var_z2 - cov_z * cov_z),
    )


@dataclass(frozen=True)
class TruncatedLognormal:
    """A lognormal N(mu, sigma²) in ln x, truncated to x ≥ xmin, in its natural parameters:
    density ∝ e^(b·u − c·u²)/x with u = ln(x/xmin)."""

    b: float
    c: float
    xmin: float

    @property
    def mu(self) -> float:
        return math.log(self.xmin) + self.b / (2.0 * self.c)

    @property
    def sigma(self) -> float:
        return _truncation(self.b, self.c)[0]

    def loglik(self, x: np.ndarray) -> np.ndarray:
        """Pointwise log density at ``x`` (all ≥ xmin), in float64 whatever x's dtype."""
        x = np.asarray(x, dtype=np.float64)
        u = np.log(x / self.xmin)
        return -np.log(x) + self.b * u - self.c * u * u - _log_partition(self.b, self.c)


def fit_truncated_lognormal(tail: np.ndarray, xmin: float) -> TruncatedLognormal:
    """The maximum-likelihood lognormal for ``tail`` (all ≥ xmin), truncated to x ≥ xmin.

    Newton's method in (b, c), started from the normal with the sample mean and variance
    of u (as powerlaw starts its optimiser; the floor on the variance only keeps a tail of
    equal values finite). The caller makes sure the maximum is interior (c > 0): where
    it is the c = 0 edge (the power law), the iterates only creep towards it, as any
    optimiser's would, and stop short of its value.
    """
    u = np.log(np.asarray(tail, dtype=np.float64) / xmin)
    mean_u, mean_u2 = float(np.mean(u)), float(np.mean(u * u))
    variance = max(float(np.var(u)), 1e-6)
    b, c = mean_u / variance, 0.5 / variance
    for _ in range(_MAX_STEPS):
        step = _newton_step(b, c, mean_u, mean_u2)
        if step is None:
            break
        b, c = step
    return TruncatedLognormal(b=b, c=c, xmin=float(xmin))


def _per_sample_loglik(b: float, c: float, mean_u: float, mean_u2: float) -> float:
    """The log-likelihood per sample, in u (the −ln x Jacobian is the same for every fit)."""
    return b * mean_u - c * mean_u2 - _log_partition(b, c)


def _newton_step(b: float, c: float, mean_u: float, mean_u2: float) -> tuple[float, float] | None:
    """The next iterate, or None when no step can raise the likelihood measurably.

    The Newton direction d solves Cov(U, −U²)·d = gradient; the step along it is halved
    until it keeps c > 0 and raises the likelihood by at least ``_ARMIJO`` of the gain
    predicted to first order.
    """
    moments = _moments(b, c)
    grad_b, grad_c = mean_u - moments.mean, moments.mean_sq - mean_u2
    # Cov(U, −U²) = [[var, −cov], [−cov, var_sq]]; its inverse is [[var_sq, cov], [cov, var]]/det.
    d_b = (moments.var_sq * grad_b + moments.cov * grad_c) / moments.det
    d_c = (moments.cov * grad_b + moments.var * grad_c) / moments.det
    decrement = grad_b * d_b + grad_c * d_c
    log_partition = _log_partition(b, c)
    resolution = _RESOLUTION * (abs(b * mean_u) + abs(c * mean_u2) + abs(log_partition))
    if not decrement > 2.0 * resolution:  # also stops on a NaN from a singular covariance
        return None
    start = b * mean_u - c * mean_u2 - log_partition
    t = 1.0
    for _ in range(_MAX_HALVINGS):
        new_b, new_c = b + t * d_b, c + t * d_c
        if new_c > 0 and _per_sample_loglik(new_b, new_c, mean_u, mean_u2) > start + _ARMIJO * t * decrement:
            return new_b, new_c
        t *= 0.5
    return None
