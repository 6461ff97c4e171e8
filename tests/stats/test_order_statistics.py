"""`order_statistics` against numpy's partition: the same values, whatever the data."""

import numpy as np
import pytest

from weightscope.stats import outliers
from weightscope.stats.outliers import order_statistics


def _cases() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    cases = []
    for size in (1, 2, 3, 1000, (1 << 18) + 1, 1_000_001):
        cases.append(rng.standard_normal(size).astype(np.float32))
        cases.append(rng.standard_t(2, size).astype(np.float32))
    cases.append(np.tile(np.arange(1000, dtype=np.float32), 1000))  # periodic
    cases.append(np.zeros(500_000, np.float32))
    ones = np.zeros(600_000, np.float32)
    ones[::7] = 1
    cases.append(ones)
    cases.append(np.sort(rng.standard_normal(700_000)).astype(np.float32))
    cases.append(rng.standard_normal(700_000))  # float64
    return cases


@pytest.mark.parametrize("values", _cases(), ids=lambda values: f"{values.size}-{values.dtype}")
def test_order_statistics_are_numpys_partition(values: np.ndarray) -> None:
    size = values.size
    ranks = sorted({0, (size - 1) // 2, size // 2, max(size - 65, 0), size - 1})
    got = order_statistics(values, ranks)
    assert got.dtype == values.dtype
    np.testing.assert_array_equal(got, np.partition(values, ranks)[ranks])
    middle = [(size - 1) // 2, size // 2]
    assert float(np.mean(order_statistics(values, middle))) == float(np.median(values))


def test_a_rank_the_sample_misses_is_still_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bracket of width 0 misses nearly every rank: the full partition answers."""
    monkeypatch.setattr(outliers, "_SELECT_SPREAD", 0.0)
    values = np.random.default_rng(1).standard_normal(400_000).astype(np.float32)
    ranks = [5, 199_999, 200_000, 399_000]
    np.testing.assert_array_equal(order_statistics(values, ranks), np.partition(values, ranks)[ranks])


def test_the_sample_sees_every_column_of_a_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    """65536 rows of 64 values, one column at a tenth of the others' scale: a sample every
    64th value would hold that column alone, the median would fall outside its bracket
    and cost a full partition. Only the bracket's values are partitioned."""
    rng = np.random.default_rng(2)
    matrix = np.abs(rng.standard_normal((65_536, 64))).astype(np.float32)
    matrix[:, 1:] *= 10
    values = matrix.ravel()
    ranks = [(values.size - 1) // 2, values.size // 2]
    expected = np.partition(values, ranks)[ranks]
    partitioned: list[int] = []
    partition = np.partition
    monkeypatch.setattr(np, "partition", lambda a, kth: partitioned.append(a.size) or partition(a, kth))
    np.testing.assert_array_equal(order_statistics(values, ranks), expected)
    assert partitioned and max(partitioned) < values.size // 10
