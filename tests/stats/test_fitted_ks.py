"""The fitted-power-law KS test (stats.fitted_ks): the shipped table against a small fresh
simulation, the test's size on true power laws, and the two-sided distance by hand.

The full calibration (60 000 fits) is scripts/calibrate_fitted_ks.py; these checks use a
few hundred seeded fits so the file stays fast.
"""

from __future__ import annotations

import numpy as np
import pytest

from weightscope.checks.tail import fit_trust
from weightscope.config import KS_LEVELS, Thresholds
from weightscope.errors import WeightscopeError
from weightscope.stats.fit import fit_power_law
from weightscope.stats.fitted_ks import (
    CRITICAL,
    LEVELS,
    TAIL_SIZES,
    critical_distance,
    two_sided_distance,
)


def pareto(rng, n):
    return (1.0 - rng.random(n)) ** (-1.0 / 1.5)


def test_two_sided_distance_takes_both_sides_of_every_jump():
    # Three points whose model CDF values are 0.1, 0.5, 0.95: the largest gap is below the
    # first jump's top (1/3 − 0.1) or above the last jump's bottom (0.95 − 2/3).
    alpha, xmin = 2.5, 1.0
    cdf = np.array([0.1, 0.5, 0.95])
    values = (1.0 - cdf) ** (1.0 / (1.0 - alpha)) * xmin
    expected = max(np.max(np.arange(1, 4) / 3 - cdf), np.max(cdf - np.arange(3) / 3))
    assert two_sided_distance(values, alpha, xmin) == pytest.approx(expected) == pytest.approx(0.95 - 2 / 3)


def test_two_sided_distance_is_never_below_the_fitters_left_limit_d():
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = pareto(rng, 300)
        fit = fit_power_law(values)
        tail = values[values >= fit.xmin]
        assert two_sided_distance(tail, fit.alpha, fit.xmin) >= fit.D - 1e-12


def test_shipped_table_agrees_with_a_fresh_simulation():
    """300 fresh null fits of 150–250 values: the 5 % quantile of √n·D within 0.06 of
    the table at the mean tail size (a 300-sample quantile scatters by about ±0.03)."""
    rng = np.random.default_rng(12345)
    sizes, scaled = [], []
    for _ in range(300):
        values = pareto(rng, int(rng.integers(150, 250)))
        fit = fit_power_law(values)
        tail = values[values >= fit.xmin]
        sizes.append(fit.num_tail)
        scaled.append(np.sqrt(fit.num_tail) * two_sided_distance(tail, fit.alpha, fit.xmin))
    n = int(np.exp(np.mean(np.log(sizes))))
    assert np.quantile(scaled, 0.95) == pytest.approx(critical_distance(n, 0.05) * np.sqrt(n), abs=0.06)


def test_ks_size_on_true_power_laws_is_near_five_percent():
    """Measured on 1500 fits per size by the script: 4.5–6 %. Here 400 fits (±1.1 %)."""
    rng = np.random.default_rng(99)
    thresholds = Thresholds()
    rejected = 0
    for i in range(400):
        values = np.sort(pareto(rng, (100, 300, 1000, 200)[i % 4]))
        rejected += not fit_trust(values, fit_power_law(values), thresholds).ks_ok
    assert 0.025 <= rejected / 400 <= 0.08


def test_table_shape_and_levels():
    assert np.shape(CRITICAL) == (len(TAIL_SIZES), len(LEVELS))
    assert (LEVELS[0], LEVELS[-1]) == KS_LEVELS
    assert all(np.all(np.diff(row) < 0) for row in np.asarray(CRITICAL))  # rarer level, larger D
    assert critical_distance(100, 0.05) < 1.358 / np.sqrt(100)  # below the textbook value
    with pytest.raises(WeightscopeError, match="levels"):
        critical_distance(100, 0.5)
    with pytest.raises(WeightscopeError, match="ks_level"):
        Thresholds(ks_level=0.3)
