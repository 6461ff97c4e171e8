"""The torch spectrum backend against numpy, device resolution, and torch staying unimported."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from weightscope.errors import WeightscopeError
from weightscope.linalg.device import eigen_flops, resolve_device
from weightscope.linalg.spectrum import SpectrumOptions, esd, gram_eigenvalues

ROOT = Path(__file__).resolve().parents[2]

torch = pytest.importorskip("torch")
from weightscope.linalg.device import torch_gram_eigenvalues  # noqa: E402 - after importorskip("torch")

SHAPES = [(300, 120), (120, 300), (257, 257), (1000, 64)]


def heavy_tailed(shape, seed):
    return (np.random.default_rng(seed).standard_t(3.0, size=shape) * 0.02).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES)
def test_torch_cpu_matches_numpy_in_float64(shape):
    w = heavy_tailed(shape, 1)
    ours = torch_gram_eigenvalues(w, "float64", "cpu")
    reference = np.linalg.eigvalsh(
        w.astype(np.float64).T @ w.astype(np.float64)
        if shape[0] >= shape[1]
        else w.astype(np.float64) @ w.astype(np.float64).T
    ) / max(shape)
    assert ours.dtype == np.float64 and ours.shape == (min(shape),)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12 * reference[-1])
    np.testing.assert_allclose(ours[-20:], gram_eigenvalues(w)[-20:], rtol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_torch_cpu_float32_within_float32_error(shape):
    w = heavy_tailed(shape, 2)
    ours = torch_gram_eigenvalues(w, "float32", "cpu")
    exact = gram_eigenvalues(w, SpectrumOptions("float64"))
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-5 * exact[-1])
    np.testing.assert_allclose(ours[-10:], exact[-10:], rtol=1e-5)


def test_torch_blocks_accumulate_the_whole_matrix(monkeypatch):
    """Row blocks (forced tiny here) must add up to the one-shot Gram product."""
    import weightscope.linalg.device as device

    monkeypatch.setattr(device, "TRANSFER_BLOCK_BYTES", 7 * 64 * 8)  # 7 rows of 64 float64 per block
    w = heavy_tailed((200, 64), 3)
    np.testing.assert_allclose(device.torch_gram_eigenvalues(w, "float64", "cpu"), gram_eigenvalues(w), rtol=1e-10)


def test_torch_refuses_half_precision():
    with pytest.raises(WeightscopeError, match="float32 or float64"):
        torch_gram_eigenvalues(heavy_tailed((80, 60), 4), "float16", "cpu")


def test_resolve_device_choices():
    assert resolve_device("cpu", [(4096, 4096)]) == "cpu"
    assert resolve_device("auto", [(64, 64)]) == "cpu"  # far too little work for a GPU
    with pytest.raises(WeightscopeError, match="device must be one of"):
        resolve_device("tpu")
    assert eigen_flops([(10, 20)]) == 20 * 10 * 10 + 4 * 10**3


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(WeightscopeError, match="no CUDA device"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_matches_numpy(dtype):
    matrices = [heavy_tailed((3000, 700), 5), heavy_tailed((700, 3000), 6)]
    exact = esd(matrices, SpectrumOptions("float64"))
    on_gpu = esd(matrices, SpectrumOptions(dtype, "cuda"))
    tolerance = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(on_gpu, exact, rtol=0, atol=tolerance * exact[-1])


@pytest.mark.slow
def test_cpu_analysis_never_imports_torch(tmp_path):
    """`import weightscope`, the CLI and a CPU analysis stay torch-free (torch costs seconds)."""
    script = f"""
import sys, numpy as np
import weightscope, weightscope.cli
from weightscope.checkpoint import write_safetensors
write_safetensors({str(tmp_path / "m.safetensors")!r}, {{'w': np.random.default_rng(0).standard_normal((128, 96)).astype(np.float32)}})
report = weightscope.analyze({str(tmp_path / "m.safetensors")!r}, min_evals=10)
assert report.layers[0].status == 'ok', report.layers[0]
assert 'torch' not in sys.modules, 'torch was imported'
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
