"""Tell checkpoint files apart by their first bytes, and open a single checkpoint file.

Names lie (``model.bin`` may be safetensors, ``weights`` may be a zip pickle), so the
content decides; the extension is only used to give a sharper error when the content is
unrecognisable.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path

from weightscope.checkpoint.base import CheckpointReader
from weightscope.checkpoint.gguf_reader import GGUF_MAGIC, GGUFCheckpoint
from weightscope.checkpoint.npz_reader import NpzReader, is_npz
from weightscope.checkpoint.safetensors_reader import (
    MAX_HEADER_BYTES,
    SafetensorsReader,
)
from weightscope.checkpoint.torch_reader import TorchReader
from weightscope.errors import CheckpointError

TORCH_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt"})
#: The file suffixes of each format a reader here opens, by format (`FileKind` value).
FORMAT_SUFFIXES = {
    "safetensors": frozenset({".safetensors"}),
    "torch pickle": TORCH_SUFFIXES,
    "gguf": frozenset({".gguf"}),
    "npz": frozenset({".npz"}),
}
#: Every suffix of a checkpoint file: what a run directory's steps may be (`checkpoint.runs`).
CHECKPOINT_SUFFIXES = frozenset().union(*FORMAT_SUFFIXES.values())

_SNIFF_BYTES = 64
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # pickle protocols >= 2 open with PROTO <n>; torch writes 2


class FileKind(enum.Enum):
    SAFETENSORS = "safetensors"
    TORCH = "torch pickle"  # zip archive (torch >= 1.6) or legacy bare pickle
    JSON = "json"  # a candidate shard index
    GGUF = "gguf"
    NPZ = "npz"  # a zip of .npy members
    UNKNOWN = "unknown"


def sniff(path: Path) -> FileKind:
    """Classify a file from its first bytes without parsing it."""
    try:
        with open(path, "rb") as file:
            head = file.read(_SNIFF_BYTES)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read file: {exc.strerror or exc}") from exc
    if head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= MAX_HEADER_BYTES:
        return FileKind.SAFETENSORS
    if head.startswith(GGUF_MAGIC):
        return FileKind.GGUF
    if head.startswith(_ZIP_MAGIC):
        return FileKind.NPZ if is_npz(path) else FileKind.TORCH
    if len(head) >= 2 and head[0] == _PICKLE_PROTO and 2 <= head[1] <= 5:
        return FileKind.TORCH
    if head.lstrip().startswith(b"{"):
        return FileKind.JSON
    return FileKind.UNKNOWN


def open_file(path: str | os.PathLike[str]) -> CheckpointReader:
    """Open one checkpoint file (safetensors, GGUF, npz or torch pickle), whatever its name."""
    path = Path(path)
    kind = sniff(path)
    if kind is FileKind.SAFETENSORS or (kind is FileKind.UNKNOWN and path.suffix == ".safetensors"):
        return SafetensorsReader(path)  # for a damaged .safetensors, its validation says what broke
    if kind is FileKind.TORCH:
        return TorchReader(path)
    if kind is FileKind.NPZ:
        return NpzReader(path)
    if kind is FileKind.GGUF or path.suffix == ".gguf":
        return GGUFCheckpoint(path)  # a damaged .gguf: its header check says what broke
    if path.suffix in TORCH_SUFFIXES:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    raise CheckpointError(
        f"{path}: not a checkpoint (content is not safetensors, GGUF, npz, a PyTorch pickle or a shard index)"
    )


def format_family(path: Path) -> str | None:
    """The format a checkpoint file's suffix names (None: not a checkpoint suffix); the
    content still decides how it is opened (`sniff`)."""
    return next((kind for kind, suffixes in FORMAT_SUFFIXES.items() if path.suffix in suffixes), None)
