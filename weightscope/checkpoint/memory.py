"""Models and state dicts already in memory: ``weightscope.analyze(model)``.

Accepts a torch ``nn.Module`` (its ``state_dict()``), or a mapping of names to torch
tensors or numpy arrays (nested mappings and lists are flattened to dotted names, as for
pickles). Values are converted exactly as the file readers convert stored values (bf16 →
float32, float32 unchanged, C order), so a model analysed in memory gives the report its
saved file gives, number for number. Nothing is copied until a tensor is read; nothing
in memory is ever cached on disk (it has no file identity to key the cache by).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from weightscope.checkpoint.base import CheckpointReader, TensorInfo, check_readable
from weightscope.checkpoint.model_config import head_counts
from weightscope.checkpoint.npz_reader import numpy_dtype_name, numpy_to_float
from weightscope.checkpoint.torch_reader import (
    model_tensors,
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


class MemoryReader(CheckpointReader):
    """An in-memory model or state dict, read like a checkpoint."""

    format = "memory"

    def __init__(self, obj: object) -> None:
        self.source = describe(obj)
        config: Any = getattr(obj, "config", None)  # a transformers model carries its config
        if hasattr(config, "to_dict"):
            self.model_config = head_counts(config.to_dict())
        state = obj.state_dict() if _is_torch_module(obj) else obj  # type: ignore[attr-defined]  # _is_torch_module: an nn.Module
        self._values: dict[str, Any] = {}
        self._infos: dict[str, TensorInfo] = {}
        for name, value in model_tensors(state, lambda leaf: isinstance(leaf, np.ndarray) or _is_torch_tensor(leaf)):
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
        check_readable(self._infos, info, self.source)
        value = self._values[info.name]
        if isinstance(value, np.ndarray):
            return numpy_to_float(value, info.dtype)
        return np.ascontiguousarray(torch_to_float(value, info.dtype))
