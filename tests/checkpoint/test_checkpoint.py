"""Checkpoint readers and the safetensors writer.

References are independent of our code: the official `safetensors` package writes the
files our reader decodes and loads the files our writer produces, and torch's own dtype
conversions give the expected float values.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the reference decoder and the pickle writer of most tests here
import safetensors.numpy  # noqa: E402 - after importorskip("torch")
import safetensors.torch  # noqa: E402 - after importorskip("torch")

from weightscope.checkpoint import CheckpointReader, open_checkpoint, write_safetensors  # noqa: E402 - after importorskip("torch")
from weightscope.errors import CheckpointError  # noqa: E402 - after importorskip("torch")

REPO_ROOT = Path(__file__).resolve().parents[2]

TORCH_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


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


def expected_float(tensor: torch.Tensor) -> np.ndarray:
    target = torch.float64 if tensor.dtype == torch.float64 else torch.float32
    return tensor.to(target).numpy()


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(11, 7, generator=generator),
        "layers.0.attn.q_proj.weight": torch.randn(7, 7, generator=generator).to(torch.bfloat16),
        "layers.0.mlp.up_proj.weight": torch.randn(13, 7, generator=generator).to(torch.float16),
        "layers.0.norm.weight": torch.ones(7),
    }


def write_raw_safetensors(path: Path, header: object, data: bytes = b"", *, length: int | None = None) -> Path:
    """A safetensors file with an arbitrary (possibly invalid) header, for forged inputs."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


