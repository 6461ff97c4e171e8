"""Model-level measures, taken from the tensors as the layer stream has them in hand.

The per-layer ESD stream sees one matrix at a time; two measures need more:

- the attention-logit bound of a block needs its q and k projections (and the gain of the
  norm before them) together. Each projection gives its per-head R factors (heads·d_h²
  values, 3 % of a 4096-wide projection's) as it streams past, and a block's bound is
  computed from the two sets of factors: no projection is held or read again;
- the row cloud of the token embedding (and of an untied ``lm_head``) needs the whole
  matrix's rows: taken while the stream has the matrix, with the Gram matrix its
  spectrum computes (`MeasurePlan`), so a vocabulary-sized matrix is read and
  multiplied once (on MiniLM the separate pass cost 28 % of the whole analysis).

Head counts are never guessed: they come from flags (``--heads``, ``--kv-heads``) or from
``config.json`` beside the checkpoint (Hugging Face names: ``num_attention_heads``,
``num_key_value_heads``, ``head_dim``; GPT-2's ``n_head``; without ``head_dim`` a head
is q's rows / heads); without them the bounds are "unavailable" and the report says why. A measure that fails
on one block or matrix becomes a note; it never costs the report.

`distance_from_init` is the training-run measure ‖W − W₀‖_F/‖W₀‖_F per layer, streamed
one pair of tensors at a time.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from weightscope.checkpoint.base import CheckpointReader, TensorInfo
from weightscope.checkpoint.heads import HeadLayout, read_head_layout
from weightscope.checkpoint.layers import LayerSpec, select_layers
from weightscope.errors import WeightscopeError
from weightscope.linalg._blas import blas_threads
from weightscope.options import AnalysisOptions
from weightscope.report import AttentionBounds, ModelMeasures
from weightscope.stats.attention import (
    LogitBound,
    bound_of,
    bounds_from_factors,
    check_head_split,
    head_factors,
)
from weightscope.stats.embedding import RowCloud, row_cloud

#: What one bad tensor may raise; it becomes a note (as a failed layer does in the stream).
_MEASURE_ERRORS = (WeightscopeError, ValueError, ArithmeticError, MemoryError)

#: Names of the norm right before self-attention in pre-norm blocks (Llama/Mistral/Qwen,
#: GPT-2/GPT-J/NeoX, Meta's Llama, OPT/BART, ViT-style), searched inside the q's block.
_PRE_NORMS = ("input_layernorm", "ln_1", "attention_norm", "self_attn_layer_norm", "norm1", "layernorm_before")
_BLOCK_PREFIX = re.compile(r"^(.*?(?:^|\.)(?:layers|layer|h|block|blocks)\.)(\d+)\.")


def norm_gain_name(q_name: str, names: set[str]) -> str | None:
    """The gain of the norm layer whose output feeds this q projection, if identifiable.

    Pre-norm blocks: the block's own ``input_layernorm``/``ln_1``/… . BERT-style post-norm
    blocks (``attention.self.query``): the previous block's last ``output.LayerNorm``, or
    ``embeddings.LayerNorm`` before block 0.
    """
    match = _BLOCK_PREFIX.match(q_name)
    if match is None:
        return None
    prefix, block = match.group(1), int(match.group(2))
    for norm in _PRE_NORMS:
        candidate = f"{prefix}{block}.{norm}.weight"
        if candidate in names:
            return candidate
    if ".attention.self." in q_name:
        if block > 0:
            candidate = f"{prefix}{block - 1}.output.LayerNorm.weight"
        else:
            root = prefix.rsplit("encoder.", 1)[0] if "encoder." in prefix else ""
            candidate = f"{root}embeddings.LayerNorm.weight"
        return candidate if candidate in names else None
    return None


def _qk_pairs(specs: list[LayerSpec]) -> tuple[list[tuple[LayerSpec, LayerSpec]], list[str]]:
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
        else:
            notes.append(f"block {block}: no single q/k pair ({len(found.get('q', []))} q, {len(found.get('k', []))} k)")
    return pairs, notes


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@dataclass(frozen=True)
class TensorMeasure:
    """What one tensor gives the model-level measures, taken while it is in hand: a q or k
    projection's per-head R factors (`weightscope.stats.attention.head_factors`), or a
    token matrix's row cloud; ``error`` says why not."""

    name: str
    factors: np.ndarray | None = None
    cloud: RowCloud | None = None
    error: str | None = None


