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

from weightscope.checkpoint.base import CheckpointReader, TensorInfo
from weightscope.errors import CheckpointError

#: Keys under which training frameworks nest the model's state dict (Lightning, DeepSpeed,
#: plain training loops). When one holds a dict, only that dict is read: the rest of the
#: file is optimizer state, schedulers and counters.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module")

#: torch dtype attribute name -> safetensors dtype name (getattr: older torch lacks some).
_DTYPE_NAMES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "float8_e8m0fnu": "F8_E8M0",
    "complex64": "C64",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint64": "U64",
    "uint32": "U32",
    "uint16": "U16",
    "uint8": "U8",
    "bool": "BOOL",
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
        loaded = _load(torch, self.path)
        self._tensors: dict[str, Any] = {}
        for name, tensor in model_tensors(loaded, lambda leaf: isinstance(leaf, torch.Tensor)):
            if name in self._tensors:
                raise CheckpointError(f"{self.path}: two tensors flatten to the name {name!r}")
            self._tensors[name] = tensor
        self._infos = {
            name: TensorInfo(
                name=name,
                shape=tuple(tensor.shape),
                dtype=tensor_dtype_name(tensor.dtype),
                file=str(self.path),
                nbytes=tensor.numel() * tensor.element_size(),
            )
            for name, tensor in self._tensors.items()
        }

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos.values())

    def read(self, info: TensorInfo) -> np.ndarray:
        """Convert one float tensor to numpy.

        Converted dtypes (F16, BF16, F8) come back as fresh, writable float32 arrays. F32
        and F64 come back **read-only**, as views of the loaded (memory-mapped) storage.
        """
        if self._infos.get(info.name) != info:
            raise CheckpointError(f"{self.path}: no tensor {info.name!r} in this file")
        if not info.is_float:
            raise CheckpointError(
                f"{self.path}: tensor {info.name!r} has dtype {info.dtype}; "
                "only float tensors can be read"
            )
        return torch_to_float(self._tensors[info.name], info.dtype)

    def close(self) -> None:
        self._tensors.clear()


def torch_to_float(tensor: Any, dtype: str) -> np.ndarray:
    """A float tensor as numpy float32 (float64 for F64). Without a conversion the array
    shares the tensor's storage and comes back read-only."""
    import torch

    tensor = tensor.detach().cpu()
    target = torch.float64 if dtype == "F64" else torch.float32
    values = tensor.to(target).numpy()
    if tensor.dtype == target:  # no conversion: values share the tensor's storage
        values.flags.writeable = False
    return values


def _import_torch(path: Path) -> Any:
    try:
        import torch
    except ImportError as exc:
        raise CheckpointError(
            f"{path} is a PyTorch pickle; install the torch extra: pip install 'weightscope[torch]'"
        ) from exc
    return torch


def _load(torch: Any, path: Path) -> Any:
    """``torch.load`` with the safe unpickler; every failure becomes one CheckpointError line."""
    mmap = zipfile.is_zipfile(path)  # only the zip format can be memory-mapped
    try:
        with warnings.catch_warnings():
            # The restricted unpickler warns about pickle protocols newer than torch.save's.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises a dozen types for corrupt input
        raise CheckpointError(f"{path}: {_describe_load_error(exc)}") from exc


def _describe_load_error(exc: Exception) -> str:
    """One line from torch's multi-paragraph messages."""
    text = _ANSI_ESCAPE.sub("", str(exc))
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = next(
            (line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()),
            "unsupported content",
        )
        detail = detail.split(". Please use", 1)[0].rstrip(".")
        return f"refused to unpickle (weights_only=True): {detail}; it holds more than tensors"
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"not a readable PyTorch checkpoint ({type(exc).__name__}: {first_line[:200]})"


def model_tensors(loaded: Any, is_leaf: Callable[[Any], bool]) -> Iterator[tuple[str, Any]]:
    """Descend through wrapper keys to the model's state dict, then flatten it to
    (dotted name, leaf) for every leaf (a tensor, an array) under it."""
    while isinstance(loaded, Mapping):
        key = next((k for k in WRAPPER_KEYS if isinstance(loaded.get(k), Mapping)), None)
        if key is None:
            break
        loaded = loaded[key]
    yield from _flatten(loaded, "", is_leaf, set())


def _flatten(
    obj: Any, prefix: str, is_leaf: Callable[[Any], bool], open_containers: set[int]
) -> Iterator[tuple[str, Any]]:
    """Yield (dotted name, tensor) for every tensor under ``obj``; other leaves are dropped.

    ``open_containers`` guards against self-referencing pickles, which the restricted
    unpickler can still build.
    """
    if is_leaf(obj):
        yield prefix or "tensor", obj
        return
    if isinstance(obj, Mapping):
        children = ((str(key), value) for key, value in obj.items())
    elif isinstance(obj, (list, tuple)):
        children = ((str(index), value) for index, value in enumerate(obj))
    else:
        return
    if id(obj) in open_containers:
        return
    open_containers.add(id(obj))
    for key, value in children:
        yield from _flatten(value, f"{prefix}.{key}" if prefix else key, is_leaf, open_containers)
    open_containers.discard(id(obj))


def tensor_dtype_name(dtype: Any) -> str:
    """A torch dtype's safetensors name (torch's own name when there is none)."""
    short = str(dtype).removeprefix("torch.")
    return _DTYPE_NAMES.get(short, str(dtype))