# --- float decoding -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", sorted(TORCH_DTYPES))
def test_every_float_dtype_decodes_like_torch(tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate(
        [
            rng.standard_normal(500) * 10.0 ** rng.integers(-12, 6, 500),
            [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -3e5, 448.0, 57344.0],
        ]
    )
    tensor = torch.tensor(values, dtype=torch.float64).to(TORCH_DTYPES[dtype]).reshape(509, 1)
    path = tmp_path / "m.safetensors"
    safetensors.torch.save_file({"w": tensor}, str(path))
    with open_checkpoint(path) as reader:
        (info,) = reader.tensors()
        assert (info.dtype, info.shape) == (dtype, (509, 1))
        assert_same_floats(reader.read(info), expected_float(tensor))


@pytest.mark.parametrize(
    ("dtype", "code_type"),
    [("BF16", np.int16), ("F16", np.int16), ("F8_E4M3", np.uint8), ("F8_E5M2", np.uint8)],
)
def test_every_bit_pattern_decodes_like_torch(tmp_path: Path, dtype: str, code_type: type) -> None:
    """All 65536 (or 256) codes, NaNs, infinities and subnormals included."""
    count = 1 << (8 * np.dtype(code_type).itemsize)
    codes = np.arange(count, dtype=np.int64).astype(np.uint16 if count > 256 else np.uint8)
    tensor = torch.from_numpy(codes.view(code_type).copy()).view(TORCH_DTYPES[dtype])
    path = tmp_path / "codes.safetensors"
    safetensors.torch.save_file({"codes": tensor}, str(path))
    assert_same_floats(read_all(path)["codes"], expected_float(tensor))


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


@pytest.mark.slow
def test_bf16_reads_without_torch(tmp_path: Path) -> None:
    values = np.random.default_rng(2).standard_normal((16, 8)).astype(np.float32)
    path = write_safetensors(tmp_path / "m.safetensors", {"w": values}, dtypes={"w": "BF16"})
    pickle_path = tmp_path / "pytorch_model.bin"
    torch.save({"w": torch.ones(2)}, pickle_path)
    expected = torch.from_numpy(values).to(torch.bfloat16).float().numpy()
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any "import torch" now fails
        import numpy as np
        from weightscope.checkpoint import open_checkpoint
        from weightscope.errors import CheckpointError
        with open_checkpoint({str(path)!r}) as reader:
            np.save({str(tmp_path / "out.npy")!r}, reader.read(reader.tensors()[0]))
        try:
            open_checkpoint({str(pickle_path)!r})
        except CheckpointError as exc:
            print(exc)
        assert sys.modules["torch"] is None
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "is a PyTorch pickle; install the torch extra: pip install 'weightscope-esd[torch]'" in result.stdout
    assert_same_floats(np.load(tmp_path / "out.npy"), expected)


def test_integer_tensors_are_listed_but_not_readable(tmp_path: Path) -> None:
    arrays = {
        "ids": np.arange(6).reshape(2, 3),
        "mask": np.array([True, False]),
        "w": np.ones(2, np.float32),
    }
    st_path = write_safetensors(tmp_path / "m.safetensors", arrays, dtypes={"w": "BF16"})
    pt_path = tmp_path / "m.pt"
    torch.save({name: torch.from_numpy(array) for name, array in arrays.items()}, pt_path)
    for path in (st_path, pt_path):
        with open_checkpoint(path) as reader:
            infos = {info.name: info for info in reader.tensors()}
            assert {name: info.dtype for name, info in infos.items()}["ids"] == "I64"
            assert infos["mask"].dtype == "BOOL" and not infos["mask"].is_float
            assert infos["ids"].nbytes == 48 and infos["ids"].shape == (2, 3)
            for name in ("ids", "mask"):
                with pytest.raises(CheckpointError, match="only float tensors"):
                    reader.read(infos[name])


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="truncates a file that is held open")
def test_reading_one_tensor_touches_no_byte_of_another(tmp_path: Path) -> None:
    """After open, cut the file right after tensor "a": "b"'s bytes no longer exist.

    Any read of them now fails with a short read (the reader never maps the file: a
    mapped page past the end would raise SIGBUS; the child process guards against that
    regressing). The control run shows that
    reading "b" does fail, so listing and reading "a" would have failed too had they
    touched a byte of "b".
    """
    rng = np.random.default_rng(3)
    a, b = (
        rng.standard_normal((256, 64)).astype(np.float32),
        rng.standard_normal((512, 64)).astype(np.float32),
    )
    path = write_safetensors(tmp_path / "m.safetensors", {"a": a, "b": b}, dtypes={"a": "BF16", "b": "BF16"})
    header_length = struct.unpack("<Q", path.read_bytes()[:8])[0]
    cut_at = 8 + header_length + a.size * 2
    script = textwrap.dedent(
        f"""
        import os, sys
        from weightscope.checkpoint import open_checkpoint
        reader = open_checkpoint({str(path)!r})
        os.truncate({str(path)!r}, {cut_at})
        infos = {{info.name: info for info in reader.tensors()}}
        print(float(reader.read(infos[sys.argv[1]]).astype("float64").sum()))
        """
    )

    def run(name: str) -> subprocess.CompletedProcess[str]:
        write_safetensors(path, {"a": a, "b": b}, dtypes={"a": "BF16", "b": "BF16"})
        return subprocess.run(
            [sys.executable, "-c", script, name],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            timeout=60,
        )

    only_a = run("a")
    assert only_a.returncode == 0, only_a.stderr
    expected = torch.from_numpy(a).to(torch.bfloat16).double().sum().item()
    assert float(only_a.stdout) == pytest.approx(expected, rel=1e-12)
    only_b = run("b")
    assert only_b.returncode == 1
    assert "CheckpointError" in only_b.stderr and "truncated while being read" in only_b.stderr


# --- layouts: files, directories, shards ----------------------------------------------


@pytest.mark.parametrize("name", ["model.safetensors", "weights.dat", "model.bin", "no_extension"])
def test_safetensors_file_of_any_name(tmp_path: Path, name: str) -> None:
    state = random_state_dict()
    safetensors.torch.save_file(state, str(tmp_path / name))
    with open_checkpoint(tmp_path / name) as reader:
        assert reader.format == "safetensors"
        assert sorted(info.name for info in reader.tensors()) == sorted(state)
    for key, array in read_all(tmp_path / name).items():
        assert_same_floats(array, expected_float(state[key]))


