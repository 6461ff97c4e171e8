"""The reader seam: what every checkpoint format offers the rest of weightscope.

A reader lists tensor metadata without touching tensor data, then reads one tensor at a
time on request. Memory is therefore bounded by the tensor in flight, never by the
checkpoint, and filters on names (``--include/--exclude``) cost no I/O at all.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from weightscope.errors import CheckpointError, install_hint

if TYPE_CHECKING:  # numpy comes with the readers, not with telling checkpoints apart (`files`)
    import numpy as np

#: Floating dtypes (safetensors spelling) that readers decode to numpy floats.
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})
#: GGML's quantized types (GGUF files), decoded to float32 by dequantizing.
QUANTIZED_DTYPES = frozenset(
    {
        "Q4_0",
        "Q4_1",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q8_1",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "Q8_K",
        "IQ2_XXS",
        "IQ2_XS",
        "IQ3_XXS",
        "IQ1_S",
        "IQ4_NL",
        "IQ3_S",
        "IQ2_S",
        "IQ4_XS",
        "IQ1_M",
        "TQ1_0",
        "TQ2_0",
        "MXFP4",
        "NVFP4",
        "Q1_0",
    }
)


@dataclass(frozen=True)
class TensorInfo:
    """Metadata of one stored tensor; reading it is the reader's job.

    ``dtype`` uses the safetensors names (F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32,
    I16, I8, U8, BOOL, ...) whatever the file format, so the rest of the code speaks one
    vocabulary. ``file`` is the file that holds the tensor (a shard, for sharded models).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    file: str
    nbytes: int

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES or self.dtype in QUANTIZED_DTYPES

    @property
    def value_dtype(self) -> str:
        """The dtype the decoded values are exact in: the stored one, or F32 for a
        quantized type (scale × integer, computed in float32 by the dequantizer)."""
        return "F32" if self.dtype in QUANTIZED_DTYPES else self.dtype

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def require(module: str, extra: str, what: str) -> Any:
    """Import an optional dependency, or say in one line which extra provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise CheckpointError(f"{what} needs {module}: {install_hint(extra)}") from exc


def check_readable(infos: Mapping[str, TensorInfo], info: TensorInfo, where: object) -> None:
    """Raise `CheckpointError` unless ``info`` is one of this reader's tensors and a float."""
    if infos.get(info.name) != info:
        raise CheckpointError(f"{where}: no tensor {info.name!r} in this checkpoint")
    if not info.is_float:
        raise CheckpointError(f"{where}: tensor {info.name!r} has dtype {info.dtype}; only float tensors can be read")


class CheckpointReader(ABC):
    """One opened checkpoint: a file, a directory of files, or a sharded model.

    Use as a context manager. ``tensors()`` is cheap (headers only); ``read()`` decodes one
    tensor and returns float32 for every float dtype except F64, which stays float64.
    Decoding is exact (BF16/F16/F8 all embed exactly in float32). Errors in the file raise
    `weightscope.errors.CheckpointError` with a one-line message.
    """

    #: short format name shown in reports, e.g. "safetensors", "torch"
    format: str = "unknown"
    #: head counts from the model's config.json (`weightscope.checkpoint.model_config`),
    #: set by `open_checkpoint`; empty when unknown
    model_config: dict[str, Any] = {}  # noqa: RUF012 - replaced per instance, never mutated
    #: whether this format usually holds a quantization of a float checkpoint (GGUF): a
    #: comparison with one measures quantization error
    quantized_format: bool = False

    @abstractmethod
    def tensors(self) -> list[TensorInfo]:
        """All tensors in storage order, metadata only."""

    @abstractmethod
    def read(self, info: TensorInfo) -> np.ndarray:
        """Decode one float tensor to a numpy array (float32, or float64 for F64)."""

    @property
    def metadata(self) -> dict[str, Any]:
        """What the file says about the model (GGUF: architecture, heads, KV heads, blocks)."""
        return {}

    def name_from_hf(self) -> Callable[[str], str | None] | None:
        """A map from Hugging Face tensor names to this format's own (None for a name it
        does not know), for formats that rename tensors (GGUF's ``blk.N.attn_q``); None
        when the names are Hugging Face's already."""
        return None

    def close(self) -> None:  # noqa: B027 - a default: a reader that holds nothing need not override it
        """Release file handles and maps."""

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_identity(st: os.stat_result) -> tuple[int, int]:
    """What makes a file the same file: device and inode (a rename over it changes them)."""
    return st.st_dev, st.st_ino


def read_exactly(
    path: os.PathLike[str] | str, identity: tuple[int, int], offset: int, length: int, name: str
) -> np.ndarray:
    """``length`` bytes at ``offset`` of the file opened as ``identity``, as a fresh uint8 array.

    Read with ``os.preadv``, never memory-mapped: touching a mapped page of a file
    truncated since it was mapped kills the process with SIGBUS, which no Python code can
    catch, while a short read is an error for this tensor only. The file is opened per
    call, so no descriptor is held between reads (thousands of shards never meet the
    open-files limit). numpy's allocations are aligned for any dtype.
    """
    import numpy as np  # a reader's work; this module is imported to tell files apart too

    buffer = np.empty(length, np.uint8)
    try:
        with open(path, "rb", buffering=0) as file:
            if file_identity(os.fstat(file.fileno())) != identity:
                raise CheckpointError(f"{path}: file changed since it was opened (rewritten while being read?)")
            view, done = memoryview(buffer), 0  # type: ignore[arg-type]  # numpy's stubs give ndarray the buffer protocol on Python ≥ 3.12 only
            while done < length:
                got = os.preadv(file.fileno(), [view[done:]], offset + done)
                if got == 0:
                    raise CheckpointError(
                        f"{path}: tensor {name!r}: file ends {length - done} bytes short of its data "
                        "(truncated while being read?)"
                    )
                done += got
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read tensor {name!r}: {exc.strerror or exc}") from exc
    return buffer
