"""Model-level measures: a second pass that reads only the tensors each measure needs,
run on a worker beside the layer stream (`weightscope.execution.runner`) within the same
memory budget (`measures_bytes`).

The per-layer ESD stream sees one matrix at a time; two measures need more:

- the attention-logit bound of a block needs its q and k projections (and the gain of the
  norm before them) together. Blocks are walked one at a time, so at most one block's
  q, k and gain are alive — memory stays bounded by the largest block, not the model;
- the row cloud of the token embedding (and of an untied ``lm_head``) needs the whole
  matrix's rows: one tensor at a time.

Head counts are never guessed: they come from flags (``--heads``, ``--kv-heads``) or from
``config.json`` beside the checkpoint (Hugging Face names: ``num_attention_heads``,
``num_key_value_heads``, ``head_dim``; GPT-2's ``n_head``; without ``head_dim`` a head
is q's rows / heads); without them the bounds are "unavailable" and the report says why. A measure that fails
on one block or matrix becomes a note; it never costs the report.

`distance_from_init` is the training-run measure ‖W − W₀‖_F/‖W₀‖_F per layer, streamed
one pair of tensors at a time.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from weightscope.checkpoint.base import CheckpointReader, TensorInfo
from weightscope.checkpoint.heads import HeadLayout, read_head_layout
from weightscope.checkpoint.layers import LayerSpec, select_layers
from weightscope.checkpoint.lora import AdapterReader
from weightscope.errors import WeightscopeError
from weightscope.linalg._blas import blas_threads
from weightscope.options import AnalysisOptions
from weightscope.report import AttentionBounds, ModelMeasures
from weightscope.stats.attention import LogitBound, check_head_split, logit_bound
from weightscope.stats.embedding import RowCloud, row_cloud

#: No lock: reads as they come (a nullcontext is reentrant, so one serves every call).
_UNLOCKED: AbstractContextManager[Any] = nullcontext()

#: What one bad tensor may raise; it becomes a note (as a failed layer does in the stream).
_MEASURE_ERRORS = (WeightscopeError, ValueError, ArithmeticError, MemoryError)

#: Names of the norm right before self-attention in pre-norm blocks, searched inside the
#: q's block: GGUF (llama.cpp's ``blk.N.attn_norm``), Hugging Face Llama/Mistral/Qwen/
#: Phi/NeoX/Falcon (``input_layernorm``), GPT-2/GPT-J (``ln_1``), Meta's Llama
#: (``attention_norm``), OPT/BART/Whisper (``self_attn_layer_norm``), CLIP/SigLIP
#: (``layer_norm1``), ViT (``layernorm_before``, ``norm1``), Falcon's new layout
#: (``ln_attn``), T5 (``layer.0.layer_norm``).
_PRE_NORMS = (
    "attn_norm",
    "input_layernorm",
    "ln_1",
    "attention_norm",
    "self_attn_layer_norm",
    "layer_norm1",
    "layernorm_before",
    "norm1",
    "ln_attn",
    "layer.0.layer_norm",
)
#: Post-norm blocks (BERT/RoBERTa, DistilBERT): the q reads the previous block's last norm.
_POST_NORMS = ("output.LayerNorm", "output_layer_norm")
_BLOCK_PREFIX = re.compile(r"^(.*?(?:^|\.)(?:layers|layer|h|block|blocks|blk)\.)(\d+)\.")


def norm_gain_name(q_name: str, names: set[str]) -> str | None:
    """The gain of the norm layer whose output feeds this q projection, if identifiable.

    Pre-norm blocks: the block's own norm (`_PRE_NORMS`). Post-norm blocks (BERT's
    ``attention.self.query``, DistilBERT's ``attention.q_lin``): the previous block's last
    norm (`_POST_NORMS`), or the embeddings' ``LayerNorm`` before block 0.
    """
    match = _BLOCK_PREFIX.match(q_name)
    if match is None:
        return None
    prefix, block = match.group(1), int(match.group(2))
    for norm in _PRE_NORMS:
        candidate = f"{prefix}{block}.{norm}.weight"
        if candidate in names:
            return candidate
    if ".attention.self." in q_name or ".attention.q_lin" in q_name:
        if block > 0:
            return next((c for norm in _POST_NORMS if (c := f"{prefix}{block - 1}.{norm}.weight") in names), None)
        root = prefix.rsplit("encoder.", 1)[0] if "encoder." in prefix else prefix.rsplit("transformer.", 1)[0]
        candidate = f"{root}embeddings.LayerNorm.weight"
        return candidate if candidate in names else None
    return None


#: Model types (config.json ``model_type``) whose RMSNorm computes x̂·(1 + w) and stores w:
#: Hugging Face's ``GemmaRMSNorm`` of Gemma, Gemma 2 and Gemma 3 (its weights sit near 0,
#: not near 1). llama.cpp's converter adds the 1 when it writes these norms to a GGUF
#: (``convert_hf_to_gguf.py``, the Gemma models' ``modify_tensors``), so a GGUF file's
#: ``attn_norm`` is the effective gain already and is read as stored.
OFFSET_GAIN_MODEL_TYPES = frozenset({"gemma", "gemma2", "gemma3", "gemma3_text"})


def stores_gain_offsets(reader: CheckpointReader) -> bool:
    """Whether this checkpoint's norm weights are offsets w of an effective gain 1 + w."""
    if reader.metadata.get("architecture") is not None:  # GGUF: written as 1 + w
        return False
    return reader.model_config.get("model_type") in OFFSET_GAIN_MODEL_TYPES