def test_directory_of_safetensors_files_is_one_model(tmp_path: Path) -> None:
    state = random_state_dict()
    keys = sorted(state)
    safetensors.torch.save_file({k: state[k] for k in keys[:2]}, str(tmp_path / "part-a.safetensors"))
    safetensors.torch.save_file({k: state[k] for k in keys[2:]}, str(tmp_path / "part-b.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    with open_checkpoint(tmp_path) as reader:
        assert reader.format == "safetensors"
        files = {info.name: Path(info.file).name for info in reader.tensors()}
    assert files == {k: "part-a.safetensors" if k in keys[:2] else "part-b.safetensors" for k in keys}
    for key, array in read_all(tmp_path).items():
        assert_same_floats(array, expected_float(state[key]))


def test_same_tensor_in_two_files_is_rejected(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "a.safetensors", {"w": np.ones(2, np.float32)})
    write_safetensors(tmp_path / "b.safetensors", {"w": np.zeros(2, np.float32)})
    with pytest.raises(CheckpointError, match=r"tensor 'w' is stored twice, in a.safetensors and b.safetensors"):
        open_checkpoint(tmp_path)


def write_sharded(directory: Path, state: dict[str, torch.Tensor], shards: int, fmt: str) -> Path:
    """A Hugging Face style sharded model; returns the index path."""
    keys = sorted(state)
    suffix, index_name = {
        "safetensors": (".safetensors", "model.safetensors.index.json"),
        "torch": (".bin", "pytorch_model.bin.index.json"),
    }[fmt]
    weight_map = {}
    for shard in range(shards):
        name = f"model-{shard + 1:05d}-of-{shards:05d}{suffix}"
        part = {k: state[k].clone() for k in keys[shard::shards]}
        if fmt == "safetensors":
            safetensors.torch.save_file(part, str(directory / name))
        else:
            torch.save(part, directory / name)
        weight_map.update(dict.fromkeys(part, name))
    index = directory / index_name
    index.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return index


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
@pytest.mark.parametrize("open_via", ["directory", "index"])
def test_sharded_model(tmp_path: Path, fmt: str, open_via: str) -> None:
    state = random_state_dict()
    index = write_sharded(tmp_path, state, shards=3, fmt=fmt)
    target = tmp_path if open_via == "directory" else index
    with open_checkpoint(target) as reader:
        assert reader.format == fmt
        assert len({info.file for info in reader.tensors()}) == 3
    arrays = read_all(target)
    assert sorted(arrays) == sorted(state)
    for key, array in arrays.items():
        assert_same_floats(array, expected_float(state[key]))


def test_shard_missing(tmp_path: Path) -> None:
    write_sharded(tmp_path, random_state_dict(), shards=2, fmt="safetensors")
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"shard model-00002-of-00002\.safetensors is missing"):
        open_checkpoint(tmp_path)


def test_index_maps_tensor_to_a_shard_that_lacks_it(tmp_path: Path) -> None:
    index = write_sharded(tmp_path, random_state_dict(), shards=2, fmt="safetensors")
    content = json.loads(index.read_text())
    content["weight_map"]["embed.weight"] = "model-00002-of-00002.safetensors"
    index.write_text(json.dumps(content))
    with pytest.raises(CheckpointError, match=r"maps tensor 'embed\.weight' to model-00002-of-00002\.safetensors"):
        open_checkpoint(index)


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


def test_directory_prefers_safetensors_over_pickle(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", {"w": np.ones(2, np.float32)})
    torch.save({"other": torch.ones(2)}, tmp_path / "pytorch_model.bin")
    with open_checkpoint(tmp_path) as reader:
        assert reader.format == "safetensors"
        assert [info.name for info in reader.tensors()] == ["w"]


# --- torch pickles ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "zip_format"),
    [
        ("pytorch_model.bin", True),
        ("model.pt", True),
        ("legacy.pth", False),
        ("weights.whatever", False),
    ],
)
def test_torch_pickle(tmp_path: Path, name: str, zip_format: bool) -> None:
    state = random_state_dict()
    state["layers.0.f64"] = torch.randn(3, 2, dtype=torch.float64)
    if zip_format:  # torch 2.13 cannot load float8 from its own legacy format
        state["layers.0.f8"] = torch.randn(5, 3).to(torch.float8_e4m3fn)
    torch.save(state, tmp_path / name, _use_new_zipfile_serialization=zip_format)
    target = tmp_path if name == "pytorch_model.bin" else tmp_path / name
    with open_checkpoint(target) as reader:
        assert reader.format == "torch"
        dtypes = {info.name: info.dtype for info in reader.tensors()}
        assert dtypes["layers.0.attn.q_proj.weight"] == "BF16"
        assert dtypes["layers.0.f64"] == "F64"
        assert dtypes.get("layers.0.f8", "F8_E4M3") == "F8_E4M3"
    arrays = read_all(target)
    assert list(arrays) == list(state)
    for key, array in arrays.items():
        assert_same_floats(array, expected_float(state[key]))


WRAPPED = {
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 3},
    "model": lambda sd: {"model": sd, "args": {"lr": 0.1}},
    "module": lambda sd: {"module": sd},
    "model_state_dict": lambda sd: {"model_state_dict": sd, "step": 7},
    "deepspeed": lambda sd: {"model": {"module": sd}},
    "lightning": lambda sd: {
        "state_dict": sd,
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(11, 7)}}, "param_groups": []}],
        "lr_schedulers": [],
        "global_step": 100,
    },
}


