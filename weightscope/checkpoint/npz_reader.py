"""Reader for numpy ``.npz`` archives (`numpy.savez`, `numpy.savez_compressed`).

An npz is a zip of ``.npy`` members. Each member's header (shape, dtype) is read without
its data, so listing costs no tensor I/O, and a member is decoded only when read. Object
arrays would need pickle, so they are never loaded (``allow_pickle=False``).

Compression bombs: a member decodes to at most its declared size (zipfile stops there),
and an archive with a member whose declared size exceeds `MAX_RATIO` times its
compressed size is refused at open, before anything is decoded: zipfile decodes bzip2 and
LZMA a whole block at a time, so even the 128-byte array header of a bomb would cost the
whole member. Deflate (``savez_compressed``) cannot exceed 1032:1, which an all-zero
matrix reaches; bzip2 and LZMA reach 10⁶:1 (441 bytes of bzip2 declare a 268 MB zero
matrix, which cost 63 s and 857 MB to analyse). Stored weights compress to about 1.1:1,
so the limit refuses bombs only. An all-zero or constant matrix that passes is not solved
(`weightscope.linalg.spectrum` short-cuts it). An encrypted member or one of a
compression zipfile cannot decode is one error line too; a stream corrupt past its
header fails its layer.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from weightscope.checkpoint.base import CheckpointReader, TensorInfo, check_readable
from weightscope.checkpoint.dtypes import NUMPY_NAMES
from weightscope.checkpoint.files import ZIP_ERRORS
from weightscope.errors import CheckpointError

#: Declared over compressed size above which a member is refused: above deflate's maximum
#: (1032:1), far above real weights (~1.1:1). See the module docstring.
MAX_RATIO = 1100
_COMPRESSIONS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


def numpy_dtype_name(dtype: np.dtype[Any]) -> str:
    return NUMPY_NAMES.get(dtype.name, dtype.name)


def numpy_to_float(array: np.ndarray, dtype: str) -> np.ndarray:
    """A float array as the readers return it: float32 (float64 for F64), C-contiguous."""
    return np.ascontiguousarray(array, dtype=np.float64 if dtype == "F64" else np.float32)


class NpzReader(CheckpointReader):
    """One ``.npz`` archive; tensor names are the member names without ``.npy``."""

    format = "npz"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._members: dict[str, str] = {}
        self._infos: dict[str, TensorInfo] = {}
        try:
            self._zip = zipfile.ZipFile(self.path)
            for member in self._zip.infolist():
                _check_member(self.path, member)
                with self._zip.open(member) as stream:
                    version = np.lib.format.read_magic(stream)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(stream)
                name = member.filename.removesuffix(".npy")
                self._members[name] = member.filename
                self._infos[name] = TensorInfo(
                    name, tuple(shape), numpy_dtype_name(dtype), str(self.path), int(np.prod(shape)) * dtype.itemsize
                )
        except ZIP_ERRORS as exc:
            raise CheckpointError(
                f"{self.path}: not a readable .npz archive ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos.values())

    def read(self, info: TensorInfo) -> np.ndarray:
        check_readable(self._infos, info, self.path)
        try:
            with self._zip.open(self._members[info.name]) as stream:
                array = np.lib.format.read_array(stream, allow_pickle=False)
        except ZIP_ERRORS as exc:
            raise CheckpointError(
                f"{self.path}: tensor {info.name!r} cannot be read ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        if array.shape != info.shape:
            raise CheckpointError(f"{self.path}: tensor {info.name!r} changed shape while open")
        return numpy_to_float(array, info.dtype)

    def close(self) -> None:
        self._zip.close()


def _check_member(path: Path, member: zipfile.ZipInfo) -> None:
    """An encrypted member, one of a compression zipfile cannot decode, or a compression
    bomb, said plainly before any of it is decoded."""
    if member.flag_bits & 0x1:
        raise CheckpointError(
            f"{path}: member {member.filename!r} is encrypted; weightscope reads unencrypted .npz archives only"
        )
    if member.compress_type not in _COMPRESSIONS:
        raise CheckpointError(
            f"{path}: member {member.filename!r} uses zip compression method {member.compress_type}; "
            "stored, deflate, bzip2 and LZMA are read"
        )
    if member.file_size > MAX_RATIO * max(member.compress_size, 1):
        raise CheckpointError(
            f"{path}: member {member.filename!r} is compressed {member.file_size / max(member.compress_size, 1):.0f}:1 "
            f"({member.file_size} bytes from {member.compress_size}), beyond the {MAX_RATIO}:1 any stored weights reach: "
            "refused as a compression bomb"
        )
