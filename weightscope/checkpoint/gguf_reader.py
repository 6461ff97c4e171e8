"""Reader for GGUF files (llama.cpp, Ollama, LM Studio), through the `gguf` package.

`gguf.GGUFReader` memory-maps the file and parses its header; each tensor is mapped on
its own when read (so its pages leave RSS with it) and dequantized with
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

Hostile files: before `gguf` parses anything, magic, byte order and version are checked,
and the key/value section is walked once with every count (keys, tensors, array items,
string lengths) bounded by the bytes left in the file: `gguf` loops in Python over an
array's items, so a 57-byte file claiming 2⁴⁰ items would otherwise grow without end.
Every tensor's data must lie inside the file at an offset aligned to
``general.alignment``; the block count is believed only up to the blocks the tensor names
show (name tables are built per block); metadata of the wrong type (a head count stored as
a string) is absent, not an error. Any parsing failure becomes one `CheckpointError` line.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from weightscope.checkpoint.base import (
    CheckpointReader,
    TensorInfo,
    check_readable,
    require,
)
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
_ROPE_PERMUTED = re.compile(r"^blk\.\d+\.attn_(q|k)\.weight$")
_BLOCK = re.compile(r"^blk\.(\d{1,9})\.")


#: GGUF value types: fixed sizes of the scalars; 8 is a string, 9 an array.
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
#: Nesting of arrays in arrays walked at most (llama.cpp writes one level).
_MAX_ARRAY_DEPTH = 8


def _check_header(path: Path) -> None:
    """Reject what `gguf` would choke on, or loop over, before it parses the file."""
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
        _walk_keys(path, file, kvs, size)


def _walk_keys(path: Path, file: Any, kvs: int, size: int) -> None:
    """Walk the key/value section (the file's position is just past the 24-byte header),
    bounding every count by the bytes left: the work is linear in the file's size."""

    def read(n: int) -> bytes:
        data = file.read(n)
        if len(data) != n:
            raise CheckpointError(f"{path}: truncated GGUF header (a key/value runs past the end of the file)")
        return data

    def left() -> int:
        return size - file.tell()

    def count(what: str, n: int, each: int) -> int:
        if n * each > left():
            raise CheckpointError(f"{path}: GGUF {what} claims {n} items, more than the {left()} bytes left can hold")
        return n

    def skip(n: int) -> None:
        if n > left():
            raise CheckpointError(f"{path}: truncated GGUF header (a key/value runs past the end of the file)")
        file.seek(n, os.SEEK_CUR)

    def value(kind: int, depth: int) -> None:
        if kind in _SCALAR_SIZES:
            skip(_SCALAR_SIZES[kind])
        elif kind == _STRING:
            skip(struct.unpack("<Q", read(8))[0])
        elif kind == _ARRAY and depth < _MAX_ARRAY_DEPTH:
            item, n = struct.unpack("<IQ", read(12))
            if item in _SCALAR_SIZES:
                skip(count("array", n, _SCALAR_SIZES[item]) * _SCALAR_SIZES[item])
            elif item in (_STRING, _ARRAY):
                for _ in range(count("array", n, 8 if item == _STRING else 12)):
                    value(item, depth + 1)
            else:
                raise CheckpointError(f"{path}: GGUF array of unknown value type {item}")
        else:
            raise CheckpointError(
                f"{path}: GGUF value of unknown type {kind} (or arrays nested deeper than {_MAX_ARRAY_DEPTH})"
            )

    for _ in range(kvs):
        skip(struct.unpack("<Q", read(8))[0])  # the key
        value(struct.unpack("<I", read(4))[0], 0)


class GGUFCheckpoint(CheckpointReader):
    """One GGUF file; tensor dtypes are the safetensors names for plain types and GGML's
    names (Q4_K, Q8_0, …) for quantized ones."""

    format = "gguf"
    quantized_format = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        gguf = require("gguf", "gguf", f"{self.path} is a GGUF file and reading it")
        _check_header(self.path)
        try:
            self._reader = gguf.GGUFReader(self.path)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - gguf raises ValueError, IndexError, KeyError, … on bad input
            raise CheckpointError(
                f"{self.path}: not a readable GGUF file ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        size = self.path.stat().st_size
        alignment, start = int(self._reader.alignment), int(self._reader.data_offset)
        self._tensors: dict[str, Any] = {}
        self._infos: dict[str, TensorInfo] = {}
        for tensor in self._reader.tensors:
            if tensor.data_offset + tensor.n_bytes > size or tensor.data.nbytes != tensor.n_bytes:
                raise CheckpointError(f"{self.path}: tensor {tensor.name!r} lies past the end of the file (truncated?)")
            if (tensor.data_offset - start) % alignment:
                raise CheckpointError(
                    f"{self.path}: tensor {tensor.name!r} starts at offset {tensor.data_offset - start} of the data, "
                    f"not a multiple of the file's alignment {alignment} (a corrupt or hand-made file)"
                )
            name = tensor.tensor_type.name
            self._tensors[tensor.name] = tensor
            self._infos[tensor.name] = TensorInfo(
                name=tensor.name,
                shape=tuple(int(d) for d in reversed(tensor.shape.tolist())),
                dtype=_PLAIN.get(name, name),
                file=str(self.path),
                nbytes=int(tensor.n_bytes),
            )
        self._metadata = self._read_metadata()

    def _field(self, key: str) -> Any:
        field = self._reader.fields.get(key)
        if field is None or not field.types:
            return None
        try:
            value = field.contents()
        except Exception:  # noqa: BLE001 - a malformed field is absent, not fatal
            return None
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
        tensor = self._tensors[info.name]
        values = self._dequantize(tensor, info)
        if _ROPE_PERMUTED.match(info.name) and self._metadata.get("architecture") == "llama":
            values = self._unpermute(values, info.name)
        return values

    def _dequantize(self, tensor: Any, info: TensorInfo) -> np.ndarray:
        from gguf.quants import dequantize

        # A map of this tensor alone, dropped with it: pages read through gguf's map of
        # the whole file would stay resident, and RSS would grow to the file's size.
        data = np.memmap(
            self.path, dtype=tensor.data.dtype, mode="r", offset=tensor.data_offset, shape=tensor.data.shape
        )
        if info.dtype in ("F32", "F64"):
            return data if data.ndim == len(info.shape) else data.reshape(info.shape)
        rows = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
        out = np.empty((rows.shape[0], info.numel // rows.shape[0]), dtype=np.float32)
        step = max(1, _SLAB // max(out.shape[1], 1))
        try:
            for start in range(0, rows.shape[0], step):
                out[start : start + step] = dequantize(np.asarray(rows[start : start + step]), tensor.tensor_type)
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
        self._reader = None
