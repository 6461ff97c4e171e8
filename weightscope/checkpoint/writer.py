"""Write safetensors files from numpy arrays, without torch.

Tests and benchmarks need synthetic checkpoints in every dtype a real model ships in,
BF16 above all, on installs that have no torch. Files are byte-compatible with the
official `safetensors` package (header padded to 8 bytes, tensors packed in the order
given) and appear atomically: a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from weightscope.checkpoint.dtypes import STORED_DTYPES, encode_bf16
from weightscope.io import write_atomic

#: dtypes this writer can produce. F8 and packed formats have no numpy encoder here.
WRITABLE_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"})

_INTEGER_DTYPES = WRITABLE_DTYPES - {"F64", "F32", "F16", "BF16"}


def write_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    dtypes: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``tensors`` to a safetensors file at ``path`` (replaced atomically).

    ``dtypes`` picks the stored dtype per tensor (safetensors names); a tensor without an
    entry is stored in the dtype of its array (float64 -> F64, float32 -> F32, int64 ->
    I64, bool -> BOOL, ...). Float targets take any real numeric array: BF16 and F16 round
    to nearest even (BF16 via float32, as torch does). Integer and BOOL targets take
    integer or bool arrays whose values fit. ``metadata`` is stored as ``__metadata__``.
    Misuse raises ValueError and leaves no file behind.
    """
    path = Path(path)
    dtypes = dict(dtypes or {})
    strays = sorted(set(dtypes) - set(tensors))
    if strays:
        raise ValueError(f"dtypes names tensors that are not given: {strays}")
    header: dict[str, object] = {}
    offset = 0
    for name, array in tensors.items():
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved and cannot name a tensor")
        array = np.asarray(array)
        dtype = dtypes.get(name) or _default_dtype(name, array)
        if dtype not in WRITABLE_DTYPES:
            raise ValueError(f"tensor {name!r}: cannot write dtype {dtype!r}")
        nbytes = array.size * STORED_DTYPES[dtype].bits // 8
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)

    def chunks():
        yield struct.pack("<Q", len(header_bytes))
        yield header_bytes
        for name, array in tensors.items():
            yield _encode(name, np.asarray(array), header[name]["dtype"]).data

    write_atomic(path, chunks())
    return path


def _default_dtype(name: str, array: np.ndarray) -> str:
    for dtype, stored in STORED_DTYPES.items():
        if dtype in WRITABLE_DTYPES and dtype != "BF16" and stored.storage == array.dtype:
            return dtype
    raise ValueError(f"tensor {name!r}: no safetensors dtype for numpy {array.dtype}")


def _encode(name: str, array: np.ndarray, dtype: str) -> np.ndarray:
    """The stored elements of ``array`` as a contiguous little-endian array."""
    if dtype in _INTEGER_DTYPES:
        if array.dtype.kind not in "iub":
            raise ValueError(f"tensor {name!r}: {dtype} needs an integer or bool array, not {array.dtype}")
        stored = np.ascontiguousarray(array, dtype=STORED_DTYPES[dtype].storage)
        if not np.array_equal(stored, array):
            raise ValueError(f"tensor {name!r}: values do not fit in {dtype}")
        return stored
    if array.dtype.kind not in "iubf":
        raise ValueError(f"tensor {name!r}: {dtype} needs a real numeric array, not {array.dtype}")
    with np.errstate(over="ignore"):  # values past the target's range become ±inf, as documented
        if dtype == "BF16":
            return encode_bf16(array)
        return np.ascontiguousarray(array, dtype=STORED_DTYPES[dtype].storage)