@dataclass(frozen=True)
class MeasurePlan:
    """Which tensors the model-level measures need and what each needs of them, decided
    from the headers (and the norm gains, 1-D and read here) before the layers stream.

    The stream hands each needed tensor to `measure_tensor` while it has it decoded (and
    a token matrix's Gram matrix, which its spectrum computes anyway), so no weight
    matrix is read or multiplied a second time; `finish` reads only what the stream did
    not see (a tensor outside the analysed selection) and combines.
    """

    heads: HeadLayout
    pairs: list[tuple[LayerSpec, LayerSpec]]
    notes: list[str]
    #: per q/k name: (its block's (heads, kv heads, head size) or why none, the gain's name, the gain)
    projections: dict[str, tuple[tuple[int, int, int] | str, str | None, np.ndarray | None]]
    queries: frozenset[str]
    tokens: list[LayerSpec]
    seed: int

    def wants(self, name: str) -> bool:
        return name in self.projections or any(spec.name == name for spec in self.tokens)


def plan_measures(reader: CheckpointReader, options: AnalysisOptions) -> MeasurePlan:
    """The `MeasurePlan` of an open checkpoint."""
    specs = select_layers(reader.tensors(), include=options.include, exclude=options.exclude, min_evals=1).layers
    heads = read_head_layout(reader, options.heads, options.kv_heads)
    pairs, notes = _qk_pairs(specs)
    projections: dict[str, tuple[tuple[int, int, int] | str, str | None, np.ndarray | None]] = {}
    if pairs and heads.heads is not None:
        infos = {info.name: info for info in reader.tensors()}
        gains = {name for name, info in infos.items() if len(info.shape) == 1 and info.is_float}
        for q_spec, k_spec in pairs:
            split: tuple[int, int, int] | str
            gain_name = norm_gain_name(q_spec.name, gains)
            gain = None
            try:
                split = heads.split_block(q_spec.info.shape[0], k_spec.info.shape[0])
                check_head_split(*split)
                gain = reader.read(infos[gain_name]) if gain_name is not None else None
                if gain is not None and (gain.shape != (q_spec.info.shape[1],) or not np.isfinite(gain).all()):
                    gain, gain_name = None, None
            except _MEASURE_ERRORS as exc:
                split = _first_line(exc)
            projections[q_spec.name] = projections[k_spec.name] = (split, gain_name, gain)
    queries = frozenset(q.name for q, _ in pairs)
    return MeasurePlan(heads, pairs, notes, projections, queries, _token_matrices(specs), options.seed)


def measure_tensor(plan: MeasurePlan, name: str, array: np.ndarray, gram: np.ndarray | None = None) -> TensorMeasure:
    """What tensor ``name`` (decoded, finite) gives the measures; ``gram`` is X = WᵀW/N of
    a token matrix when the caller has it."""
    try:
        with blas_threads(1):  # small products: threads only contend (and round differently)
            if name in plan.projections:
                split, _, gain = plan.projections[name]
                if isinstance(split, str):
                    raise WeightscopeError(split)
                heads, kv_heads, head_dim = split
                count = heads if name in plan.queries else kv_heads
                return TensorMeasure(name, factors=head_factors(array, count, head_dim, gain))
            return TensorMeasure(name, cloud=row_cloud(name, array, seed=plan.seed, gram=gram))
    except _MEASURE_ERRORS as exc:
        return TensorMeasure(name, error=_first_line(exc))


def _read_measure(plan: MeasurePlan, reader: CheckpointReader, spec: LayerSpec) -> TensorMeasure:
    try:
        array = reader.read(spec.info)
        if not np.isfinite(array).all():
            raise WeightscopeError("non-finite weights")
    except _MEASURE_ERRORS as exc:
        return TensorMeasure(spec.name, error=_first_line(exc))
    return measure_tensor(plan, spec.name, array)


