"""weightscope.stats.ksdist against scipy.special.smirnov, into both tails."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special

from weightscope.errors import WeightscopeError
from weightscope.stats.ksdist import smirnov_sf

SIZES = [1, 2, 3, 5, 7, 10, 17, 50, 100, 333, 1000, 2500, 10007, 20000]


def distances(n: int) -> np.ndarray:
    """A uniform grid, a log grid down to 1e-8, the steps of the formula at k/n and
    their neighbouring doubles, and 2nd² up to 700 (p down to ~1e-300 and below)."""
    steps = np.array([0.5, 1.0, 2.0, n - 1.0, n - 0.5]) / n
    grid = np.concatenate([
        np.linspace(1e-6, 1 - 1e-6, 60),
        np.geomspace(1e-8, 0.5, 30),
        steps, np.nextafter(steps, 0.0), np.nextafter(steps, 1.0),
        np.sqrt(np.linspace(0.01, 700.0, 60) / (2 * n)),
    ])
    return grid[(grid > 0) & (grid < 1)]


@pytest.mark.parametrize("n", SIZES)
def test_smirnov_sf_matches_scipy_to_1e_10_relative(n):
    compared = 0
    for d in distances(n):
        expected = scipy.special.smirnov(n, d)
        if expected < 1e-300:
            continue
        assert smirnov_sf(n, float(d)) == pytest.approx(expected, rel=1e-10, abs=0), (n, d)
        compared += 1
    assert compared >= 99


@pytest.mark.parametrize("n", [200, 1000, 20000])
@pytest.mark.parametrize("p", [1e-299, 1e-200, 1e-100, 0.5, 1 - 1e-9])
def test_smirnov_sf_matches_at_set_tail_probabilities(n, p):
    d = scipy.special.smirnovi(n, p)
    assert smirnov_sf(n, d) == pytest.approx(scipy.special.smirnov(n, d), rel=1e-10, abs=0)
    assert smirnov_sf(n, d) == pytest.approx(p, rel=1e-6)


def test_smirnov_sf_edges():
    assert smirnov_sf(50, 0.0) == 1.0
    assert smirnov_sf(50, -0.3) == 1.0
    assert smirnov_sf(50, 1.0) == 0.0
    assert smirnov_sf(50, 1.7) == 0.0
    assert smirnov_sf(1, 0.3) == pytest.approx(0.7, rel=1e-15)  # one sample: P(D⁺ ≥ d) = 1 − d
    assert smirnov_sf(4, 0.9) == pytest.approx(0.1**4, rel=1e-13)  # d ≥ 1 − 1/n: (1 − d)ⁿ
    assert math.isnan(smirnov_sf(50, math.nan))
    assert smirnov_sf(np.int64(50), np.float32(0.25)) == pytest.approx(scipy.special.smirnov(50, 0.25), rel=1e-10)
    with pytest.raises(WeightscopeError, match="n ≥ 1"):
        smirnov_sf(0, 0.5)
