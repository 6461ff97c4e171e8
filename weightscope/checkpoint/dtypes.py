"""The safetensors dtype vocabulary: storage width, exact decoding to numpy floats, encoding.

Every format speaks these names (see `TensorInfo.dtype`). Decoding is done here, in numpy
alone, because the core install has no torch: BF16 is the top half of a float32, and the
two 8-bit float formats have only 256 codes each, so a 256-entry table decodes them
exactly. All of them embed exactly in float32, so no decoded value is ever rounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StoredDtype:
    """How one safetensors dtype is laid out on disk.

    ``storage`` is the numpy dtype of one stored element (little-endian), or None for
    packed sub-byte formats, which weightscope lists but never decodes.
    """

    name: str
    bits: int
    storage: np.dtype | None


def _stored(name: str, bits: int, storage: str | None) -> StoredDtype:
    return StoredDtype(name, bits, None if storage is None else np.dtype(storage))


#: Every dtype a safetensors header may name. Only the names in
#: `weightscope.checkpoint.base.FLOAT_DTYPES` can be decoded; the others are listed so that
#: callers can skip them with a reason instead of failing on the whole file.
STORED_DTYPES: dict[str, StoredDtype] = {
    d.name: d
    for d in (
        _stored("F64", 64, "<f8"),
        _stored("F32", 32, "<f4"),
        _stored("F16", 16, "<f2"),
        _stored("BF16", 16, "<u2"),
        _stored("F8_E4M3", 8, "u1"),
        _stored("F8_E5M2", 8, "u1"),
        _stored("F8_E4M3FNUZ", 8, "u1"),
        _stored("F8_E5M2FNUZ", 8, "u1"),
        _stored("F8_E8M0", 8, "u1"),
        _stored("F6_E2M3", 6, None),
        _stored("F6_E3M2", 6, None),
        _stored("F4", 4, None),
        _stored("C64", 64, "<c8"),
        _stored("I64", 64, "<i8"),
        _stored("I32", 32, "<i4"),
        _stored("I16", 16, "<i2"),
        _stored("I8", 8, "i1"),
        _stored("U64", 64, "<u8"),
        _stored("U32", 32, "<u4"),
        _stored("U16", 16, "<u2"),
        _stored("U8", 8, "u1"),
        _stored("BOOL", 8, "?"),
    )
}


#: numpy's dtype name -> the safetensors name, for the dtypes numpy and torch name alike
#: (npz arrays; torch adds its own bfloat16 and 8-bit floats).
NUMPY_NAMES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint64": "U64",
    "uint32": "U32",
    "uint16": "U16",
    "uint8": "U8",
    "bool": "BOOL",
}


def _fp8_table(exponent_bits: int, mantissa_bits: int, *, ieee_specials: bool) -> np.ndarray:
    """Float32 value of each of the 256 codes of a 1-sign-bit 8-bit float.

    ``ieee_specials``: the all-ones exponent means inf (zero mantissa) or NaN, as in E5M2.
    Without it (E4M3 "fn": finite, no inf) only the all-ones code S.1111.111 is NaN.
    """
    codes = np.arange(256, dtype=np.int64)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exponent = (codes >> mantissa_bits) & ((1 << exponent_bits) - 1)
    mantissa = codes & ((1 << mantissa_bits) - 1)
    bias = (1 << (exponent_bits - 1)) - 1
    fraction = mantissa / (1 << mantissa_bits)
    magnitude = np.where(
        exponent == 0,
        fraction * 2.0 ** (1 - bias),  # subnormal
        (1.0 + fraction) * 2.0 ** (exponent - bias),
    )
    table = sign * magnitude
    top_exponent = exponent == (1 << exponent_bits) - 1
    if ieee_specials:
        table[top_exponent & (mantissa == 0)] = sign[top_exponent & (mantissa == 0)] * np.inf
        table[top_exponent & (mantissa != 0)] = np.nan
    else:
        table[top_exponent & (mantissa == (1 << mantissa_bits) - 1)] = np.nan
    return table.astype(np.float32)


_FP8_TABLES = {
    "F8_E4M3": _fp8_table(4, 3, ieee_specials=False),
    "F8_E5M2": _fp8_table(5, 2, ieee_specials=True),
}


def decode_to_float(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Decode stored elements (``raw``, already viewed as ``STORED_DTYPES[dtype].storage``).

    F32 and F64 come back as the same array (no copy: a view of ``raw``); every other float
    dtype comes back as a fresh float32 array. ``dtype`` must be in ``FLOAT_DTYPES``.
    """
    if dtype in ("F32", "F64"):
        return raw
    if dtype == "F16":
        return raw.astype(np.float32)
    if dtype == "BF16":
        widened = raw.astype("<u4")
        widened <<= 16
        return widened.view("<f4")
    if dtype in _FP8_TABLES:
        return _FP8_TABLES[dtype].take(raw)
    raise ValueError(f"dtype {dtype} is not a decodable float dtype")


def encode_bf16(values: np.ndarray) -> np.ndarray:
    """Round float32 values to BF16 bit patterns (uint16), round-to-nearest-even.

    NaNs stay NaN (quiet, sign kept); values past the BF16 range round to ±inf, as IEEE
    rounding does. This is the same rounding as ``torch.Tensor.to(torch.bfloat16)``.
    """
    floats = np.ascontiguousarray(values, dtype="<f4")
    bits = floats.view("<u4")
    lsb = (bits >> 16) & 1
    rounded = ((bits + 0x7FFF + lsb) >> 16).astype("<u2")
    nan = np.isnan(floats)
    rounded[nan] = ((bits[nan] >> 16) | 0x0040).astype("<u2")
    return rounded
