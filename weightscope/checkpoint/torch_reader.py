"""Reader for PyTorch pickles (``.bin``, ``.pt``, ``.pth``, ``.ckpt``, any name).

Pickles can run arbitrary code, so they are only ever opened with
``torch.load(weights_only=True)``, whose restricted unpickler refuses any class or function
that is not a tensor building block; a refusal becomes a `CheckpointError`. torch is an
optional dependency and is imported only when a pickle is actually opened.

The zip format (torch >= 1.6) is memory-mapped, so tensor data stays on disk until read.
The legacy (pre-zip) format cannot be mapped and is loaded whole into memory.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from weightscope.checkpoint.base import (
    CheckpointReader,
    TensorInfo,
    file_identity,
    read_exactly,
)
from weightscope.checkpoint.dtypes import NUMPY_NAMES
from weightscope.errors import CheckpointError, install_hint

#: Keys under which training frameworks nest the model's state dict (Lightning, DeepSpeed,
#: plain training loops). When one holds a dict, only that dict is read: the rest of the
#: file is optimizer state, schedulers and counters.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module")

#: torch dtype attribute name -> safetensors dtype name (getattr: older torch lacks some).
_DTYPE_NAMES = {
    **NUMPY_NAMES,
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "float8_e8m0fnu": "F8_E8M0",
    "complex64": "C64",
}

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class TorchReader(CheckpointReader):
    """One PyTorch pickle, loaded with ``weights_only=True`` and flattened to named tensors.

    Names are the state-dict keys; nested dicts and lists are joined with dots
    (``{"encoder": {"w": t}}`` -> ``encoder.w``). Dtypes use the safetensors names; torch
    dtypes without one (e.g. complex128) keep torch's name and are listed but not readable.
    """

    format = "torch"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        torch = _import_torch(self.path)
        mapped = zipfile.is_zipfile(self.path)  # only the zip format can be memory-mapped
        try:
            self._identity = file_identity(os.stat(self.path))
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot read file: {exc.strerror or exc}") from exc
        loaded = _load(torch, self.path, mapped)
        self._tensors: dict[str, Any] = {}
        try:
            for name, tensor in model_tensors(loaded, lambda leaf: isinstance(leaf, torch.Tensor)):
                if name in self._tensors:
                    raise CheckpointError(f"two tensors flatten to the name {name!r}")
                self._tensors[name] = tensor
        except CheckpointError as exc:
            raise CheckpointError(f"{self.path}: {exc}") from None
        self._problems = {
            name: problem for name, tensor in self._tensors.items() if (problem := tensor_problem(tensor, torch))
        }
        self._infos = {
            name: TensorInfo(
                name=name,
                shape=() if tensor.is_nested else tuple(tensor.shape),
                dtype="nested" if tensor.is_nested else tensor_dtype_name(tensor.dtype),  # no one shape: skipped
                file=str(self.path),
                nbytes=0 if name in self._problems else tensor.numel() * tensor.element_size(),
            )
            for name, tensor in self._tensors.items()
        }
        #: where each mapped storage's bytes start in the file (by storage address);
        #: None for the legacy format, which torch loads whole into memory
        self._offsets = _storage_offsets(self.path, self._identity, self._readable()) if mapped else None
        self._copy_from_map = mapped and self._offsets is None  # the rare layout read from the map
        self._size = os.stat(self.path).st_size

    def _readable(self) -> list[Any]:
        return [tensor for name, tensor in self._tensors.items() if name not in self._problems]

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos.values())

    def read(self, info: TensorInfo) -> np.ndarray:
        """Convert one float tensor to a fresh, writable numpy array (float32, or float64 for F64).

        A zip pickle is loaded memory-mapped, so that tensor data stays on disk until read;
        but touching a mapped page of a file truncated since (a training loop rewriting
        ``latest.pt`` in place) kills the process with SIGBUS. So the map is never
        touched: the tensor's bytes are read from the file with ``os.preadv``
        (`weightscope.checkpoint.base.read_exactly`), at the offset of its storage, and
        the tensor is rebuilt over them with its own strides.
        """
        if self._infos.get(info.name) != info:
            raise CheckpointError(f"{self.path}: no tensor {info.name!r} in this file")
        if info.name in self._problems:
            raise CheckpointError(f"{self.path}: tensor {info.name!r} {self._problems[info.name]}")
        if not info.is_float:
            raise CheckpointError(
                f"{self.path}: tensor {info.name!r} has dtype {info.dtype}; only float tensors can be read"
            )
        import torch

        tensor = self._tensors[info.name].detach()
        if self._offsets is not None:
            tensor = self._read_mapped(torch, info.name, tensor)
        elif self._copy_from_map and _still(self.path) != (self._identity, self._size):
            raise CheckpointError(f"{self.path}: file changed since it was opened (rewritten while being read?)")
        return torch_to_float(tensor, info.dtype, copy=True)

    def _read_mapped(self, torch: Any, name: str, tensor: Any) -> Any:
        """The tensor rebuilt over its bytes read from the file (its map left untouched)."""
        if tensor.numel() == 0:
            return torch.empty(tensor.shape, dtype=tensor.dtype)
        size = tensor.element_size()
        first = tensor.storage_offset()
        last = first + sum((extent - 1) * step for extent, step in zip(tensor.shape, tensor.stride(), strict=True))
        start = self._offsets[tensor.untyped_storage().data_ptr()] + first * size  # type: ignore[index]  # only called when _offsets is set (read)
        raw = read_exactly(self.path, self._identity, start, (last - first + 1) * size, name)
        flat = torch.frombuffer(raw, dtype=tensor.dtype)
        return torch.as_strided(flat, tuple(tensor.shape), tuple(tensor.stride()), 0)

    def close(self) -> None:
        self._tensors.clear()


def _import_torch(path: Path) -> Any:
    try:
        import torch
    except ImportError as exc:
        raise CheckpointError(f"{path} is a PyTorch pickle; install the torch extra: {install_hint('torch')}") from exc
    return torch


def _still(path: Path) -> tuple[tuple[int, int], int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return file_identity(st), st.st_size


def _storage_offsets(path: Path, identity: tuple[int, int], tensors: list[Any]) -> dict[int, int] | None:
    """File offset of every tensor's storage, keyed by the storage's address.

    ``torch.load(mmap=True)`` maps the file and makes each storage a slice of that map;
    the kernel's own table of this process's maps (``/proc/self/maps``: address range,
    file offset, device and inode of each) says which file byte an address shows. None
    where that table is missing (not Linux) or an address is not in a map of this file:
    reading then falls back to copying from the map.
    """
    addresses = {tensor.untyped_storage().data_ptr() for tensor in tensors if tensor.numel()}
    device = f"{os.major(identity[0]):02x}:{os.minor(identity[0]):02x}"
    try:
        table = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    regions = []
    for line in table:
        fields = line.split(maxsplit=5)
        same_inode = len(fields) >= 5 and fields[3] == device and fields[4] == str(identity[1])
        if same_inode or (len(fields) == 6 and fields[5] == real):  # overlayfs shows the lower inode
            start, end = (int(bound, 16) for bound in fields[0].split("-"))
            regions.append((start, end, int(fields[2], 16)))
    offsets = {}
    for address in addresses:
        region = next((r for r in regions if r[0] <= address < r[1]), None)
        if region is None:
            return None
        offsets[address] = address - region[0] + region[2]
    return offsets


def _load(torch: Any, path: Path, mmap: bool) -> Any:
    """``torch.load`` with the safe unpickler; every failure becomes one CheckpointError line."""
    try:
        with warnings.catch_warnings():
            # The restricted unpickler warns about pickle protocols newer than torch.save's.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except MemoryError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: {_describe_load_error(exc)}") from exc


#: torch's names for what its restricted unpickler refused, in the message it raises.
_REFUSED_GLOBAL = re.compile(r"(?:unsupported (?:GLOBAL|global:?)\s+(?:GLOBAL\s+)?)([\w.]+)", re.IGNORECASE)


def _describe_load_error(exc: Exception) -> str:
    """One line from torch's multi-paragraph messages, without its advice.

    torch's text suggests re-running with ``weights_only=False``: advice that runs the
    checkpoint's code, which a user of this tool must never be told to follow. What was
    refused is named instead.
    """
    text = _ANSI_ESCAPE.sub("", str(exc))
    refused = _REFUSED_GLOBAL.search(text)
    if refused:
        return (
            f"refused to unpickle: the pickle calls {refused.group(1)}; "
            "weightscope never runs code from a checkpoint (it holds more than tensors)"
        )
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = next(
            (line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()),
            "unsupported content",
        )
        detail = detail.split(". Please use", 1)[0].rstrip(".")
        return f"refused to unpickle (weights_only=True): {detail}; it holds more than tensors"
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    first_line = lines[0] if lines else "unreadable content"
    return f"not a readable PyTorch checkpoint ({type(exc).__name__}: {first_line[:200]})"


def torch_to_float(tensor: Any, dtype: str, copy: bool = False) -> np.ndarray:
    """A float tensor as numpy float32 (float64 for F64). Without a conversion or a
    ``copy`` the array shares the tensor's storage and comes back read-only; a tensor over
    a file's map is copied (``copy``), so a file truncated later cannot fault its values."""
    import torch

    tensor = tensor.detach().cpu()
    target = torch.float64 if dtype == "F64" else torch.float32
    values = tensor.to(target, copy=copy).numpy()
    if not copy and tensor.dtype == target:  # no conversion: values share the tensor's storage
        values.flags.writeable = False
    return values


