"""GGUF files written with the `gguf` package's own writer, for tests and the benchmark.

`write_gguf` writes a Llama-architecture model the way llama.cpp's converter does: names
mapped with gguf's `TensorNameMap`, q/k rows permuted for rotary embedding
(``LlamaModel.permute``), weights quantized with `gguf.quants.quantize` (types it can
quantize in numpy) or stored F32/F16.
"""

from __future__ import annotations

import numpy as np


def permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute`` (convert_hf_to_gguf.py)."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_gguf(
    path, hf_weights: dict[str, np.ndarray], qtype_name: str, *, heads: int, kv_heads: int, blocks: int
) -> dict[str, np.ndarray]:
    """Write ``hf_weights`` (Hugging Face Llama names) as GGUF; return the dequantized
    values per HF name (the reference for the quantization error)."""
    import gguf

    qtype = gguf.GGMLQuantizationType[qtype_name]
    mapping = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, blocks)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(blocks)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_embedding_length(next(iter(hf_weights.values())).shape[1])
    dequantized = {}
    for name, w in hf_weights.items():
        stored = w
        if name.endswith("q_proj.weight"):
            stored = permute(w, heads)
        elif name.endswith("k_proj.weight"):
            stored = permute(w, kv_heads)
        gguf_name = mapping.get_name(name, try_suffixes=(".weight",))
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(gguf_name, stored.astype(np.float32))
            dequantized[name] = w.astype(np.float32)
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(gguf_name, stored.astype(np.float16))
            dequantized[name] = w.astype(np.float16).astype(np.float32)
        else:
            quantized = gguf.quants.quantize(stored.astype(np.float32), qtype)
            writer.add_tensor(gguf_name, quantized, raw_dtype=qtype)
            dequantized[name] = gguf.quants.dequantize(gguf.quants.quantize(w.astype(np.float32), qtype), qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dequantized
