"""The "auto" precision's rank is float64's, on every rank case of the suite, at one eigensolve.

"auto" solves in float32 and counts the eigenvalues at numerical zero in float64 by
inertia where float32 cannot settle them (`weightscope.analysis.spectra`). Each case below
is a matrix of a rank test elsewhere (tests/test_checks.py, tests/analysis/test_pipeline_perf.py),
stored in its dtype and analysed end to end both ways; the numerical rank, rank_loss and
verdict must be equal (tests/analysis/test_operation_counts.py checks that no layer was solved twice).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_checks import conditioned, gaussian, to_bf16, to_f16
from weightscope.analysis import spectra
from weightscope.analysis.pipeline import analyze
from weightscope.checkpoint.writer import write_safetensors
from weightscope.execution.plan import Execution
from weightscope.linalg import spectrum
from weightscope.linalg._blas import blas_threads
from weightscope.linalg.inertia import counts_below
from weightscope.linalg.spectrum import gram_counts_below

NO_CACHE = Execution(cache=False)


def low_rank(seed, round_=np.float32, noise=0.0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((512, 20)) @ rng.standard_normal((20, 256)) / np.sqrt(20)
    if noise:
        w = w + noise * rng.standard_normal(w.shape)
    return round_(w).astype(np.float32)


def spiky_bf16():
    rng = np.random.default_rng(3)
    w = (
        gaussian((300, 300), 3)
        + 0.5 * np.outer(rng.standard_normal(300), rng.standard_normal(300)).astype(np.float32) / 300
    )
    w[:, :3] *= 40.0
    return to_bf16(w)


def near_zero_directions():
    rng = np.random.default_rng(5)
    w = conditioned(512, 256, 1e4, rng)
    w[:, :13] = (1e-9 * rng.standard_normal((512, 13))).astype(np.float32)
    return w


def cases(stored: str) -> dict[str, np.ndarray]:
    """{name: matrix} of every rank case stored in ``stored``."""
    return {
        "F32": lambda: {
            **{f"product.{s}.weight": low_rank(s) for s in range(8)},
            **{f"product_noise.{s}.weight": low_rank(s, noise=2e-5) for s in range(8)},
            **{f"gaussian.{i}.weight": gaussian(shape, 1) for i, shape in enumerate([(512, 256), (300, 300)])},
            "near_zero.weight": near_zero_directions(),
        },
        "BF16": lambda: {
            **{f"product.{s}.weight": low_rank(s, to_bf16) for s in range(8)},
            **{f"steep.{s}.weight": to_bf16(conditioned(512, 256, 1e3, np.random.default_rng(s))) for s in range(16)},
            **{f"gaussian.{i}.weight": to_bf16(gaussian(shape, 1)) for i, shape in enumerate([(512, 256), (300, 300)])},
            "spiky.weight": spiky_bf16(),
        },
        "F16": lambda: {
            **{f"product.{s}.weight": low_rank(s, to_f16) for s in range(8)},
            **{f"steep.{s}.weight": to_f16(conditioned(512, 256, 1e4, np.random.default_rng(s))) for s in range(16)},
            **{f"gaussian.{i}.weight": gaussian(shape, 1) for i, shape in enumerate([(512, 256), (300, 300)])},
        },
    }[stored]()


def ranks(report):
    return {layer.name: (layer.rank.numerical_rank, layer.rank.rank_loss, layer.verdict) for layer in report.layers}


@pytest.mark.parametrize("stored", ["F32", "BF16", "F16"])
def test_auto_rank_equals_float64_on_every_rank_case(tmp_path, stored, monkeypatch):
    with blas_threads(1):  # a threaded QR of the test matrices crawls on a loaded machine (285 s here)
        tensors = cases(stored)
    path = tmp_path / "cases.safetensors"
    write_safetensors(path, tensors, dtypes=dict.fromkeys(tensors, stored))
    counted = []

    def gram_counts_below_spy(matrices, shifts, device="cpu"):
        counted.append(len(shifts))
        return gram_counts_below(matrices, shifts, device)

    monkeypatch.setattr(spectra, "gram_counts_below", gram_counts_below_spy)
    auto = analyze(path, min_evals=10, measures=False, execution=NO_CACHE)
    exact = analyze(path, min_evals=10, measures=False, eig_dtype="float64", execution=NO_CACHE)
    assert ranks(auto) == ranks(exact)
    # The float64 count ran, and not on every layer: float32 settled the others.
    assert 0 < len(counted) < len(tensors), counted


def test_counts_below_agree_with_eigenvalues_on_indefinite_matrices():
    """Sylvester's inertia against numpy's eigenvalues, 2×2 pivots included (indefinite);
    several shifts on one matrix count as each shift alone (the matrix is rebuilt between
    factorisations from the triangle LAPACK leaves alone)."""
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 64, 301, 700):
        for trial in range(6):
            a = rng.standard_normal((n, n))
            a = a + a.T if trial % 2 else a @ a.T
            values = np.linalg.eigvalsh(a)
            picks = list(range(0, n - 1, max(1, n // 5)))
            shifts = [float(values[i] + values[i + 1]) / 2 for i in picks]
            expected = [i + 1 for i in picks]
            assert [counts_below(a.copy(), [shift])[0] for shift in shifts] == expected
            assert counts_below(a.copy(), shifts[::-1]) == expected[::-1]


def test_gram_counts_below_scale_like_the_eigenvalues():
    """A matrix far outside float32's range is counted after the same power-of-two scaling
    as its eigenvalues."""
    w = (np.random.default_rng(2).standard_normal((300, 200)) * 1e-30).astype(np.float32)
    values = np.linalg.eigvalsh(w.astype(np.float64).T @ w.astype(np.float64) / 300)
    shifts = [float(values[i] + values[i + 1]) / 2 for i in (49, 150)]
    assert gram_counts_below([w], shifts) == [50, 151]


def test_torch_counts_as_lapack_does():
    """The torch path (CUDA's, here on torch's CPU) counts what LAPACK counts."""
    pytest.importorskip("torch")
    from weightscope.linalg.device import torch_gram_counts_below

    w = np.random.default_rng(4).standard_normal((300, 256)).astype(np.float32)
    values = np.linalg.eigvalsh(w.astype(np.float64).T @ w.astype(np.float64) / 300)
    shifts = [float(values[i] + values[i + 1]) / 2 for i in (0, 10, 200)]
    assert torch_gram_counts_below(w, shifts, "cpu") == gram_counts_below([w], shifts) == [1, 11, 201]


def test_a_constant_matrix_is_counted_in_closed_form(monkeypatch):
    """An 8192² zero matrix decodes from a few hundred bytes; its count, like its spectrum,
    needs no Gram product (a float64 one would take 0.5 GB and a minute)."""
    monkeypatch.setattr(spectrum, "gram_matrix", None)  # any product would fail
    w = np.full((8192, 8192), 0.5, dtype=np.float32)
    assert gram_counts_below([w], [1e-9, 0.25 * 8192]) == [8191, 8191]
    assert gram_counts_below([np.zeros((8192, 8192), dtype=np.float32)], [1e-30]) == [8192]
