"""Open checkpoints and read their tensors lazily, one at a time.

`open_checkpoint` is the one entry point; `write_safetensors` makes synthetic checkpoints
for tests and benchmarks.

Importing this package imports no numpy, and neither does `locate`: finding a
checkpoint's files and telling them apart needs names and first bytes only, so a
command refuses a missing path, a directory with no checkpoint or a file that is not one
before it imports the readers and the pipeline (numpy alone is 0.2–0.3 s of imports on
this 2-core machine: `docs/performance.md`). A reader is imported when its file is opened.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightscope.checkpoint import hub
from weightscope.checkpoint.base import FLOAT_DTYPES, CheckpointReader, TensorInfo
from weightscope.checkpoint.directory import (
    directory_files,
    is_adapter,
    is_index,
    open_directory,
    open_shard_index,
    shard_files,
)
from weightscope.checkpoint.files import FileKind, open_file, reader_kind, sniff
from weightscope.checkpoint.hub import is_cache_dir, looks_like_model_id
from weightscope.checkpoint.model_config import read_model_config
from weightscope.errors import CheckpointError

if TYPE_CHECKING:
    from weightscope.checkpoint.writer import write_safetensors

__all__ = [
    "FLOAT_DTYPES",
    "CheckpointReader",
    "TensorInfo",
    "input_files",
    "locate",
    "open_checkpoint",
    "source_name",
    "write_safetensors",
]


def __getattr__(name: str) -> Any:
    if name != "write_safetensors":
        raise AttributeError(f"module 'weightscope.checkpoint' has no attribute {name!r}")
    from weightscope.checkpoint.writer import write_safetensors  # numpy: only where checkpoints are made

    return write_safetensors


def source_name(source: str | os.PathLike[str] | object) -> str:
    """How a report names what it analysed: the path, or ``<Model in memory>``."""
    from weightscope.checkpoint.memory import describe, is_in_memory

    return describe(source) if is_in_memory(source) else str(source)


def open_checkpoint(path: str | os.PathLike[str] | object) -> CheckpointReader:
    """Open a checkpoint for lazy reading; the format is told by content, not by name.

    Accepts:

    - a torch ``nn.Module`` or a state dict (torch tensors or numpy arrays) in memory; a
      PEFT model in memory is read as base + adapter, as an adapter directory is (an
      `AdapterReader` of its active adapter's factors);
    - a GGUF file (needs the ``gguf`` extra), a numpy ``.npz`` archive;
    - a hub cache entry (``…/hub/models--org--name``) or a model id ``org/name`` that is
      not a path: its ``main`` snapshot, offline (`weightscope.checkpoint.hub.resolve`
      for another revision or to download; needs the ``hub`` extra);

    - a safetensors file, whatever its name;
    - a PyTorch pickle (``.bin``, ``.pt``, ``.pth``, ``.ckpt``, any name; zip or legacy
      format), loaded with ``weights_only=True`` and needing the ``torch`` extra; state
      dicts nested under ``state_dict``/``model_state_dict``/``model``/``module`` are
      unwrapped, other nested dicts are flattened to dotted names;
    - a shard index (``*.safetensors.index.json``, ``pytorch_model.bin.index.json``):
      every shard must exist and hold the tensors the index maps to it;
    - a PEFT LoRA adapter (a directory with ``adapter_config.json``, or its
      ``adapter_model.*`` file): an `AdapterReader`;
    - a directory holding a ``*.safetensors.index.json``, else ``*.safetensors`` files
      (read together as one model; a name in two files is an error), else
      ``pytorch_model.bin.index.json``, else ``pytorch_model.bin``, else its one GGUF or npz file.

    Anything else (a missing path, an empty directory, a text file, a truncated or forged
    file, a pickle holding more than tensors) raises `CheckpointError` with one line
    naming the path. Use the reader as a context manager.
    """
    if not isinstance(path, (str, os.PathLike)):  # a model in memory, else a mistake
        from weightscope.checkpoint.lora import is_peft_model, peft_model_adapter
        from weightscope.checkpoint.memory import MemoryReader, is_in_memory

        if is_in_memory(path):
            return peft_model_adapter(path, MemoryReader(path)) if is_peft_model(path) else MemoryReader(path)
        raise CheckpointError(f"cannot analyse a {type(path).__name__}: give a path, a torch nn.Module or a state dict")
    path, open_located = _locate(Path(path))
    reader = open_located()
    reader.model_config = read_model_config(path)
    return reader


def locate(path: str | os.PathLike[str]) -> Path:
    """The path `open_checkpoint` reads for ``path`` (a hub cache entry or model id
    resolved to its snapshot), or the `CheckpointError` it raises for a path that holds
    no checkpoint: missing, a directory without one, a file of no format. From names and
    first bytes only, without numpy; a damaged file of a known format is its reader's to
    report, when it is opened."""
    return _locate(Path(path))[0]


def _locate(path: Path) -> tuple[Path, Callable[[], CheckpointReader]]:
    """Where the checkpoint is and how to open it (`locate`)."""
    try:
        path.stat()
    except PermissionError as exc:  # a directory on the way refuses us; is_dir() would raise too
        raise CheckpointError(f"{path}: cannot read: {exc.strerror}") from None
    except OSError:
        pass  # missing, dangling or looping: said below
    if is_cache_dir(path) or looks_like_model_id(str(path)):
        path = hub.resolve(path)
    if is_adapter(path):
        return path, lambda: _open_adapter(path)
    if path.is_dir():
        directory_files(path)  # the directory's own error, before any reader is imported
        return path, lambda: open_directory(path)
    if not path.exists():
        if path.is_symlink():
            raise CheckpointError(f"{path}: a symlink that leads nowhere (dangling, or a loop)")
        raise CheckpointError(f"{path}: no such file or directory")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file or directory")
    kind = sniff(path)
    if kind is FileKind.JSON:
        return path, lambda: open_shard_index(path)
    kind = reader_kind(path, kind)
    return path, lambda: open_file(path, kind)


def _open_adapter(path: Path) -> CheckpointReader:
    from weightscope.checkpoint.lora import open_adapter

    return open_adapter(path, open_file)


def input_files(path: str | os.PathLike[str]) -> list[Path]:
    """Every file that reading ``path`` would open, found from names and the index alone.

    Commands pass these to `weightscope.io.check_outputs` before any work, so an output
    path that names a checkpoint file, a shard or the index is refused. Whatever cannot be
    listed (a missing path, a broken index) is left to `open_checkpoint` to report; the
    path itself is always included.
    """
    path = Path(path)
    found = [path]
    if is_cache_dir(path) or looks_like_model_id(str(path)):
        return [path, *hub.cached_files(path)]
    try:
        files = directory_files(path) if path.is_dir() else [path]
        for file in files:
            found.append(file)
            if file.is_file() and (is_index(file) or sniff(file) is FileKind.JSON):  # never open a FIFO
                found.extend(shard_files(file))
    except (CheckpointError, OSError):
        pass
    return found
