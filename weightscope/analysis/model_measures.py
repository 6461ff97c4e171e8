"""Model-level measures, taken from the tensors while the layer stream holds them.

The per-layer ESD stream sees one matrix at a time; two measures need more than one
layer's numbers, but not more than one matrix at a time:

- the attention-logit bound of a block needs its q and k projections (and the gain of the
  norm before them) together. Each projection gives its per-head R factors
  (`weightscope.stats.attention.head_factors`: heads × d_h × d_h) while its layer is
  analysed, and the bound is formed from the two blocks' factors at the end;
- the row cloud of the token embedding (and of an untied ``lm_head``) needs the whole
  matrix's rows: it is taken in that matrix's layer unit, from the Gram matrix the
  layer's spectrum formed where there is one (d ≤ `GRAM_MAX_DIM`).

So no matrix is read, decoded or multiplied a second time for the measures, and their
memory is that of one layer's (`part_bytes`, in the layer's working set). `plan_measures`
decides from the headers which tensor gives what (reading only the 1-D norm gains);
`measure_part` takes it; `combine_measures` forms the report's `ModelMeasures`. A tensor
the layer stream does not carry (a q or k narrower than ``min_evals``) is read once for
its part alone (`weightscope.analysis.pipeline`).

Head counts are never guessed: they come from flags (``--heads``, ``--kv-heads``) or from
``config.json`` beside the checkpoint (Hugging Face names: ``num_attention_heads``,
``num_key_value_heads``, ``head_dim``; GPT-2's ``n_head``; without ``head_dim`` a head
is q's rows / heads); without them the bounds are "unavailable" and the report says why. A measure that fails
on one block or matrix becomes a note; it never costs the report.

`distance_from_init` is the training-run measure ‖W − W₀‖_F/‖W₀‖_F per layer, streamed
one pair of tensors at a time.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

from weightscope.checkpoint.base import CheckpointReader, TensorInfo
from weightscope.checkpoint.heads import HeadLayout, read_head_layout
from weightscope.checkpoint.layers import LayerSpec, select_layers
from weightscope.checkpoint.lora import AdapterReader
from weightscope.errors import WeightscopeError
from weightscope.linalg._blas import blas_threads
from weightscope.options import AnalysisOptions
from weightscope.report import AttentionBounds, ModelMeasures
from weightscope.stats.attention import (
    HEAD_GROUP_BYTES,
    LogitBound,
    bound_of,
    bounds_from_factors,
    check_head_split,
    head_factors,
)
from weightscope.stats.embedding import DEFAULT_SAMPLE, GRAM_MAX_DIM, RowCloud, row_cloud

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


def token_matrices(specs: list[LayerSpec]) -> list[LayerSpec]:
    """The token embedding (the embedding with the most rows) and an lm_head, if any."""
    chosen = []
    embeddings = [s for s in specs if s.kind == "embedding" and len(s.info.shape) == 2]
    if embeddings:
        chosen.append(max(embeddings, key=lambda s: max(s.info.shape)))
    chosen.extend(s for s in specs if s.kind == "lm_head" and len(s.info.shape) == 2)
    return chosen


@dataclass(frozen=True)
class MeasureRole:
    """What the measures take from one tensor while the layer stream holds it
    (`measure_part`): a q or k projection's per-head R factors (``heads`` heads of
    ``head_dim``, the norm ``gain`` folded in), or a token matrix's row cloud (``seed``
    for its samples; ``digest`` when an lm_head could be tied to the embedding)."""

    kind: str  # "q", "k" or "tokens"
    heads: int = 0
    head_dim: int = 0
    gain: np.ndarray | None = None
    seed: int = 0
    digest: bool = False


@dataclass(frozen=True)
class HeadFactors:
    """A projection's per-head R factors (`weightscope.stats.attention.head_factors`)."""

    factors: np.ndarray


@dataclass(frozen=True)
class TokenCloud:
    """A token matrix's row cloud and, where asked, a digest of its values."""

    cloud: RowCloud
    digest: bytes = b""


@dataclass(frozen=True)
class NotMeasured:
    """Why a tensor gave the measures nothing (one line)."""

    reason: str


#: What one tensor gives the measures.
MeasurePart = HeadFactors | TokenCloud | NotMeasured


@dataclass(frozen=True)
class BlockPair:
    """One block's q and k, their head split, and the name of the gain folded into both."""

    q: LayerSpec
    k: LayerSpec
    split: tuple[int, int, int]
    gain: str | None