def _missing_gain_note(blocks: list[int | None], q_name: str) -> str:
    """One line for every block whose bound is without its norm gain."""
    listed = ", ".join(str(b) for b in blocks[:6]) + (f", … ({len(blocks)} blocks)" if len(blocks) > 6 else "")
    return (
        f"no norm gain found before q in block(s) {listed} (e.g. {q_name}; looked for the block's "
        f"{', '.join(_PRE_NORMS[:3])}, … or a post-norm's LayerNorm): their bounds leave the gain out, "
        f"and can be off by its size (SmolLM2-135M's block 0 reads 132.7 without its gain, 0.61 with it)"
    )


def qk_pairs(specs: list[LayerSpec]) -> tuple[list[tuple[LayerSpec, LayerSpec]], list[str]]:
    """(q, k) per block, in block order; the notes say what could not be paired."""
    by_block: dict[int, dict[str, list[LayerSpec]]] = {}
    notes = []
    for spec in specs:
        if spec.kind in ("q", "k") and spec.block is not None and len(spec.info.shape) == 2:
            by_block.setdefault(spec.block, {}).setdefault(spec.kind, []).append(spec)
    fused = [spec.name for spec in specs if spec.kind == "qkv"]
    if fused:
        notes.append(f"{len(fused)} fused qkv projections (e.g. {fused[0]}) are not split: no logit bound for them")
    pairs = []
    for block in sorted(by_block):
        found = by_block[block]
        if len(found.get("q", [])) == 1 and len(found.get("k", [])) == 1:
            pairs.append((found["q"][0], found["k"][0]))
        elif found.get("q") and found.get("k"):  # a block with no k (or no q) has no pair to look for
            notes.append(
                f"block {block}: no single q/k pair ({len(found.get('q', []))} q, {len(found.get('k', []))} k)"
            )
    return pairs, notes


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def attention_bounds(
    reader: CheckpointReader, specs: list[LayerSpec], heads: HeadLayout, lock: AbstractContextManager[Any] = _UNLOCKED
) -> tuple[AttentionBounds, list[str]]:
    """Every block's logit bound, one block's tensors alive at a time; each read under
    ``lock`` (`measure_model`)."""
    pairs, notes = qk_pairs(specs)
    if not pairs:
        return AttentionBounds("unavailable", "no separate q and k projections found"), notes
    if heads.heads is None:
        reason = "number of attention heads unknown: neither a config.json beside the checkpoint nor GGUF metadata states it; pass --heads (and --kv-heads for GQA)"
        return AttentionBounds("unavailable", reason, source=heads.source), notes
    infos = {info.name: info for info in reader.tensors()}
    gains = {name for name, info in infos.items() if len(info.shape) == 1 and info.is_float}
    bounds: list[LogitBound] = []
    split = None
    without_gain: list[tuple[int | None, str]] = []
    offsets = stores_gain_offsets(reader)
    for q_spec, k_spec in pairs:
        gain_name = norm_gain_name(q_spec.name, gains)
        try:
            split = heads.split_block(q_spec.info.shape[0], k_spec.info.shape[0])
            check_head_split(*split)
            with lock:
                gain = reader.read(infos[gain_name]) if gain_name is not None else None
            if gain is not None and gain.shape != (q_spec.info.shape[1],):
                gain, gain_name = None, None
            if gain is not None and offsets:
                gain, gain_name = 1.0 + np.asarray(gain, dtype=np.float64), f"1 + {gain_name}"
            with lock:
                wq, wk = reader.read(q_spec.info), reader.read(k_spec.info)
            if not all(np.isfinite(a).all() for a in (wq, wk) + ((gain,) if gain is not None else ())):
                raise WeightscopeError("non-finite weights")
            bounds.append(logit_bound(q_spec.block, q_spec.name, k_spec.name, wq, wk, split, gain, gain_name))
            if gain_name is None:
                without_gain.append((q_spec.block, q_spec.name))
        except _MEASURE_ERRORS as exc:
            notes.append(f"block {q_spec.block}: no logit bound ({_first_line(exc)})")
    if without_gain:
        notes.append(_missing_gain_note([block for block, _ in without_gain], without_gain[0][1]))
    if not bounds or split is None:
        return AttentionBounds("unavailable", "no block's q/k split into the stated heads", source=heads.source), notes
    every = np.concatenate([np.asarray(b.heads) for b in bounds])
    return (
        AttentionBounds(
            "ok",
            None,
            *split,
            heads.source,
            float(every.max()),
            float(np.median(every)),
            bounds,
        ),
        notes,
    )


