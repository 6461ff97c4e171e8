"""Tell checkpoint files apart by their first bytes, and open a single checkpoint file.

Names lie (``model.bin`` may be safetensors, ``weights`` may be a zip pickle), so the
content decides; the extension is only used to give a sharper error when the content is
unrecognisable.

Telling files apart needs neither numpy nor a reader: each reader (`READERS`) is
imported when a file of its kind is opened, so a command refuses a file that is not a
checkpoint before it pays for numpy (`weightscope.checkpoint.locate`).
"""

from __future__ import annotations

import enum
import importlib
import lzma
import os
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from weightscope.errors import CheckpointError

if TYPE_CHECKING:
    from collections.abc import Callable

    from weightscope.checkpoint.base import CheckpointReader

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
GGUF_MAGIC = b"GGUF"
#: Largest safetensors header accepted; real headers are well under 1 MB even for 100k tensors.
MAX_HEADER_BYTES = 100 * 1024 * 1024
#: What reading a damaged or hostile zip archive may raise.
ZIP_ERRORS = (
    OSError,
    ValueError,
    zipfile.BadZipFile,
    EOFError,
    KeyError,
    lzma.LZMAError,
    zlib.error,
    NotImplementedError,
    RuntimeError,
)
_PICKLE_PROTO = 0x80  # pickle protocols >= 2 open with PROTO <n>; torch writes 2


class FileKind(enum.Enum):
    SAFETENSORS = "safetensors"
    TORCH = "torch pickle"  # zip archive (torch >= 1.6) or legacy bare pickle
    JSON = "json"  # a candidate shard index
    GGUF = "gguf"
    NPZ = "npz"  # a zip of .npy members
    UNKNOWN = "unknown"


#: The reader of each kind of checkpoint file (module.class), imported when one is opened.
READERS = {
    FileKind.SAFETENSORS: "weightscope.checkpoint.safetensors_reader.SafetensorsReader",
    FileKind.TORCH: "weightscope.checkpoint.torch_reader.TorchReader",
    FileKind.NPZ: "weightscope.checkpoint.npz_reader.NpzReader",
    FileKind.GGUF: "weightscope.checkpoint.gguf_reader.GGUFCheckpoint",
}


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


def is_npz(path: Path) -> bool:
    """A zip whose members are all ``.npy`` files (a torch zip holds ``data.pkl``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except ZIP_ERRORS:
        return False
    return bool(names) and all(name.endswith(".npy") for name in names)


def reader_kind(path: Path, kind: FileKind | None = None) -> FileKind:
    """Which reader opens ``path`` (a key of `READERS`): its content (``kind``, else
    sniffed), or for a damaged file its suffix; a `CheckpointError` if none would."""
    kind = sniff(path) if kind is None else kind
    if kind is FileKind.UNKNOWN and path.suffix == ".safetensors":
        return FileKind.SAFETENSORS  # for a damaged .safetensors, its validation says what broke
    if kind in (FileKind.JSON, FileKind.UNKNOWN) and path.suffix == ".gguf":
        return FileKind.GGUF  # a damaged .gguf: its header check says what broke
    if kind in READERS:
        return kind
    if path.suffix in TORCH_SUFFIXES:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    raise CheckpointError(
        f"{path}: not a checkpoint (content is not safetensors, GGUF, npz, a PyTorch pickle or a shard index)"
    )


def open_file(path: str | os.PathLike[str], kind: FileKind | None = None) -> CheckpointReader:
    """Open one checkpoint file (safetensors, GGUF, npz or torch pickle), whatever its name
    (``kind``: what `sniff` found, if it was already asked)."""
    path = Path(path)
    module, _, name = READERS[reader_kind(path, kind)].rpartition(".")
    reader: Callable[[Path], CheckpointReader] = getattr(importlib.import_module(module), name)
    return reader(path)


def format_family(path: Path) -> str | None:
    """The format a checkpoint file's suffix names (None: not a checkpoint suffix); the
    content still decides how it is opened (`sniff`)."""
    return next((kind for kind, suffixes in FORMAT_SUFFIXES.items() if path.suffix in suffixes), None)