@dataclass(frozen=True)
class MeasurePlan:
    """Which tensors the measures take what from (``roles``, by name), decided from the
    headers, the head layout and the norm gains (1-D, read here) before any matrix is
    read; `combine_measures` turns the tensors' parts into `ModelMeasures`."""

    roles: dict[str, MeasureRole]
    specs: list[LayerSpec]
    blocks: list[BlockPair]
    tokens: list[LayerSpec]
    heads: HeadLayout
    #: why there are no bounds at all ("no q/k pair", "heads unknown"); None when there are pairs
    unavailable: str | None
    notes: list[str]


def plan_measures(reader: CheckpointReader, options: AnalysisOptions) -> MeasurePlan | None:
    """The measures' plan for an open checkpoint; None for a LoRA adapter, whose rank-r
    updates are neither a q·k product nor embedding rows (its factors would pass for q/k
    projections of their own and give wrong notes)."""
    if isinstance(reader, AdapterReader):
        return None
    specs = select_layers(reader.tensors(), include=options.include, exclude=options.exclude, min_evals=1).layers
    heads = read_head_layout(reader, options.heads, options.kv_heads)
    pairs, notes = qk_pairs(specs)
    roles: dict[str, MeasureRole] = {}
    blocks: list[BlockPair] = []
    unavailable = None
    if not pairs:
        unavailable = "no separate q and k projections found"
    elif heads.heads is None:
        unavailable = "number of attention heads unknown: neither a config.json beside the checkpoint nor GGUF metadata states it; pass --heads (and --kv-heads for GQA)"
    else:
        infos = {info.name: info for info in reader.tensors()}
        gains = {name for name, info in infos.items() if len(info.shape) == 1 and info.is_float}
        offsets = stores_gain_offsets(reader)
        for q_spec, k_spec in pairs:
            try:
                split = heads.split_block(q_spec.info.shape[0], k_spec.info.shape[0])
                check_head_split(*split)
                gain, gain_name = _norm_gain(reader, infos, norm_gain_name(q_spec.name, gains), q_spec, offsets)
            except _MEASURE_ERRORS as exc:
                notes.append(f"block {q_spec.block}: no logit bound ({_first_line(exc)})")
                continue
            roles[q_spec.name] = MeasureRole("q", split[0], split[2], gain)
            roles[k_spec.name] = MeasureRole("k", split[1], split[2], gain)
            blocks.append(BlockPair(q_spec, k_spec, split, gain_name))
    tokens = token_matrices(specs)
    shapes = [spec.info.shape for spec in tokens]
    for spec in tokens:  # a digest only where an lm_head could be the embedding again
        roles[spec.name] = MeasureRole("tokens", seed=options.seed, digest=shapes.count(spec.info.shape) > 1)
    return MeasurePlan(roles, specs, blocks, tokens, heads, unavailable, notes)


def _norm_gain(
    reader: CheckpointReader, infos: dict[str, TensorInfo], name: str | None, q_spec: LayerSpec, offsets: bool
) -> tuple[np.ndarray | None, str | None]:
    """The gain folded into a block's q and k, and its name (None, None when there is none
    of q's input width); raises on a non-finite gain."""
    if name is None:
        return None, None
    gain = reader.read(infos[name])
    if gain.shape != (q_spec.info.shape[1],):
        return None, None
    if not np.isfinite(gain).all():
        raise WeightscopeError("non-finite weights")
    if offsets:
        return 1.0 + np.asarray(gain, dtype=np.float64), f"1 + {name}"
    return gain, name


def measure_part(name: str, role: MeasureRole, array: np.ndarray, gram: np.ndarray | None = None) -> MeasurePart:
    """What one finite tensor gives the measures, taken while the layer stream holds it
    (so the matrix is read once): a projection's R factors, or a token matrix's row cloud,
    from ``gram`` (WᵀW of the oriented matrix, float64) where the layer's spectrum already
    formed it (`weightscope.stats.embedding.row_moments`). A failure is a `NotMeasured`."""
    try:
        if role.kind == "tokens":
            with blas_threads(1):  # small products: threads only contend (and round differently)
                cloud = row_cloud(name, array, seed=role.seed, gram=gram)
            # SHA-256, not BLAKE2: 1.55 against 0.58 GB/s here (the CPU's SHA extensions),
            # 1.4 s instead of 3.8 s on a 152064 × 3584 float32 vocabulary matrix
            digest = hashlib.sha256(np.ascontiguousarray(array).data).digest() if role.digest else b""
            return TokenCloud(cloud, digest)
        with blas_threads(1):
            return HeadFactors(head_factors(array, role.heads, role.head_dim, role.gain))
    except _MEASURE_ERRORS as exc:
        return NotMeasured(_first_line(exc))


