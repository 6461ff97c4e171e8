"""The rounding step of each stored value, read off float32's bits, against its definition."""

import numpy as np
import pytest

from weightscope.linalg.rank import _ulp


def _by_definition(w: np.ndarray, bits: int) -> np.ndarray:
    """2^(e − bits) for |w| ∈ [2^(e−1), 2^e) from frexp, 0 for w = 0."""
    _, exponent = np.frexp(w)
    ulp = np.ldexp(np.float32(1.0), exponent - bits).astype(np.float32)
    ulp[w == 0] = 0.0
    return ulp


@pytest.mark.parametrize("bits", [3, 4, 8, 11, 24])
def test_ulp_equals_the_definition_normals_subnormals_and_zeros(bits: int) -> None:
    rng = np.random.default_rng(0)
    tiny = float(np.finfo(np.float32).tiny)
    cases = [rng.standard_normal((64, 48)).astype(np.float32) * np.float32(scale) for scale in (1e-36, 1e-3, 1.0, 1e30)]
    cases.append(np.array([0.0, -0.0, tiny, tiny / 2, tiny / 1024, -tiny / 3, 1e-45, 3.4e38, -1.0, 0.75], np.float32))
    cases.append(cases[1][:, ::3])  # a strided view
    for w in cases:
        got = _ulp(w, bits)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, _by_definition(w, bits))
