"""Checkpoint readers against torch: its dtype conversions give the expected float values,
and its pickles (`torch.save`) are the files the torch reader opens. Skipped as a whole
without torch; the torch-free reader tests are in test_checkpoint.py.
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

torch = pytest.importorskip("torch")  # the reference decoder and the pickle writer of every test here
import safetensors.numpy  # noqa: E402 - after importorskip("torch")
import safetensors.torch  # noqa: E402 - after importorskip("torch")

from tests.checkpoint.test_checkpoint import (  # noqa: E402 - after importorskip("torch")
    REPO_ROOT,
    assert_same_floats,
    read_all,
)
from weightscope.checkpoint import open_checkpoint, write_safetensors  # noqa: E402 - after importorskip("torch")
from weightscope.errors import CheckpointError  # noqa: E402 - after importorskip("torch")

TORCH_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


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


def test_directory_prefers_safetensors_over_pickle(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", {"w": np.ones(2, np.float32)})
    torch.save({"other": torch.ones(2)}, tmp_path / "pytorch_model.bin")
    with open_checkpoint(tmp_path) as reader:
        assert reader.format == "safetensors"
        assert [info.name for info in reader.tensors()] == ["w"]


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


def test_truncated_torch_zip(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(random_state_dict(), path)
    content = path.read_bytes()
    for cut in (len(content) // 3, len(content) - 10):
        path.write_bytes(content[:cut])
        with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
            open_checkpoint(path)


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