@pytest.mark.parametrize("wrapper", sorted(WRAPPED))
def test_wrapped_state_dict_is_unwrapped(tmp_path: Path, wrapper: str) -> None:
    state = random_state_dict()
    path = tmp_path / "last.ckpt"
    torch.save(WRAPPED[wrapper](state), path)
    arrays = read_all(path)
    assert list(arrays) == list(state)
    assert_same_floats(arrays["embed.weight"], expected_float(state["embed.weight"]))


def test_unwrapped_nested_containers_flatten_to_dotted_names(tmp_path: Path) -> None:
    w = torch.randn(4, 3)
    path = tmp_path / "nested.pt"
    torch.save({"encoder": {"w": w, "step": 3}, "heads": [w * 2, (w * 3,)], "note": "x"}, path)
    arrays = read_all(path)
    assert sorted(arrays) == ["encoder.w", "heads.0", "heads.1.0"]
    assert_same_floats(arrays["heads.1.0"], (w * 3).numpy())


def test_shared_storage_and_views(tmp_path: Path) -> None:
    base = torch.randn(6, 4)
    path = tmp_path / "tied.pt"
    torch.save(
        {"w": base, "tied": base, "transposed": base.t(), "rows": base[2:5], "col": base[:, 1]},
        path,
    )
    arrays = read_all(path)
    np.testing.assert_array_equal(arrays["tied"], base.numpy())
    np.testing.assert_array_equal(arrays["transposed"], base.numpy().T)
    np.testing.assert_array_equal(arrays["rows"], base.numpy()[2:5])
    np.testing.assert_array_equal(arrays["col"], base.numpy()[:, 1])


class _PlantsMarker:
    """Unpickling this runs Path.touch: the stand-in for a hostile payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["zip", "legacy", "plain_pickle"])
def test_pickle_with_code_is_refused_without_running_it(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "payload_ran"
    payload = {"w": torch.ones(2), "evil": _PlantsMarker(marker)}
    path = tmp_path / "model.bin"
    if writer == "plain_pickle":
        path.write_bytes(pickle.dumps(payload, protocol=4))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=writer == "zip")
    with pytest.raises(CheckpointError, match="refused to unpickle") as caught:
        open_checkpoint(path)
    assert "\n" not in str(caught.value)
    assert not marker.exists()
    # Control: an unrestricted load does run the payload, so the check above could fail.
    if writer == "plain_pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


# --- bad inputs -------------------------------------------------------------------------


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


def test_truncated_torch_zip(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(random_state_dict(), path)
    content = path.read_bytes()
    for cut in (len(content) // 3, len(content) - 10):
        path.write_bytes(content[:cut])
        with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
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


# --- writer -------------------------------------------------------------------------------


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


def test_writer_rounds_to_bf16_and_f16_like_torch(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    # Random bit patterns reach every exponent, subnormals, NaNs and infinities; the
    # listed patterns are exact ties (odd and even) and the largest float32.
    bits = np.concatenate(
        [
            rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32),
            np.array([0x3F808000, 0x3F818000, 0xBF808000, 0x7F7FFFFF, 0x00008000, 0x80000000], np.uint32),
        ]
    )
    values = bits.view(np.float32)
    path = write_safetensors(tmp_path / "m.safetensors", {"b": values, "h": values}, dtypes={"b": "BF16", "h": "F16"})
    loaded = safetensors.torch.load_file(str(path))
    reference = torch.from_numpy(values.copy())
    assert loaded["b"].dtype == torch.bfloat16 and loaded["h"].dtype == torch.float16
    assert_same_floats(loaded["b"].float().numpy(), reference.to(torch.bfloat16).float().numpy())
    assert_same_floats(loaded["h"].float().numpy(), reference.to(torch.float16).float().numpy())


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