def token_matrices(specs: list[LayerSpec]) -> list[LayerSpec]:
    """The token embedding (the embedding with the most rows) and an lm_head, if any."""
    chosen = []
    embeddings = [s for s in specs if s.kind == "embedding" and len(s.info.shape) == 2]
    if embeddings:
        chosen.append(max(embeddings, key=lambda s: max(s.info.shape)))
    chosen.extend(s for s in specs if s.kind == "lm_head" and len(s.info.shape) == 2)
    return chosen


def row_clouds(
    reader: CheckpointReader, specs: list[LayerSpec], seed: int, lock: AbstractContextManager[Any] = _UNLOCKED
) -> tuple[list[RowCloud], list[str]]:
    """Row clouds of the token embedding and of an untied lm_head, one tensor at a time;
    each read under ``lock`` (`measure_model`)."""
    clouds: list[RowCloud] = []
    notes: list[str] = []
    first: np.ndarray | None = None
    for spec in token_matrices(specs):
        try:
            with lock:
                array = reader.read(spec.info)
            if (
                first is not None
                and spec.kind == "lm_head"
                and array.shape == first.shape
                and np.array_equal(array, first)
            ):
                notes.append(f"{spec.name} is tied to the embedding (same values): measured once")
                continue
            if not np.isfinite(array).all():
                raise WeightscopeError("non-finite weights")
            clouds.append(row_cloud(spec.name, array, seed=seed))
            first = array if first is None else first
        except _MEASURE_ERRORS as exc:
            notes.append(f"{spec.name}: no row cloud ({_first_line(exc)})")
    if not clouds and not notes:
        notes.append("no token embedding or lm_head found")
    return clouds, notes


def measure_model(
    reader: CheckpointReader, options: AnalysisOptions, lock: AbstractContextManager[Any] = _UNLOCKED
) -> ModelMeasures | None:
    """Attention-logit bounds and embedding row clouds of an open checkpoint; None for a
    LoRA adapter, whose rank-r updates are neither a q·k product nor embedding rows (its
    factors would pass for q/k projections of their own and give wrong notes).

    ``lock`` is held around each tensor read: the pipeline runs the measures alongside
    its layers, and a checkpoint reader need not be thread-safe."""
    if isinstance(reader, AdapterReader):
        return None
    specs = _measured_specs(reader, options)
    heads = read_head_layout(reader, options.heads, options.kv_heads)
    with blas_threads(1):  # small products: threads only contend (and round differently)
        attention, attention_notes = attention_bounds(reader, specs, heads, lock)
        clouds, cloud_notes = row_clouds(reader, specs, options.seed, lock)
    return ModelMeasures(attention, clouds, attention_notes + cloud_notes)


def _measured_specs(reader: CheckpointReader, options: AnalysisOptions) -> list[LayerSpec]:
    return select_layers(reader.tensors(), include=options.include, exclude=options.exclude, min_evals=1).layers


def measures_bytes(reader: CheckpointReader, options: AnalysisOptions) -> int:
    """Estimated peak bytes of `measure_model`, for the scheduler that runs it alongside
    the layers: the larger of one block's q and k (float32, and the float64 head slices
    their QR factorises) and two token matrices in float32 (an lm_head is compared with
    the embedding, both in memory, to find a tied one)."""
    specs = _measured_specs(reader, options)
    pairs, _ = qk_pairs(specs)
    attention = max((12 * (q.info.numel + k.info.numel) for q, k in pairs), default=0)
    tokens = sorted((4 * spec.info.numel for spec in token_matrices(specs)), reverse=True)[:2]
    return max(attention, sum(tokens), 1)


def _relative_distance(w: np.ndarray, w0: np.ndarray) -> float | None:
    flat, flat0 = w.reshape(-1), w0.reshape(-1)
    base = float(np.einsum("i,i->", flat0, flat0, dtype=np.float64))
    if base <= 0:
        return None
    delta = np.subtract(flat, flat0, dtype=np.float64)
    # einsum, not a BLAS dot: a threaded dot cost 20 ms per 128×128 tensor on a loaded
    # machine (spinning threads), and rounds differently per thread count
    return float(np.sqrt(np.einsum("i,i->", delta, delta) / base))


def distance_from_init(
    reader: CheckpointReader, reference: CheckpointReader, names: list[str]
) -> dict[str, float | None]:
    """‖W − W₀‖_F/‖W₀‖_F per named tensor against ``reference`` (the run's first checkpoint).

    One pair of tensors alive at a time. None where the tensor is missing on either side,
    the shapes differ, a value is not finite, W₀ is all zero, or a tensor cannot be read.
    """
    infos: dict[str, TensorInfo] = {info.name: info for info in reader.tensors()}
    infos0: dict[str, TensorInfo] = {info.name: info for info in reference.tensors()}
    out: dict[str, float | None] = {}
    for name in names:
        info, info0 = infos.get(name), infos0.get(name)
        value = None
        if info is not None and info0 is not None and info.shape == info0.shape:
            try:
                value = _relative_distance(reader.read(info), reference.read(info0))
            except _MEASURE_ERRORS:
                value = None
        out[name] = value if value is None or np.isfinite(value) else None
    return out
