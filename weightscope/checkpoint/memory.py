"""Models and state dicts already in memory: ``weightscope.analyze(model)``.

Accepts a torch ``nn.Module`` (its ``state_dict()``), or a mapping of names to torch
tensors or numpy arrays (nested mappings and lists are flattened to dotted names, as for
pickles). Values are converted exactly as the file readers convert stored values (bf16 →
float32, float32 unchanged, C order), so a model analysed in memory gives the report its
saved file gives, number for number. Nothing is copied until a tensor is read; nothing
in memory is ever cached on disk (it has no file identity to key the cache by). A tensor
whose values cannot be read as a dense matrix (meta, sparse, CSR, nested, a view larger
than its storage) fails only its own layer, as in the torch file reader.
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
    tensor_problem,
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
        self._problems: dict[str, str] = {}
        for name, value in model_tensors(state, lambda leaf: isinstance(leaf, np.ndarray) or _is_torch_tensor(leaf)):
            if name in self._values:
                raise CheckpointError(f"{self.source}: two tensors flatten to the name {name!r}")
            self._values[name] = value
            if isinstance(value, np.ndarray):
                self._infos[name] = TensorInfo(
                    name, tuple(value.shape), numpy_dtype_name(value.dtype), IN_MEMORY, value.nbytes
                )
                continue
            import torch

            problem = tensor_problem(value, torch)
            if problem is not None:
                self._problems[name] = problem
            nested = value.is_nested  # no one shape: listed, skipped
            self._infos[name] = TensorInfo(
                name,
                () if nested else tuple(value.shape),
                "nested" if nested else tensor_dtype_name(value.dtype),
                IN_MEMORY,
                0 if problem is not None else value.numel() * value.element_size(),
            )
        if not self._infos:
            raise CheckpointError(f"{self.source}: holds no tensors or arrays")

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos.values())

    def read(self, info: TensorInfo) -> np.ndarray:
        check_readable(self._infos, info, self.source)
        if info.name in self._problems:
            raise CheckpointError(f"{self.source}: tensor {info.name!r} {self._problems[info.name]}")
        value = self._values[info.name]
        if isinstance(value, np.ndarray):
            return numpy_to_float(value, info.dtype)
        return np.ascontiguousarray(torch_to_float(value, info.dtype))
