"""Checkpoints spread over several files: model directories and sharded models.

A Hugging Face model directory holds either one file (``model.safetensors``,
``pytorch_model.bin``) or shards listed by an index (``*.index.json``, whose
``weight_map`` maps every tensor name to its shard). Any directory of safetensors files
is also read as one model. Either way the files become one `MultiFileReader`, and tensor
names must be unique across them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from weightscope.checkpoint.base import CheckpointReader, TensorInfo
from weightscope.checkpoint.files import format_family, open_file
from weightscope.errors import CheckpointError

if TYPE_CHECKING:  # without numpy: a command checks a directory before it imports the readers
    import numpy as np

SAFETENSORS_INDEX_SUFFIX = ".safetensors.index.json"
TORCH_SINGLE_FILE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
#: What makes a directory a PEFT adapter (`weightscope.checkpoint.lora`).
ADAPTER_CONFIG = "adapter_config.json"
#: Formats whose one file in a directory is the directory's checkpoint (a run's step
#: directory holding model.gguf): they are never sharded across files here.
SINGLE_FILE_FORMATS = ("gguf", "npz")

#: Shard indexes are a few MB at most; refuse to parse anything absurd.
_MAX_INDEX_BYTES = 100 * 1024 * 1024


class MultiFileReader(CheckpointReader):
    """Several checkpoint files read as one model; it owns (and closes) its readers."""

    def __init__(self, readers: Sequence[CheckpointReader], source: Path) -> None:
        self.source = source
        self._readers = list(readers)
        self.format = "+".join(dict.fromkeys(reader.format for reader in self._readers))
        self._owner: dict[str, CheckpointReader] = {}
        self._infos: dict[str, TensorInfo] = {}
        for reader in self._readers:
            for info in reader.tensors():
                if info.name in self._infos:
                    raise CheckpointError(
                        f"{source}: tensor {info.name!r} is stored twice, in "
                        f"{Path(self._infos[info.name].file).name} and {Path(info.file).name}"
                    )
                self._owner[info.name] = reader
                self._infos[info.name] = info

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos.values())

    def read(self, info: TensorInfo) -> np.ndarray:
        owner = self._owner.get(info.name)
        if owner is None:
            raise CheckpointError(f"{self.source}: no tensor {info.name!r} in this checkpoint")
        return owner.read(info)

    def close(self) -> None:
        for reader in self._readers:
            reader.close()


def directory_files(directory: Path) -> list[Path]:
    """The file(s) that hold a directory's checkpoint: its one shard index, else its
    safetensors files, else the torch index, else ``pytorch_model.bin``, else its one
    GGUF or npz file."""
    try:
        files = sorted(p for p in directory.iterdir() if p.is_file())
    except OSError as exc:
        raise CheckpointError(f"{directory}: cannot list directory: {exc.strerror or exc}") from exc
    if not files:
        raise CheckpointError(f"{directory}: directory holds no files")
    indexes = [p for p in files if p.name.endswith(SAFETENSORS_INDEX_SUFFIX)]
    if len(indexes) > 1:
        names = ", ".join(p.name for p in indexes)
        raise CheckpointError(f"{directory}: several shard indexes ({names}); pass one of them")
    if indexes:
        return indexes
    safetensors_files = [p for p in files if p.suffix == ".safetensors"]
    if safetensors_files:
        return safetensors_files
    for name in (TORCH_INDEX, TORCH_SINGLE_FILE):
        if (directory / name).is_file():
            return [directory / name]
    singles = [p for p in files if format_family(p) in SINGLE_FILE_FORMATS]
    if len(singles) == 1:
        return singles
    raise CheckpointError(
        f"{directory}: no checkpoint in directory (looked for *.safetensors, "
        f"*{SAFETENSORS_INDEX_SUFFIX}, {TORCH_SINGLE_FILE}, {TORCH_INDEX}, one *.gguf or *.npz)"
    )


def is_adapter(path: Path) -> bool:
    """Whether ``path`` is a PEFT adapter directory (or the weights file inside one)."""
    directory = path if path.is_dir() else path.parent
    return (directory / ADAPTER_CONFIG).is_file() and (path.is_dir() or path.name.startswith("adapter_model"))


def is_index(path: Path) -> bool:
    return path.name.endswith(SAFETENSORS_INDEX_SUFFIX) or path.name == TORCH_INDEX


def open_directory(directory: Path) -> CheckpointReader:
    """Open the checkpoint a directory holds; safetensors wins over torch pickles."""
    files = directory_files(directory)
    if len(files) == 1 and is_index(files[0]):
        return open_shard_index(files[0])
    return _open_together(files, directory)


def shard_files(index_path: Path, weight_map: dict[str, str] | None = None) -> list[Path]:
    """The shards a shard index names, each checked to lie beside it and to exist."""
    weight_map = _read_weight_map(index_path) if weight_map is None else weight_map
    directory = index_path.parent
    shards = []
    for name in dict.fromkeys(weight_map.values()):
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise CheckpointError(f"{index_path}: shard path {name!r} leaves the index's directory")
        if not (directory / name).is_file():
            raise CheckpointError(f"{index_path}: shard {name} is missing")
        shards.append(directory / name)
    return shards


def open_shard_index(index_path: Path) -> CheckpointReader:
    """Open a sharded model from its index, checking the index against the shards."""
    weight_map = _read_weight_map(index_path)
    shards = shard_files(index_path, weight_map)
    names = list(dict.fromkeys(weight_map.values()))

    def check_against_index(readers: Sequence[CheckpointReader]) -> None:
        held = {name: {info.name for info in reader.tensors()} for name, reader in zip(names, readers, strict=True)}
        for tensor, shard in weight_map.items():
            if tensor not in held[shard]:
                raise CheckpointError(f"{index_path}: index maps tensor {tensor!r} to {shard}, which does not hold it")

    return _open_together(shards, index_path, check_against_index)


def _open_together(
    paths: Sequence[Path],
    source: Path,
    check: Callable[[Sequence[CheckpointReader]], None] | None = None,
) -> CheckpointReader:
    """Open every file as one model; on any failure close what was already opened."""
    with ExitStack() as opened:
        readers = [opened.enter_context(open_file(path)) for path in paths]
        if check is not None:
            check(readers)
        combined = readers[0] if len(readers) == 1 else MultiFileReader(readers, source)
        opened.pop_all()
    return combined


def _read_weight_map(index_path: Path) -> dict[str, str]:
    try:
        if index_path.stat().st_size > _MAX_INDEX_BYTES:
            raise CheckpointError(f"{index_path}: shard index is larger than 100 MB")
        index = json.loads(index_path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{index_path}: cannot read file: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{index_path}: not valid JSON: {exc}") from exc
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f'{index_path}: not a shard index (no "weight_map" object)')
    if not all(isinstance(shard, str) for shard in weight_map.values()):
        raise CheckpointError(f"{index_path}: weight_map values must be shard file names")
    return weight_map
