"""Checkpoint readers and the safetensors writer, without torch.

References are independent of our code: the official `safetensors` package writes the
files our reader decodes and loads the files our writer produces. The tests that need
torch (its dtype conversions as the expected values, its pickles) are in
test_checkpoint_torch.py, so that these run where torch is not installed.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from weightscope.checkpoint import CheckpointReader, open_checkpoint, write_safetensors
from weightscope.errors import CheckpointError

REPO_ROOT = Path(__file__).resolve().parents[2]


def assert_same_floats(actual: np.ndarray, expected: np.ndarray) -> None:
    """Bit-for-bit equal (so -0.0 != 0.0), except that any NaN matches any NaN."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(actual), nan)
    as_bits = {4: np.uint32, 8: np.uint64}[expected.itemsize]
    np.testing.assert_array_equal(actual[~nan].view(as_bits), expected[~nan].view(as_bits))


def read_all(path: Path) -> dict[str, np.ndarray]:
    with open_checkpoint(path) as reader:
        return {info.name: reader.read(info) for info in reader.tensors() if info.is_float}


def write_raw_safetensors(path: Path, header: object, data: bytes = b"", *, length: int | None = None) -> Path:
    """A safetensors file with an arbitrary (possibly invalid) header, for forged inputs."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


def test_reads_are_fresh_arrays_that_never_write_the_file(tmp_path: Path) -> None:
    path = write_safetensors(
        tmp_path / "m.safetensors",
        {"f32": np.ones((2, 2), np.float32), "f64": np.ones(3), "bf16": np.ones(4, np.float32)},
        dtypes={"bf16": "BF16"},
    )
    with open_checkpoint(path) as reader:
        infos = {info.name: info for info in reader.tensors()}
        for name in ("f32", "f64", "bf16"):
            reader.read(infos[name])[:] = 7.0  # read, not mapped: writing leaves the file alone
            np.testing.assert_array_equal(reader.read(infos[name]), np.ones(infos[name].shape))


def test_unaligned_f32_is_copied_aligned(tmp_path: Path) -> None:
    values = np.arange(6, dtype="<f4")
    header = json.dumps(
        {
            "pad": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
            "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [1, 25]},
        }
    ).encode()
    header += b" " * (-len(header) % 8)  # data section 8-aligned, so "w" sits at 1 mod 4
    path = write_raw_safetensors(tmp_path / "odd.safetensors", header, b"\0" + values.tobytes())
    result = read_all(path)["w"]
    assert result.flags.aligned
    np.testing.assert_array_equal(result, values.reshape(2, 3))


def test_same_tensor_in_two_files_is_rejected(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "a.safetensors", {"w": np.ones(2, np.float32)})
    write_safetensors(tmp_path / "b.safetensors", {"w": np.zeros(2, np.float32)})
    with pytest.raises(CheckpointError, match=r"tensor 'w' is stored twice, in a.safetensors and b.safetensors"):
        open_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"weight_map": {"w": "../outside.safetensors"}}, "leaves the index's directory"),
        ({"architectures": ["Llama"]}, "not a shard index"),
        ({"weight_map": {"w": 3}}, "must be shard file names"),
    ],
)
def test_bad_shard_index(tmp_path: Path, content: dict, message: str) -> None:
    path = tmp_path / "model.safetensors.index.json"
    path.write_text(json.dumps(content))
    with pytest.raises(CheckpointError, match=message):
        open_checkpoint(path)


def _tensor(dtype: str = "F32", shape: list = [2], offsets: list = [0, 8]) -> dict:  # noqa: B006 - the defaults are never mutated
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        (b'{"w": ', b"", "not valid JSON"),
        (b"\xff\xfe{}", b"", "not valid JSON"),
        (
            b'{"w": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}, "w": {}}',
            b"\0" * 4,
            "appears twice",
        ),
        (b"[1, 2]", b"", "not a JSON object"),
        ({"w": [1, 2]}, b"", "header entry is not a JSON object"),
        ({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "lacks data_offsets"),
        ({"w": _tensor(dtype="F7")}, b"\0" * 8, "unknown dtype 'F7'"),
        ({"w": _tensor(shape=[-2])}, b"\0" * 8, "not a list of non-negative integers"),
        ({"w": _tensor(shape=[2.0])}, b"\0" * 8, "not a list of non-negative integers"),
        ({"w": _tensor(offsets=[8, 0])}, b"\0" * 8, "0 <= begin <= end"),
        (
            {"w": _tensor(offsets=[0, 16])},
            b"\0" * 8,
            "data ends at byte 16 but the data section has 8 bytes",
        ),
        ({"w": _tensor(shape=[3])}, b"\0" * 12, "span 8 bytes but shape \\[3\\] of F32 needs 12"),
        ({"w": _tensor(), "v": _tensor(offsets=[4, 12])}, b"\0" * 12, "overlap"),
        (
            {"w": _tensor(dtype="F4", shape=[3], offsets=[0, 2])},
            b"\0" * 2,
            "not a whole number of bytes",
        ),
    ],
)
def test_forged_safetensors_header(tmp_path: Path, header: object, data: bytes, message: str) -> None:
    path = write_raw_safetensors(tmp_path / "m.safetensors", header, data)
    with pytest.raises(CheckpointError, match=message):
        open_checkpoint(path)


@pytest.mark.parametrize(
    ("length", "message"),
    [(2**63 + 5, "exceeds the 100 MB limit"), (4096, "exceeds the file size")],
)
def test_header_length_beyond_limits(tmp_path: Path, length: int, message: str) -> None:
    path = write_raw_safetensors(tmp_path / "m.safetensors", {}, length=length)
    with pytest.raises(CheckpointError, match=message):
        open_checkpoint(path)


@pytest.mark.parametrize("name", ["model.safetensors", "odd-name"])
def test_truncated_safetensors_fails_at_open(tmp_path: Path, name: str) -> None:
    good = tmp_path / "good.safetensors"
    write_safetensors(
        good,
        {"a": np.ones((8, 8), np.float32), "b": np.ones((4, 4), np.float32)},
        dtypes={"b": "BF16"},
    )
    content = good.read_bytes()
    data_start = 8 + struct.unpack("<Q", content[:8])[0]
    for cut in (0, 3, 8, 9, data_start - 1, data_start, data_start + 100, len(content) - 1):
        path = tmp_path / name
        path.write_bytes(content[:cut])
        with pytest.raises(CheckpointError, match=str(path)):
            open_checkpoint(path)


@pytest.mark.parametrize("name", ["model.safetensors", "model.bin", "model.pt", "blob"])
def test_random_bytes(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(4).bytes(4096))
    with pytest.raises(CheckpointError, match=str(path)):
        open_checkpoint(path)


def test_random_bytes_behind_pickle_magic(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x80\x02" + np.random.default_rng(5).bytes(4096))
    with pytest.raises(CheckpointError, match=r"model\.bin"):
        open_checkpoint(path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(CheckpointError, match="no such file or directory"):
        open_checkpoint(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="directory holds no files"):
        open_checkpoint(empty)
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    (config_only / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(CheckpointError, match="no checkpoint in directory"):
        open_checkpoint(config_only)
    with pytest.raises(CheckpointError, match="not a shard index"):
        open_checkpoint(config_only / "config.json")
    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        open_checkpoint(text)


def test_writer_round_trips_through_official_loader(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    arrays = {
        "f64": rng.standard_normal((3, 5)),
        "f32": rng.standard_normal((5, 3)).astype(np.float32),
        "f16": rng.standard_normal(7).astype(np.float16),
        "i64": rng.integers(-(2**40), 2**40, 9),
        "i32": rng.integers(-5, 5, (2, 2)).astype(np.int32),
        "u8": rng.integers(0, 255, 4).astype(np.uint8),
        "mask": rng.random(6) > 0.5,
        "scalar": np.float32(2.5),
        "empty": np.zeros((0, 4), np.float32),  # a zero in its shape: no bytes to write
    }
    path = write_safetensors(tmp_path / "m.safetensors", arrays, metadata={"format": "np"})
    loaded = safetensors.numpy.load_file(str(path))
    assert sorted(loaded) == sorted(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == np.shape(array)
        np.testing.assert_array_equal(loaded[name], array)
    with safetensors.safe_open(str(path), "np") as opened:
        assert opened.metadata() == {"format": "np"}
    assert struct.unpack("<Q", path.read_bytes()[:8])[0] % 8 == 0


@pytest.mark.parametrize(
    ("tensors", "dtypes", "message"),
    [
        ({"w": np.ones(2)}, {"w": "F8_E4M3"}, "cannot write dtype"),
        ({"w": np.ones(2)}, {"w": "I32"}, "needs an integer or bool array"),
        ({"w": np.array([300])}, {"w": "U8"}, "do not fit in U8"),
        ({"w": np.ones(2, np.complex64)}, None, "no safetensors dtype"),
        ({"w": np.ones(2)}, {"v": "F32"}, "not given"),
    ],
)
def test_writer_misuse_leaves_existing_file_untouched(
    tmp_path: Path, tensors: dict, dtypes: dict | None, message: str
) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"previous")
    with pytest.raises(ValueError, match=message):
        write_safetensors(path, tensors, dtypes=dtypes)
    assert path.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


def test_reader_is_a_context_manager_over_the_seam(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", {"w": np.ones(3, np.float32)})
    with open_checkpoint(path) as reader:
        assert isinstance(reader, CheckpointReader)
        info = reader.tensors()[0]
    with pytest.raises(ValueError, match="after close"):
        reader.read(info)
