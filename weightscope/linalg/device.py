"""The torch spectrum backend (CUDA, or CPU torch in tests), and the choice of device.

Only this module imports torch, and only when a torch device is actually used, so
`import weightscope` and every CPU run stay torch-free (torch's import alone costs ~1–2 s).

On a GPU the Gram matrix and ``torch.linalg.eigvalsh`` run in float32 or float64, never
in a half type: BF16/F16 weights are widened on the device (exactly, like the CPU
decoder), and the Gram product accumulates in the eigensolver's dtype. W travels in
row blocks of `TRANSFER_BLOCK_BYTES` from pinned host memory with asynchronous copies on
a side stream, so the copy of block k+1 overlaps the product of block k, and the device
never needs W whole (a 152064×3584 embedding is 2.2 GB in float32; its Gram matrix
51 MB).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from functools import cache

import numpy as np

from weightscope.errors import WeightscopeError, install_hint
from weightscope.linalg.choices import check_device
from weightscope.linalg.gram import oriented
from weightscope.linalg.inertia import negative_pivots

#: Host-to-device copy granularity: large enough to run the copy engine at full speed,
#: small enough that two blocks in flight are negligible next to the Gram matrix.
TRANSFER_BLOCK_BYTES = 64 * 2**20

#: `auto` picks CUDA only for checkpoints with at least this much eigen-work (≈ flops of
#: the Gram products plus the eigensolves): below it, torch's import and CUDA start-up
#: (2–4 s) cost more than the CPU needs for the whole analysis.
AUTO_CUDA_MIN_FLOPS = 2e11


def _torch():  # returns the torch module, imported on first use
    import torch

    return torch


def gpu_present() -> bool:
    """Whether an NVIDIA GPU could be there, without importing torch (cheap checks only)."""
    if importlib.util.find_spec("torch") is None:
        return False
    if os.path.exists("/proc/driver/nvidia/gpus") or os.path.exists("/dev/nvidia0"):
        return True
    return os.name == "nt" and os.path.exists(
        os.path.join(os.environ.get("SystemRoot", r"C:\Windows"), "System32", "nvcuda.dll")  # noqa: SIM112 - Windows spells it so
    )


@cache
def cuda_available() -> bool:
    """torch is importable and sees a CUDA device (imports torch only if a GPU may exist)."""
    return gpu_present() and bool(_torch().cuda.is_available())


def eigen_flops(shapes: Iterable[tuple[int, int]]) -> float:
    """Rough flop count of the spectra of matrices of these (N, M) shapes: N·M² + 4M³."""
    total = 0.0
    for n, m in shapes:
        n, m = max(n, m), min(n, m)
        total += n * m * m + 4.0 * m**3
    return total


def resolve_device(choice: str, shapes: Iterable[tuple[int, int]] = ()) -> str:
    """The device a run uses: "cpu" or "cuda".

    ``auto`` is CUDA when torch sees a GPU and the work is large enough to repay the start
    (`AUTO_CUDA_MIN_FLOPS`); ``cuda`` without a usable GPU is an error, not a silent CPU run.
    """
    if check_device(choice) == "cpu":
        return "cpu"
    if choice == "cuda":
        if importlib.util.find_spec("torch") is None:
            raise WeightscopeError(f"--device cuda needs torch: {install_hint('torch')}")
        if not _torch().cuda.is_available():
            raise WeightscopeError("--device cuda: torch sees no CUDA device")
        return "cuda"
    return "cuda" if eigen_flops(shapes) >= AUTO_CUDA_MIN_FLOPS and cuda_available() else "cpu"


def torch_gram_eigenvalues(matrix: np.ndarray, dtype: str, device: str) -> np.ndarray:
    """Ascending eigenvalues of X = WᵀW/N computed by torch on ``device`` in ``dtype``."""
    if dtype not in ("float32", "float64"):
        raise WeightscopeError(f"torch backend computes in float32 or float64, not {dtype}")
    torch = _torch()
    target = torch.device(device)
    w = oriented(matrix)
    n, m = w.shape
    torch_dtype = getattr(torch, dtype)
    with torch.no_grad():
        gram = torch.zeros((m, m), dtype=torch_dtype, device=target)
        rows = max(1, TRANSFER_BLOCK_BYTES // (m * np.dtype(dtype).itemsize))
        for block in _device_blocks(torch, w, rows, target, torch_dtype):
            gram.addmm_(block.T, block)
        gram /= n
        values = torch.linalg.eigvalsh(gram)
        return values.cpu().numpy().astype(dtype, copy=False)


def torch_gram_counts_below(matrix: np.ndarray, shifts: list[float], device: str) -> list[int]:
    """Eigenvalues of X = WᵀW/N below each shift, counted by torch on ``device`` in float64:
    the Gram matrix once, then per shift a Bunch–Kaufman LDLᵀ of X − shift·I
    (``torch.linalg.ldl_factor``, cuSOLVER's ``sytrf`` on CUDA), whose negative pivots are
    the count (`weightscope.linalg.inertia`); only D and the pivots (O(M)) come back to
    the host."""
    torch = _torch()
    target = torch.device(device)
    w = oriented(matrix)
    n, m = w.shape
    counts = []
    with torch.no_grad():
        gram = torch.zeros((m, m), dtype=torch.float64, device=target)
        rows = max(1, TRANSFER_BLOCK_BYTES // (m * 8))
        for block in _device_blocks(torch, w, rows, target, torch.float64):
            gram.addmm_(block.T, block)
        gram /= n
        for shift in shifts:
            shifted = gram.clone()
            shifted.diagonal().sub_(shift)
            factor, pivots = torch.linalg.ldl_factor(shifted)
            del shifted
            diagonal = factor.diagonal().cpu().numpy()
            subdiagonal = factor.diagonal(offset=-1).cpu().numpy()
            counts.append(negative_pivots(diagonal, subdiagonal, pivots.cpu().numpy()))
    return counts


def _device_blocks(torch, w: np.ndarray, rows: int, target, torch_dtype):
    """Row blocks of W on the device in ``torch_dtype``; on CUDA, each block's copy is
    issued on a side stream before the previous block is handed out, so copies and
    products overlap."""
    starts = range(0, w.shape[0], rows)
    if target.type != "cuda":
        for start in starts:
            yield torch.from_numpy(np.ascontiguousarray(w[start : start + rows])).to(torch_dtype)
        return
    copy_stream = torch.cuda.Stream(device=target)
    compute_stream = torch.cuda.current_stream(target)

    def issue(start: int):
        host = torch.from_numpy(np.ascontiguousarray(w[start : start + rows])).pin_memory()
        with torch.cuda.stream(copy_stream):
            block = host.to(target, non_blocking=True)
            done = torch.cuda.Event()
            done.record(copy_stream)
        return host, block, done

    pending = issue(starts[0])
    for index in range(len(starts)):
        host, block, done = pending
        if index + 1 < len(starts):
            pending = issue(starts[index + 1])
        compute_stream.wait_event(done)
        block.record_stream(compute_stream)
        yield block.to(torch_dtype)
        del host