def part_bytes(spec: LayerSpec, role: MeasureRole) -> int:
    """Peak bytes `measure_part` adds to its layer's working set. A projection: a group of
    float64 head slices and its scaled copy (`HEAD_GROUP_BYTES`) and every head's R
    factor. A token matrix: the intrinsic dimension's sample (float32 rows, a float64
    copy, its centred copy and that in float32: 24 bytes a value) and its four n × n
    float32 distance temporaries, plus, where the row cloud reads WᵀW, the kept Gram
    matrix and its float64 copy."""
    rows, width = max(spec.info.shape), min(spec.info.shape)
    if role.kind == "tokens":
        sample = min(DEFAULT_SAMPLE, rows // 2)
        gram = 2 * width * width * 8 if width <= GRAM_MAX_DIM else 0
        return sample * width * 24 + 4 * sample * sample * 4 + gram
    return 3 * HEAD_GROUP_BYTES + role.heads * role.head_dim * role.head_dim * 8


def combine_measures(plan: MeasurePlan, parts: dict[str, MeasurePart]) -> ModelMeasures:
    """The model's measures from its tensors' parts (a tensor without one: "not read")."""
    attention, attention_notes = _attention(plan, parts)
    clouds, cloud_notes = _clouds(plan, parts)
    return ModelMeasures(attention, clouds, plan.notes + attention_notes + cloud_notes)


def _attention(plan: MeasurePlan, parts: dict[str, MeasurePart]) -> tuple[AttentionBounds, list[str]]:
    if plan.unavailable is not None:
        return AttentionBounds("unavailable", plan.unavailable, source=plan.heads.source), []
    notes: list[str] = []
    bounds: list[LogitBound] = []
    without_gain: list[LayerSpec] = []
    split = None
    for block in plan.blocks:
        q, k = (parts.get(spec.name, NotMeasured("not read")) for spec in (block.q, block.k))
        if not isinstance(q, HeadFactors) or not isinstance(k, HeadFactors):
            reason = next(part.reason for part in (q, k) if isinstance(part, NotMeasured))
            notes.append(f"block {block.q.block}: no logit bound ({reason})")
            continue
        try:
            per_head, rotation = bounds_from_factors(q.factors, k.factors, *block.split)
        except _MEASURE_ERRORS as exc:
            notes.append(f"block {block.q.block}: no logit bound ({_first_line(exc)})")
            continue
        bounds.append(bound_of(block.q.block, block.q.name, block.k.name, per_head, rotation, block.gain))
        split = block.split
        if block.gain is None:
            without_gain.append(block.q)
    if without_gain:
        notes.append(_missing_gain_note([spec.block for spec in without_gain], without_gain[0].name))
    if not bounds or split is None:
        reason = "no block's q/k split into the stated heads"
        return AttentionBounds("unavailable", reason, source=plan.heads.source), notes
    every = np.concatenate([np.asarray(b.heads) for b in bounds])
    return (
        AttentionBounds("ok", None, *split, plan.heads.source, float(every.max()), float(np.median(every)), bounds),
        notes,
    )


def _clouds(plan: MeasurePlan, parts: dict[str, MeasurePart]) -> tuple[list[RowCloud], list[str]]:
    """Row clouds of the token embedding and of an untied lm_head: an lm_head whose values
    are the embedding's (same shape and digest) is measured once."""
    clouds: list[RowCloud] = []
    notes: list[str] = []
    first: tuple[tuple[int, ...], bytes] | None = None
    for spec in plan.tokens:
        part = parts.get(spec.name, NotMeasured("not read"))
        if isinstance(part, NotMeasured):
            notes.append(f"{spec.name}: no row cloud ({part.reason})")
            continue
        assert isinstance(part, TokenCloud)
        if first is not None and spec.kind == "lm_head" and first == (tuple(spec.info.shape), part.digest):
            notes.append(f"{spec.name} is tied to the embedding (same values): measured once")
            continue
        clouds.append(part.cloud)
        first = first or (tuple(spec.info.shape), part.digest)
    if not clouds and not notes:
        notes.append("no token embedding or lm_head found")
    return clouds, notes


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