def finish(plan: MeasurePlan, seen: dict[str, TensorMeasure], reader: CheckpointReader) -> ModelMeasures:
    """The `ModelMeasures` from what the stream measured (``seen``, by tensor name),
    reading only the needed tensors it did not see, one at a time."""
    got = dict(seen)

    def measured(spec: LayerSpec) -> TensorMeasure:
        if spec.name not in got:
            got[spec.name] = _read_measure(plan, reader, spec)
        return got[spec.name]

    attention, attention_notes = _attention(plan, measured)
    clouds, cloud_notes = _clouds(plan, measured)
    return ModelMeasures(attention, clouds, attention_notes + cloud_notes)


def _attention(plan: MeasurePlan, measured: Callable[[LayerSpec], TensorMeasure]) -> tuple[AttentionBounds, list[str]]:
    """Every block's logit bound from its q and k factors."""
    heads, notes = plan.heads, list(plan.notes)
    if not plan.pairs:
        return AttentionBounds("unavailable", "no separate q and k projections found"), notes
    if heads.heads is None:
        reason = "number of attention heads unknown: neither a config.json beside the checkpoint nor GGUF metadata states it; pass --heads (and --kv-heads for GQA)"
        return AttentionBounds("unavailable", reason, source=heads.source), notes
    bounds: list[LogitBound] = []
    split = None
    for q_spec, k_spec in plan.pairs:
        block_split, gain_name, _ = plan.projections[q_spec.name]
        q, k = measured(q_spec), measured(k_spec)
        try:
            if isinstance(block_split, str):
                raise WeightscopeError(block_split)
            if q.factors is None or k.factors is None:
                raise WeightscopeError(q.error or k.error or "no factors")
            with blas_threads(1):
                per_head, rotation = bounds_from_factors(q.factors, k.factors, *block_split)
            bounds.append(bound_of(q_spec.block, q_spec.name, k_spec.name, per_head, rotation, gain_name))
            split = block_split
        except _MEASURE_ERRORS as exc:
            notes.append(f"block {q_spec.block}: no logit bound ({_first_line(exc)})")
    if not bounds or split is None:
        return AttentionBounds("unavailable", "no block's q/k split into the stated heads", source=heads.source), notes
    every = np.concatenate([np.asarray(b.heads) for b in bounds])
    return (
        AttentionBounds(
            "ok", None, *split, heads.source,
            float(every.max()), float(np.median(every)), bounds,
        ),
        notes,
    )


def _token_matrices(specs: list[LayerSpec]) -> list[LayerSpec]:
    """The token embedding (the embedding with the most rows) and an lm_head, if any."""
    chosen = []
    embeddings = [s for s in specs if s.kind == "embedding" and len(s.info.shape) == 2]
    if embeddings:
        chosen.append(max(embeddings, key=lambda s: max(s.info.shape)))
    chosen.extend(s for s in specs if s.kind == "lm_head" and len(s.info.shape) == 2)
    return chosen


def _same_rows(a: RowCloud, b: RowCloud) -> bool:
    """Whether two row clouds come from the same values: every statistic equal to the
    last bit (each is a deterministic function of the rows; two different matrices
    agreeing in all of them, in float64, does not happen by chance)."""
    return dataclasses.replace(a, name="") == dataclasses.replace(b, name="")


def _clouds(plan: MeasurePlan, measured: Callable[[LayerSpec], TensorMeasure]) -> tuple[list[RowCloud], list[str]]:
    """Row clouds of the token embedding and of an untied lm_head."""
    clouds: list[RowCloud] = []
    notes: list[str] = []
    for spec in plan.tokens:
        result = measured(spec)
        if result.cloud is None:
            notes.append(f"{spec.name}: no row cloud ({result.error})")
        elif clouds and spec.kind == "lm_head" and _same_rows(clouds[0], result.cloud):
            notes.append(f"{spec.name} is tied to the embedding (same values): measured once")
        else:
            clouds.append(result.cloud)
    if not clouds and not notes:
        notes.append("no token embedding or lm_head found")
    return clouds, notes


def measure_model(reader: CheckpointReader, options: AnalysisOptions) -> ModelMeasures:
    """Attention-logit bounds and embedding row clouds of an open checkpoint, reading each
    tensor they need once (for a caller without a stream: a Ray measures task)."""
    return finish(plan_measures(reader, options), {}, reader)


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
