"""Reader for GGUF files (llama.cpp, Ollama, LM Studio), decoded by the `gguf` package.

The header is parsed here (`_read_header`: the few metadata values used and the tensor
entries, the tokenizer's arrays skipped unread); each tensor is mapped on its own when
read (so its pages leave RSS with it) and dequantized with
`gguf.quants.dequantize`, which covers every type the package implements
in numpy (F32/F16/BF16, Q4_0…Q8_0, the K-quants, the IQ types, TQ, MXFP4). Dequantizing
runs over slabs of rows written into one float32 output, so the peak is the decoded
tensor plus a slab, not the several whole-tensor temporaries of a one-shot call.

Layout: GGUF lists dimensions fastest first; the reader's numpy view is already in
row-major order, so a linear layer comes out (out, in), as in PyTorch. llama.cpp's
converter permutes the rows of ``attn_q``/``attn_k`` of the ``llama`` architecture for
its rotary embedding (`convert_hf_to_gguf.py`, ``LlamaModel.permute``); the reader undoes
it, so tensors match their Hugging Face twins row for row (a row permutation leaves the
spectrum unchanged, so `analyze` is unaffected either way).

Hostile files: magic, byte order and version are checked first, and the header is
walked once with every count (keys, tensors, array items, string lengths, dimensions)
bounded by the bytes left in the file, so a 57-byte file claiming 2⁴⁰ items is refused
at once. A tensor's type must be one `gguf` knows, its rows whole blocks of that type, its
name listed once, and its data must lie inside the file at an offset aligned to
``general.alignment``; the block count is believed only up to the blocks the tensor names
show (name tables are built per block); metadata of the wrong type (a head count stored as
a string) is absent, not an error. Any parsing failure becomes one `CheckpointError` line.
"""

from __future__ import annotations

import math
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from weightscope.checkpoint.base import (
    CheckpointReader,
    TensorInfo,
    check_readable,
    require,
)
from weightscope.checkpoint.dtypes import STORED_DTYPES
from weightscope.checkpoint.files import GGUF_MAGIC
from weightscope.errors import CheckpointError

#: Smallest possible entries: a tensor info is a name length (8), ndims (4), a dim (8),
#: a type (4) and an offset (8); a key/value is a key length (8) and a type (4).
_MIN_TENSOR_INFO, _MIN_KV = 32, 12
#: Elements dequantized at a time (a slab of rows): 4 M floats = 16 MB of temporaries.
_SLAB = 1 << 22
#: gguf's names for plain types -> the safetensors names the rest of weightscope speaks.
_PLAIN = {
    "F32": "F32",
    "F16": "F16",
    "BF16": "BF16",
    "F64": "F64",
    "I8": "I8",
    "I16": "I16",
    "I32": "I32",
    "I64": "I64",
}
#: Plain types mapped as typed arrays (their `STORED_DTYPES` storage); BF16 and the
#: quantized types are bytes that `gguf.quants.dequantize` decodes.
_TYPED = frozenset(_PLAIN.values()) - {"BF16"}
_ROPE_PERMUTED = re.compile(r"^blk\.\d+\.attn_(q|k)\.weight$")
_BLOCK = re.compile(r"^blk\.(\d{1,9})\.")


#: GGUF value types: the scalars' struct formats; 8 is a string, 9 an array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
#: Nesting of arrays in arrays walked at most (llama.cpp writes one level).
_MAX_ARRAY_DEPTH = 8
#: Longest string value kept as metadata (names, the architecture); longer ones (a chat
#: template) and every array (the tokenizer's vocabulary) are skipped unread.
_KEPT_STRING = 1024
#: Dimensions of a tensor at most (GGML_MAX_DIMS).
_MAX_DIMS = 4
#: Data alignment when the file does not set ``general.alignment``.
_DEFAULT_ALIGNMENT = 32


@dataclass(frozen=True)
class _Entry:
    """One tensor's entry in the header: GGUF's dimensions (fastest first), its GGML type
    number and its offset into the data section."""

    name: str
    dims: tuple[int, ...]
    kind: int
    offset: int


@dataclass(frozen=True)
class _Header:
    """The parsed header: the top-level scalar (and short string) values by key, the
    tensor entries, the data section's alignment and start, and the file's size."""

    values: dict[str, Any]
    entries: list[_Entry]
    alignment: int
    data_start: int
    size: int