def model_tensors(loaded: Any, is_leaf: Callable[[Any], bool]) -> Iterator[tuple[str, Any]]:
    """Descend through wrapper keys to the model's state dict, then flatten it to
    (dotted name, leaf) for every leaf (a tensor, an array) under it."""
    while isinstance(loaded, Mapping):
        key = next((k for k in WRAPPER_KEYS if isinstance(loaded.get(k), Mapping)), None)
        if key is None:
            break
        loaded = loaded[key]
    yield from _flatten(loaded, "", is_leaf)


#: Deepest container nesting followed; state dicts nest a few levels, never hundreds.
MAX_DEPTH = 100

#: Most tensor names one pickle may flatten to (the largest models have ~10⁵ tensors).
MAX_NAMES = 1_000_000


def _flatten(obj: Any, prefix: str, is_leaf: Callable[[Any], bool]) -> Iterator[tuple[str, Any]]:
    """Yield (dotted name, leaf) for every leaf under ``obj``; other values are dropped.

    Linear in the pickle's size: each container is walked once, by identity, and a
    container met again (shared structure, e.g. ``(X, X)`` nested 40 deep, which a 1 KB
    pickle can build: 2⁴⁰ name paths) or inside itself is not walked again. The walk
    uses its own stack, so deep nesting is an error, never a RecursionError.
    """
    seen: set[int] = set()
    names = 0
    stack: list[tuple[Any, str, int]] = [(obj, prefix, 0)]
    while stack:
        node, name, depth = stack.pop()
        if is_leaf(node):
            names += 1
            if names > MAX_NAMES:
                raise CheckpointError(f"more than {MAX_NAMES} tensors; not a model state dict")
            yield name or "tensor", node
            continue
        if isinstance(node, Mapping):
            children = [(str(key), value) for key, value in node.items()]
        elif isinstance(node, (list, tuple)):
            children = [(str(index), value) for index, value in enumerate(node)]
        else:
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        if depth >= MAX_DEPTH:
            raise CheckpointError(
                f"containers nested more than {MAX_DEPTH} deep at {name[:80]!r}; not a model state dict"
            )
        stack.extend((value, f"{name}.{key}" if name else key, depth + 1) for key, value in reversed(children))


