"""Norm metrics against closed forms."""

import numpy as np

from weightscope.linalg.spectrum import SpectrumOptions, esd
from weightscope.stats.norms import norm_metrics


def test_norms_of_a_known_matrix_match_closed_forms():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((300, 120))
    evals = esd([w])
    m = norm_metrics(evals, 300)
    sv = np.linalg.svd(w, compute_uv=False)
    # WeightWatcher's definitions: σ² of W itself
    assert np.isclose(m.lambda_max, sv[0] ** 2)
    assert np.isclose(m.log_norm, np.log10((w**2).sum()))
    assert np.isclose(m.log_spectral_norm, np.log10(sv[0] ** 2))
    # the width-normalised variants: σ²/N
    assert np.isclose(m.log_norm_per_n, np.log10((w**2).sum() / 300))
    assert np.isclose(m.log_spectral_norm_per_n, np.log10(sv[0] ** 2 / 300))
    assert np.isclose(m.stable_rank, (sv**2).sum() / sv[0] ** 2)
    assert 0.9 < m.entropy < 1.0  # a Gaussian spectrum is nearly flat in entropy


def test_entropy_and_stable_rank_extremes():
    one_direction = norm_metrics(np.array([0.0] * 99 + [5.0]), 100)
    assert one_direction.entropy == 0.0 and one_direction.stable_rank == 1.0
    flat = norm_metrics(np.ones(100), 100)
    assert np.isclose(flat.entropy, 1.0) and np.isclose(flat.stable_rank, 100)


def test_esd_is_transpose_invariant_and_float32_close():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((200, 80)).astype(np.float32)
    np.testing.assert_allclose(esd([w]), esd([w.T]), rtol=1e-10)
    np.testing.assert_allclose(esd([w], SpectrumOptions("float32")), esd([w]), rtol=1e-4, atol=1e-5)
