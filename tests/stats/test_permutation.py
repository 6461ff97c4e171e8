"""The shuffled copy's order: uniform over all orders in one piece and bucket by bucket,
the same order as numpy's shuffle in one piece, and the entries kept exactly."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from weightscope.stats import permutation
from weightscope.stats.permutation import centred_permutation


@pytest.fixture
def small_buckets(monkeypatch):
    """Buckets of 2 above 4 entries, so that few entries take the bucketed path."""
    monkeypatch.setattr(permutation, "ONE_PIECE_MAX", 4)
    monkeypatch.setattr(permutation, "BUCKET", 2)


def _order(values: np.ndarray, shuffled: np.ndarray) -> np.ndarray:
    """Which entry of ``values`` (distinct, ascending) each place of ``shuffled`` holds."""
    return np.searchsorted(values, shuffled)


def test_the_bucketed_order_is_uniform_over_all_orders(small_buckets):
    # 5 entries in buckets of 2, 2 and 1, from chunks of 2, 2 and 1: every one of the 120
    # orders turns up as often as chance allows (a chi-square test of 24 000 seeded draws).
    values = np.arange(5, dtype=np.float32) * 2.0 - 4.0  # mean 0: centring moves nothing
    counts = dict.fromkeys(itertools.permutations(range(5)), 0)
    for seed in range(24_000):
        counts[tuple(_order(values, centred_permutation([values], np.random.default_rng(seed))).tolist())] += 1
    assert len(counts) == math.factorial(5)
    assert min(counts.values()) > 0
    assert scipy.stats.chisquare(list(counts.values())).pvalue > 1e-3


def test_every_entry_lands_anywhere_with_equal_chance_across_sources(small_buckets):
    # Two matrices of 3×4 and a bucket of 2: entry i's place is uniform over the 24 places.
    values = np.arange(24, dtype=np.float32) - 11.5
    places = np.zeros((24, 24), dtype=np.int64)
    for seed in range(6_000):
        shuffled = centred_permutation(
            [values[:12].reshape(3, 4), values[12:].reshape(3, 4)], np.random.default_rng(seed)
        )
        places[_order(values, shuffled), np.arange(24)] += 1
    assert scipy.stats.chisquare(places.ravel()).pvalue > 1e-3


def test_one_piece_is_numpys_shuffle_of_the_centred_entries():
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((300, 200)).astype(np.float32) + 1.5
    centred = matrix.ravel() - np.float32(np.mean(matrix, dtype=np.float64))
    np.random.default_rng(11).shuffle(centred)
    np.testing.assert_array_equal(centred_permutation([matrix], np.random.default_rng(11)), centred)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_the_bucketed_copy_holds_exactly_the_centred_float32_entries(dtype):
    # Above ONE_PIECE_MAX for real: 3 × 1200 × 700 entries, three sources, in no bucket's order.
    rng = np.random.default_rng(5)
    matrices = [(rng.standard_normal((1200, 700)) + 0.25).astype(dtype) for _ in range(3)]
    assert sum(m.size for m in matrices) > permutation.ONE_PIECE_MAX
    before = [m.copy() for m in matrices]
    shuffled = centred_permutation(matrices, np.random.default_rng(0))
    entries = np.concatenate([m.ravel() for m in matrices]).astype(np.float32)
    mean = np.float32(np.mean(entries, dtype=np.float64))
    assert shuffled.dtype == np.float32
    np.testing.assert_array_equal(np.sort(shuffled), np.sort(entries - mean))
    for matrix, original in zip(matrices, before, strict=True):
        np.testing.assert_array_equal(matrix, original)
    # Seeded, and no stretch of the input survives in place.
    np.testing.assert_array_equal(centred_permutation(matrices, np.random.default_rng(0)), shuffled)
    assert np.mean(shuffled[:100_000] == (entries - mean)[:100_000]) < 1e-3