def tensor_problem(tensor: Any, torch: Any) -> str | None:
    """Why a tensor's values cannot be read, from its metadata alone (None: readable).

    Checked at open, before any data is touched: a 618-byte pickle can declare a
    100000×100000 tensor over a one-element storage (stride 0), which materialising
    would turn into a 37 GB allocation.
    """
    if tensor.is_nested:
        return "is a nested tensor; only dense tensors are analysed"
    if tensor.layout != torch.strided:
        return f"has layout {str(tensor.layout).removeprefix('torch.')}; only dense tensors are analysed"
    if tensor.device.type == "meta":
        return "is a meta tensor: it has a shape but no stored values"
    declared = tensor.numel() * tensor.element_size()
    stored = tensor.untyped_storage().nbytes()
    if tensor.numel() and (
        any(step < 0 for step in tensor.stride())
        or (
            tensor.storage_offset()
            + sum((size - 1) * step for size, step in zip(tensor.shape, tensor.stride(), strict=True))
            + 1
        )
        * tensor.element_size()
        > stored
        or declared > stored
    ):
        return f"declares {declared} bytes ({'×'.join(map(str, tensor.shape))}) but its storage holds {stored}"
    return None


def tensor_dtype_name(dtype: Any) -> str:
    """A torch dtype's safetensors name (torch's own name when there is none)."""
    short = str(dtype).removeprefix("torch.")
    return _DTYPE_NAMES.get(short, str(dtype))
