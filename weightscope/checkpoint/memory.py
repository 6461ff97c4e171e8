"""Models and state dicts already in memory: ``weightscope.analyze(model)``.

Accepts a torch ``nn.Module`` (its ``state_dict()``), or a mapping of names to torch
tensors or numpy arrays (nested mappings and lists are flattened to dotted names, as for
pickles). Values are converted exactly as the file readers convert stored values (bf16 →
float32, float32 unchanged, C order), so a model analysed in memory gives the report its
saved file gives, number for number. Nothing is copied until a tensor is read; nothing
in memory is ever cached on disk (it has no file identity to key the cache by).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from weightscope.checkpoint.base import CheckpointReader, TensorInfo
from weightscope.checkpoint.model_config import head_counts
from weightscope.checkpoint.npz_reader import numpy_dtype_name, numpy_to_float
from weightscope.checkpoint.torch_reader import (
    WRAPPER_KEYS,
    tensor_dtype_name,
    torch_to_float,
)
from weightscope.errors import CheckpointError

#: The ``file`` of an in-memory tensor (not a path: the spectrum cache skips it).
IN_MEMORY = "<memory>"


def is_in_memory(obj: object) -> bool:
    """Whether ``obj`` is a model or state dict rather than a path."""
    return isinstance(obj, Mapping) or _is_torch_module(obj)


def _is_torch_module(obj: object) -> bool:
    return any(cls.__module__ == "torch.nn.modules.module" and cls.__name__ == "Module" for cls in type(obj).__mro__)


def _is_torch_tensor(obj: object) -> bool:
    return any(cls.__module__ == "torch" and cls.__name__ == "Tensor" for cls in type(obj).__mro__)


def describe(obj: object) -> str:
    """How an in-memory source is named in a report's ``source``."""
    if _is_torch_module(obj):
        return f"<{type(obj).__name__} in memory>"
    return "<state dict in memory>"


def _flatten(obj: Any, prefix: str, seen: set[int]) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, np.ndarray) or _is_torch_tensor(obj):
        yield prefix or "tensor", obj
        return
    if isinstance(obj, Mapping):
        children = ((str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        children = ((str(i), v) for i, v in enumerate(obj))
    else:
        return
    if id(obj) in seen:
        return
    seen.add(id(obj))
    for key, value in children:
        yield from _flatten(value, f"{prefix}.{key}" if prefix else key, seen)
    seen.discard(id(obj))


class MemoryReader(CheckpointReader):
    """An in-memory model or state dict, read like a checkpoint."""

    format = "memory"

    def __init__(self, obj: object) -> None:
        self.source = describe(obj)
        config = getattr(obj, "config", None)  # a transformers model carries its config
        if hasattr(config, "to_dict"):
            self.model_config = head_counts(config.to_dict())
        state = obj.state_dict() if _is_torch_module(obj) else obj  # type: ignore[attr-defined]
        while isinstance(state, Mapping):
            key = next((k for k in WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
            if key is None:
                break
            state = state[key]
        self._values: dict[str, Any] = {}
        self._infos: dict[str, TensorInfo] = {}
        for name, value in _flatten(state, "", set()):
            if name in self._values:
                raise CheckpointError(f"{self.source}: two tensors flatten to the name {name!r}")
            if isinstance(value, np.ndarray):
                dtype, nbytes = numpy_dtype_name(value.dtype), value.nbytes
            else:
                dtype, nbytes = tensor_dtype_name(value.dtype), value.numel() * value.element_size()
            self._values[name] = value
            self._infos[name] = TensorInfo(name, tuple(value.shape), dtype, IN_MEMORY, nbytes)
        if not self._infos:
            raise CheckpointError(f"{self.source}: holds no tensors or arrays")

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos.values())

    def read(self, info: TensorInfo) -> np.ndarray:
        if self._infos.get(info.name) != info:
            raise CheckpointError(f"{self.source}: no tensor {info.name!r}")
        if not info.is_float:
            raise CheckpointError(f"{self.source}: tensor {info.name!r} has dtype {info.dtype}; only float tensors can be read")
        value = self._values[info.name]
        if isinstance(value, np.ndarray):
            return numpy_to_float(value, info.dtype)
        return np.ascontiguousarray(torch_to_float(value, info.dtype))
