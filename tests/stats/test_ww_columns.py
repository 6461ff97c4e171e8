"""WeightWatcher's columns (`weightscope.stats.ww_columns`) against independent references:
the kernel density against its defining sum, the MP fit against WeightWatcher 0.7.7's
procedure run through SciPy's own ``optimize.brute`` + ``fmin``, the distance from random
against ``scipy.spatial.distance.jensenshannon``. (scripts/compare_weightwatcher.py runs
WeightWatcher itself on a real model.)"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.spatial.distance

from weightscope.stats.ww_columns import jensen_shannon_distance, linear_kde, ww_columns, ww_mp_fit


def test_linear_kde_is_the_defining_sum():
    samples = np.random.default_rng(0).gamma(2.0, size=400)
    grid = np.linspace(0.0, samples.max() + 0.5, 300)
    direct = np.clip(1.0 - np.abs(grid[:, None] - samples[None, :]) / 0.1, 0.0, None).sum(axis=1) / (400 * 0.1)
    assert np.allclose(linear_kde(samples, grid, 0.1), direct, rtol=0, atol=1e-12)


def _weightwatcher_fit(evals: np.ndarray, q: float, m: int) -> tuple[float, int, float]:
    """WeightWatcher 0.7.7's ``mp_fit`` with ``fit_density_with_range`` and ``resid_mp``,
    transcribed (scikit-learn's linear KernelDensity is its defining sum)."""
    x = evals * evals.size / evals.sum()
    to_fit = np.sqrt(x) if q == 1 else x

    def resid(p):
        sigma = p[0] if np.ndim(p) else p
        xde = np.linspace(0, np.max(to_fit) + 0.5, 1000)
        yde = np.clip(1.0 - np.abs(xde[:, None] - to_fit[None, :]) / 0.1, 0.0, None).sum(axis=1) / (to_fit.size * 0.1)
        good = yde > 0.01
        xde, yde, bad = xde[good], yde[good], np.count_nonzero(~good)
        with np.errstate(all="ignore"):
            if q == 1:
                r = np.nan_to_num((1 / (np.pi * sigma * sigma)) * np.sqrt(4 - xde**2)) - yde
            else:
                b, a = (sigma * (1 + np.sqrt(1 / q))) ** 2, (sigma * (1 - np.sqrt(1 / q))) ** 2
                ymp = np.nan_to_num((1 / (2 * np.pi * sigma * sigma * xde / q)) * np.sqrt((b - xde) * (xde - a)))
                peak = xde[np.where(yde == max(yde))][0]
                r = np.zeros(len(yde)) + 1000 if (b < peak) | (b > max(xde)) | (a > peak) else ymp - yde
        return np.sum(np.concatenate((r, np.zeros(bad))) ** 2)

    s = np.sqrt(np.max(x) / (1 + 1 / np.sqrt(q)) ** 2)
    sigma = scipy.optimize.brute(resid, (slice(0.05 * s, 2.0 * s, 0.01 * s),), full_output=True)[0][0]
    bulk_max = (sigma * (1 + 1 / np.sqrt(q))) ** 2
    tw = 1 / np.sqrt(q) * bulk_max ** (2 / 3) * m ** (-2 / 3)
    return bulk_max / (evals.size / evals.sum()), int(np.sum(x > bulk_max + np.sqrt(tw))), bulk_max / np.max(x)


@pytest.mark.parametrize(("n", "m", "df"), [(600, 150, 4.0), (200, 200, 3.0), (500, 200, 30.0)])
def test_mp_fit_is_weightwatchers(n, m, df):
    w = np.random.default_rng(n + m).standard_t(df, size=(n, m))
    evals = np.sort(np.linalg.svd(w, compute_uv=False) ** 2) / n
    bulk_max, spikes, softrank = ww_mp_fit(evals, n, m)
    reference = _weightwatcher_fit(evals, n / m, m)
    assert bulk_max == pytest.approx(reference[0], rel=1e-9)
    assert spikes == reference[1]
    assert softrank == pytest.approx(reference[2], rel=1e-9)


def test_a_planted_spike_is_counted_and_columns_are_in_sigma_squared_units():
    rng = np.random.default_rng(3)
    n, m = 800, 200
    w = rng.standard_normal((n, m)) + 6.0 * np.outer(rng.standard_normal(n), rng.standard_normal(m)) / np.sqrt(m)
    evals = np.sort(np.linalg.svd(w, compute_uv=False) ** 2) / n
    columns = ww_columns(evals, n, m)
    assert columns.num_spikes >= 1 and columns.rand_distance is None
    assert columns.mp_softrank == pytest.approx(columns.bulk_max / (n * evals[-1]))
    assert ww_columns(np.zeros(5), 10, 5).bulk_max is None


def test_rand_distance_is_scipys_jensen_shannon_distance_of_the_sorted_spectra():
    rng = np.random.default_rng(4)
    evals, shuffled = np.sort(rng.gamma(1.5, size=300)), np.sort(rng.gamma(2.0, size=300))
    assert jensen_shannon_distance(evals, shuffled) == pytest.approx(
        scipy.spatial.distance.jensenshannon(evals, shuffled), rel=1e-12
    )
    assert ww_columns(evals, 900, 300, shuffled).rand_distance == pytest.approx(
        scipy.spatial.distance.jensenshannon(evals, shuffled), rel=1e-12
    )
    assert jensen_shannon_distance(evals, evals) == 0.0


def test_rand_distance_reads_an_eigensolvers_negative_zero_as_zero():
    evals = np.sort(np.random.default_rng(5).gamma(1.5, size=100))
    shuffled = np.concatenate(([-1e-9], evals[1:]))
    clipped = np.concatenate(([0.0], evals[1:]))
    assert jensen_shannon_distance(evals, shuffled) == pytest.approx(
        scipy.spatial.distance.jensenshannon(evals, clipped), rel=1e-12
    )


def test_a_square_layers_negative_zero_is_fitted_as_zero():
    """A float32 eigensolver gave one of all-MiniLM-L6-v2's 384² layers an eigenvalue of
    −1.07e-10: its square root was NaN, which spoiled the whole kernel density."""
    n = m = 200
    w = np.random.default_rng(6).standard_t(3.0, size=(n, m))
    evals = np.sort(np.linalg.svd(w, compute_uv=False) ** 2) / n
    negative = np.concatenate(([-1e-10], evals[1:]))
    clipped = np.concatenate(([0.0], evals[1:]))
    with np.errstate(invalid="raise"):
        fitted = ww_mp_fit(negative, n, m)
    assert fitted == pytest.approx(ww_mp_fit(clipped, n, m), rel=1e-12)
    reference = _weightwatcher_fit(clipped, 1.0, m)
    assert fitted[0] == pytest.approx(reference[0], rel=1e-9) and fitted[1] == reference[1]