def _read_header(path: Path) -> _Header:
    """Parse a GGUF header, refusing what is malformed or hostile: every count (keys,
    tensors, array items, string lengths, dimensions) is bounded by the bytes left in
    the file, so the work is linear in the file's size (a 57-byte file claiming 2⁴⁰
    items is refused at once), and nothing but the values kept is decoded.

    Why not `gguf.GGUFReader`: it builds a numpy view of every key, array item and
    string of the header, the tokenizer's included. On SmolLM2-135M (49152 tokens and
    their merges, 98 K strings) it took 2.8 s of a 10 s `analyze --randomize`, before the
    first layer could start; this walk takes 0.12 s (docs/performance.md)."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        head = file.read(24)
        if len(head) < 24 or head[:4] != GGUF_MAGIC:
            raise CheckpointError(f"{path}: not a GGUF file (bad magic or shorter than its header)")
        version, tensors, kvs = struct.unpack("<IQQ", head[4:24])
        if version & 0xFFFF == 0 and struct.unpack(">I", head[4:8])[0] in (2, 3):
            raise CheckpointError(
                f"{path}: a big-endian GGUF file (s390x builds of llama.cpp); only little-endian GGUF files are supported"
            )
        if version not in (2, 3):
            raise CheckpointError(f"{path}: GGUF version {version} is not supported (2 and 3 are)")
        if tensors * _MIN_TENSOR_INFO + kvs * _MIN_KV > size:
            raise CheckpointError(
                f"{path}: header claims {tensors} tensors and {kvs} keys, more than a {size}-byte file can hold"
            )
        walk = _HeaderWalk(path, file, size)
        values = walk.keys(kvs)
        entries = walk.tensors(tensors)
        alignment = values.get("general.alignment", _DEFAULT_ALIGNMENT)
        if (
            isinstance(alignment, bool)
            or not isinstance(alignment, int)
            or alignment <= 0
            or alignment & (alignment - 1)
        ):
            raise CheckpointError(f"{path}: general.alignment is {alignment!r}, not a power of two")
        data_start = -(-file.tell() // alignment) * alignment
    return _Header(values, entries, alignment, data_start, size)


class _HeaderWalk:
    """Reads a GGUF header from its file's current position, every count bounded by the
    bytes left (`_read_header`)."""

    def __init__(self, path: Path, file: BinaryIO, size: int) -> None:
        self.path, self.file, self.size = path, file, size

    def _fail(self, problem: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: {problem}")

    def _read(self, n: int) -> bytes:
        data = self.file.read(n)
        if len(data) != n:
            raise self._fail("truncated GGUF header (a key/value runs past the end of the file)")
        return data

    def _left(self) -> int:
        return self.size - self.file.tell()

    def _count(self, what: str, n: int, each: int) -> int:
        if n * each > self._left():
            raise self._fail(f"GGUF {what} claims {n} items, more than the {self._left()} bytes left can hold")
        return n

    def _skip(self, n: int) -> None:
        if n > self._left():
            raise self._fail("truncated GGUF header (a key/value runs past the end of the file)")
        self.file.seek(n, os.SEEK_CUR)

    def _string(self, keep: bool) -> str | None:
        """A string value: decoded when ``keep`` and short (`_KEPT_STRING`), else skipped."""
        length = struct.unpack("<Q", self._read(8))[0]
        if not keep or length > _KEPT_STRING:
            self._skip(length)
            return None
        try:
            return self._read(length).decode("utf-8")
        except UnicodeDecodeError:
            return None

    def _value(self, kind: int, depth: int) -> Any:
        """One value of ``kind``: a top-level scalar or short string is returned, the rest
        (arrays, their items, long strings) skipped and returned as None."""
        if kind in _SCALARS:
            fmt = _SCALARS[kind]
            width = struct.calcsize(fmt)
            if depth:
                self._skip(width)
                return None
            return struct.unpack(fmt, self._read(width))[0]
        if kind == _STRING:
            return self._string(keep=not depth)
        if kind == _ARRAY and depth < _MAX_ARRAY_DEPTH:
            item, n = struct.unpack("<IQ", self._read(12))
            if item in _SCALARS:
                width = struct.calcsize(_SCALARS[item])
                self._skip(self._count("array", n, width) * width)
            elif item in (_STRING, _ARRAY):
                for _ in range(self._count("array", n, 8 if item == _STRING else 12)):
                    self._value(item, depth + 1)
            else:
                raise self._fail(f"GGUF array of unknown value type {item}")
            return None
        raise self._fail(f"GGUF value of unknown type {kind} (or arrays nested deeper than {_MAX_ARRAY_DEPTH})")

    def keys(self, kvs: int) -> dict[str, Any]:
        """The key/value section: {key: value} of the values kept (`_value`)."""
        values = {}
        for _ in range(kvs):
            key = self._string(keep=True)
            value = self._value(struct.unpack("<I", self._read(4))[0], 0)
            if key is not None and value is not None:
                values[key] = value
        return values

    def tensors(self, count: int) -> list[_Entry]:
        """The tensor-info section: name, dimensions, type and offset of each tensor."""
        entries, names = [], set()
        for _ in range(count):
            length = struct.unpack("<Q", self._read(8))[0]
            self._count("tensor name", length, 1)
            try:
                name = self._read(length).decode("utf-8")
            except UnicodeDecodeError:
                raise self._fail("a GGUF tensor name is not UTF-8") from None
            (ndims,) = struct.unpack("<I", self._read(4))
            if not 1 <= ndims <= _MAX_DIMS:
                raise self._fail(f"GGUF tensor {name!r} has {ndims} dimensions (1 to {_MAX_DIMS} expected)")
            dims = struct.unpack(f"<{ndims}Q", self._read(8 * ndims))
            kind, offset = struct.unpack("<IQ", self._read(12))
            if name in names:
                raise self._fail(f"GGUF tensor {name!r} is listed twice")
            names.add(name)
            entries.append(_Entry(name, dims, kind, offset))
        return entries


@dataclass(frozen=True)
class _Stored:
    """Where a tensor's bytes lie: its GGML type (`gguf.GGMLQuantizationType`), its
    absolute offset in the file and its shape (slowest dimension first)."""

    kind: Any
    start: int
    shape: tuple[int, ...]


class GGUFCheckpoint(CheckpointReader):
    """One GGUF file; tensor dtypes are the safetensors names for plain types and GGML's
    names (Q4_K, Q8_0, …) for quantized ones."""

    format = "gguf"
    quantized_format = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        gguf = require("gguf", "gguf", f"{self.path} is a GGUF file and reading it")
        header = _read_header(self.path)
        self._tensors: dict[str, _Stored] = {}
        self._infos: dict[str, TensorInfo] = {}
        for entry in header.entries:
            try:
                kind = gguf.GGMLQuantizationType(entry.kind)
                block, type_size = gguf.GGML_QUANT_SIZES[kind]
            except (ValueError, KeyError):
                raise CheckpointError(
                    f"{self.path}: tensor {entry.name!r} has unknown GGML type {entry.kind}"
                ) from None
            if entry.dims[0] % block:
                raise CheckpointError(
                    f"{self.path}: tensor {entry.name!r} has rows of {entry.dims[0]} values, "
                    f"not whole {kind.name} blocks of {block}"
                )
            numel = math.prod(entry.dims)
            nbytes = numel // block * type_size
            start = header.data_start + entry.offset
            if start + nbytes > header.size:
                raise CheckpointError(f"{self.path}: tensor {entry.name!r} lies past the end of the file (truncated?)")
            if entry.offset % header.alignment:
                raise CheckpointError(
                    f"{self.path}: tensor {entry.name!r} starts at offset {entry.offset} of the data, "
                    f"not a multiple of the file's alignment {header.alignment} (a corrupt or hand-made file)"
                )
            shape = tuple(reversed(entry.dims))
            self._tensors[entry.name] = _Stored(kind, start, shape)
            self._infos[entry.name] = TensorInfo(
                name=entry.name,
                shape=shape,
                dtype=_PLAIN.get(kind.name, kind.name),
                file=str(self.path),
                nbytes=nbytes,
            )
        self._values = header.values
        self._metadata = self._read_metadata()

    def _field(self, key: str) -> Any:
        value = self._values.get(key)
        return value if isinstance(value, (str, int, float, bool)) else None

    def _count(self, key: str, least: int = 1) -> int | None:
        """A count field (heads, blocks, a file type): an integer from ``least`` up, else
        absent — a head count stored as a string or a bool is a malformed field, not a number."""
        value = self._field(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and least <= value < 2**32 else None

    def _read_metadata(self) -> dict[str, Any]:
        arch = self._field("general.architecture")
        name = self._field("general.name")
        metadata: dict[str, Any] = {
            "architecture": arch if isinstance(arch, str) else None,
            "name": name if isinstance(name, str) else None,
        }
        if isinstance(arch, str):
            for key, field in (
                ("block_count", "block_count"),
                ("head_count", "attention.head_count"),
                ("head_count_kv", "attention.head_count_kv"),
                ("embedding_length", "embedding_length"),
            ):
                metadata[key] = self._count(f"{arch}.{field}")
        metadata["file_type"] = self._count("general.file_type", least=0)
        return {k: v for k, v in metadata.items() if v is not None}

    def _blocks(self) -> int | None:
        """The block count, believed up to the blocks the tensor names show (``blk.N.``):
        `gguf.get_tensor_name_map` builds a table per block, so a forged 10⁹ would run
        for ever; a count the tensors do not bear out is a wrong count."""
        claimed = self._metadata.get("block_count")
        if claimed is None:
            return None
        indexes = [int(match[1]) for match in map(_BLOCK.match, self._infos) if match]
        return min(claimed, max(indexes, default=-1) + 1)

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos.values())

    def read(self, info: TensorInfo) -> np.ndarray:
        check_readable(self._infos, info, self.path)
        values = self._dequantize(self._tensors[info.name], info)
        if _ROPE_PERMUTED.match(info.name) and self._metadata.get("architecture") == "llama":
            values = self._unpermute(values, info.name)
        return values

    def _dequantize(self, stored: _Stored, info: TensorInfo) -> np.ndarray:
        from gguf.quants import dequantize, quant_shape_to_byte_shape

        # A map of this tensor alone, dropped with it: pages read through a map of the
        # whole file would stay resident, and RSS would grow to the file's size.
        plain = STORED_DTYPES[info.dtype].storage if info.dtype in _TYPED else None
        as_stored = info.dtype in ("F32", "F64")  # returned as mapped, not decoded
        if not info.numel:  # a header may declare a zero dimension; a map of no bytes is an error
            return np.empty(info.shape, dtype=plain if as_stored else np.float32)
        if plain is not None:
            data = np.memmap(self.path, dtype=plain, mode="r", offset=stored.start, shape=stored.shape)
        else:
            byte_shape = quant_shape_to_byte_shape(stored.shape, stored.kind)
            data = np.memmap(self.path, dtype=np.uint8, mode="r", offset=stored.start, shape=byte_shape)
        if as_stored:
            return data
        rows = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
        out = np.empty((rows.shape[0], info.numel // rows.shape[0]), dtype=np.float32)
        step = max(1, _SLAB // max(out.shape[1], 1))
        try:
            for start in range(0, rows.shape[0], step):
                out[start : start + step] = dequantize(np.asarray(rows[start : start + step]), stored.kind)
        except NotImplementedError as exc:
            raise CheckpointError(f"{self.path}: gguf cannot dequantize {info.dtype} ({info.name!r}): {exc}") from None
        return out.reshape(info.shape)

    def _unpermute(self, values: np.ndarray, name: str) -> np.ndarray:
        """Undo ``LlamaModel.permute`` (q: head_count heads; k: head_count_kv)."""
        heads = self._metadata.get("head_count")
        if ".attn_k." in name:
            heads = self._metadata.get("head_count_kv", heads)
        if not isinstance(heads, int) or heads <= 0 or values.shape[0] % (2 * heads):
            return values
        shape = values.shape
        return np.ascontiguousarray(
            values.reshape(heads, shape[0] // heads // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)
        )

    def name_from_hf(self) -> Callable[[str], str | None]:
        """Hugging Face tensor names to this file's (None when unknown), from gguf's own
        `TensorNameMap` for the file's architecture."""
        import gguf

        arch_name = self._metadata.get("architecture")
        arch = next((a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name), None)
        blocks = self._blocks()
        if arch is None or blocks is None:
            return lambda name: None
        mapping = gguf.get_tensor_name_map(arch, blocks)
        return lambda name: mapping.get_name(name, try_suffixes=(".weight", ".bias"))

    def close(self) -> None:
        self._tensors.clear()
