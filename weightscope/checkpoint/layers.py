"""Which stored tensors are weight matrices, what kind of layer each is, and its matrices.

Selection works on metadata alone (names, shapes, dtypes), so filters and skips cost no
I/O. Kinds and block indices are parsed from the naming schemes of common model families
(BERT, GPT-2, Llama/Mistral/Qwen, T5, Falcon, Mixtral, and GGUF's ``blk.N.attn_q``); an unknown name is kind "other"
and block None, and is analysed all the same.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from weightscope.checkpoint.base import TensorInfo
from weightscope.checkpoint.heads import HeadLayout
from weightscope.checkpoint.lora import LoraModule
from weightscope.patterns import Pattern, compile_pattern

#: Layer kinds, in display order.
KINDS = ("embedding", "q", "k", "v", "o", "qkv", "gate", "up", "gate_up", "down", "lm_head", "conv", "other")

# Ordered: the first pattern that matches a (lower-cased) name decides its kind.
_KIND_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("lm_head", r"(^|\.)(lm_head|embed_out)\.|^output\.weight$"),
        ("embedding", r"embed|token_embd|(^|\.)(wte|wpe|shared)\.|embeddings?\."),
        ("qkv", r"(qkv|c_attn|query_key_value|wqkv)"),
        ("gate_up", r"gate_up_proj|ffn_gate_up"),
        ("q", r"(q_proj|\.attn_q\.|\.query\.|\.q\.|\.wq\.|attention\.q_lin)"),
        ("k", r"(k_proj|\.attn_k\.|\.key\.|\.k\.|\.wk\.|attention\.k_lin)"),
        ("v", r"(v_proj|\.attn_v\.|\.value\.|\.v\.|\.wv\.|attention\.v_lin)"),
        (
            "o",
            r"(o_proj|\.attn_output\.|out_proj|attention\.output\.dense|attn\.c_proj|selfattention\.o\.|"
            r"encdecattention\.o\.|\.attention\.wo\.|attention\.out_lin|self_attention\.dense)",
        ),
        ("gate", r"(gate_proj|\.ffn_gate\.|\.wi_0\.|\.w1\.|\.fc1_gate)"),
        (
            "up",
            r"(up_proj|\.ffn_up\.|intermediate\.dense|mlp\.c_fc|\.wi_1\.|\.wi\.|\.w3\.|dense_h_to_4h|\.fc1\.|ffn\.lin1)",
        ),
        ("down", r"(down_proj|\.ffn_down\.|\.output\.dense|mlp\.c_proj|\.wo\.|\.w2\.|dense_4h_to_h|\.fc2\.|ffn\.lin2)"),
    )
)
_BLOCK_PATTERN = re.compile(r"(?:^|\.)(?:layers|layer|h|block|blocks|transformer_blocks|blk)\.(\d+)(?:\.|$)")


@dataclass(frozen=True)
class SkippedTensor:
    """A tensor that was not analysed, and why (shown by `inspect` and in the JSON)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    reason: str


@dataclass(frozen=True)
class FusedPart:
    """Where one part (q, k, v, gate or up) lies in a fused tensor ``source``.

    Along ``axis`` the tensor is ``groups`` repeats of consecutive blocks of ``sizes``
    rows (``groups`` = 1: one block each, as in ``qkv_proj``; ``groups`` = heads: GPT-NeoX's
    ``query_key_value``, interleaved per head); the part is block ``index`` of every repeat.
    """

    source: TensorInfo
    axis: int
    groups: int
    sizes: tuple[int, ...]
    index: int

    def cut(self, array: np.ndarray) -> np.ndarray:
        moved = np.moveaxis(array, self.axis, 0)
        repeats = moved.reshape(self.groups, sum(self.sizes), *moved.shape[1:])
        start = sum(self.sizes[: self.index])
        part = repeats[:, start : start + self.sizes[self.index]].reshape(-1, *moved.shape[1:])
        return np.ascontiguousarray(np.moveaxis(part, 0, self.axis))


@dataclass(frozen=True)
class LayerSpec:
    """A tensor chosen for analysis, with its parsed identity.

    For a LoRA update, ``lora`` holds the factors to read and ``info`` describes ΔW
    (the name and shape of the weight it updates; it is never stored as such). For a part
    of a fused tensor, ``part`` says where it lies and ``info`` describes the part
    (``name[q]``, its own shape).
    """

    info: TensorInfo
    kind: str
    block: int | None
    lora: LoraModule | None = None
    part: FusedPart | None = None

    @property
    def name(self) -> str:
        return self.info.name


@dataclass(frozen=True)
class Selection:
    """The outcome of layer selection: what will be analysed and what will not, and why."""

    layers: list[LayerSpec]
    skipped: list[SkippedTensor]


def layer_kind(name: str, ndim: int) -> str:
    """Kind of a weight tensor from its name (and rank: 3-D/4-D/5-D kernels are conv)."""
    if ndim > 2:
        return "conv"
    lowered = name.lower()
    for kind, pattern in _KIND_PATTERNS:
        if pattern.search(lowered):
            return kind
    return "other"


def block_index(name: str) -> int | None:
    """Index of the transformer block a tensor belongs to, if its name says."""
    match = _BLOCK_PATTERN.search(name.lower())
    return int(match.group(1)) if match else None


def compile_patterns(patterns: tuple[str, ...] | list[str], flag: str) -> list[Pattern]:
    """Compile user regexes (on RE2: `weightscope.patterns`); a bad one is a one-line usage error."""
    return [compile_pattern(pattern, flag) for pattern in patterns]


def skip_reason(info: TensorInfo, min_evals: int) -> str | None:
    """Why a tensor is not analysed, or None if it is a weight matrix worth a spectrum."""
    if not info.is_float:
        return f"non-float dtype {info.dtype}"
    ndim = len(info.shape)
    if ndim < 2:
        return "1-D tensor (bias or norm)" if ndim == 1 else "scalar"
    if ndim > 5:
        return f"{ndim}-D tensor is not a matrix or conv kernel"
    if info.numel == 0:
        return "empty tensor"
    smaller = min(info.shape[:2])  # a conv kernel is analysed as (out, in) slices
    if smaller < min_evals:
        return f"smaller side {smaller} < min_evals {min_evals}"
    return None


def select_layers(
    tensors: list[TensorInfo],
    *,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    min_evals: int = 50,
) -> Selection:
    """Split tensors into layers to analyse and skipped tensors, from metadata only."""
    includes = compile_patterns(include, "--include")
    excludes = compile_patterns(exclude, "--exclude")
    layers: list[LayerSpec] = []
    skipped: list[SkippedTensor] = []
    for info in tensors:
        if includes and not any(p.search(info.name) for p in includes):
            reason: str | None = "not matched by --include"
        elif any(p.search(info.name) for p in excludes):
            reason = "matched by --exclude"
        else:
            reason = skip_reason(info, min_evals)
        if reason is None:
            layers.append(LayerSpec(info, layer_kind(info.name, len(info.shape)), block_index(info.name)))
        else:
            skipped.append(SkippedTensor(info.name, tuple(info.shape), info.dtype, reason))
    return Selection(layers, skipped)


def fused_parts(spec: LayerSpec, layout: HeadLayout) -> list[tuple[str, FusedPart]] | None:
    """How a fused layer splits: [(kind, part), …], or None when it is not fused or its
    layout cannot be known (then it is analysed whole, as "qkv"/"gate_up").

    - ``gate_up_proj``/``ffn_gate_up``: rows [gate; up], halves.
    - GPT-2's ``c_attn`` (Conv1D, stored (in, 3·out)): columns [q | k | v], thirds.
    - ``query_key_value``: GPT-NeoX/Bloom interleave q, k, v per head (needs the head
      count); Falcon's grouped layout is not split.
    - any other qkv (``qkv_proj``, ``Wqkv``, ``attn_qkv``): rows [q; k; v], with k and v of
      kv_heads/heads the size of q under grouped-query attention; thirds when the
      counts are unknown.
    """
    info = spec.info
    if len(info.shape) != 2 or spec.lora is not None or spec.part is not None:
        return None
    rows, cols = info.shape
    name = info.name.lower()
    if spec.kind == "gate_up":
        return _blocks(info, 0, 1, (rows // 2, rows // 2), ("gate", "up")) if rows % 2 == 0 else None
    if spec.kind != "qkv":
        return None
    if "c_attn" in name:
        return _blocks(info, 1, 1, (cols // 3,) * 3, ("q", "k", "v")) if cols % 3 == 0 else None
    heads, kv = layout.heads, layout.kv_heads or layout.heads
    if "query_key_value" in name:
        if layout.model_type == "falcon" or not heads or rows % (3 * heads):
            return None
        return _blocks(info, 0, heads, (rows // (3 * heads),) * 3, ("q", "k", "v"))
    if heads and kv and rows % (heads + 2 * kv) == 0:
        d = rows // (heads + 2 * kv)
        return _blocks(info, 0, 1, (heads * d, kv * d, kv * d), ("q", "k", "v"))
    if heads is None and rows % 3 == 0:
        return _blocks(info, 0, 1, (rows // 3,) * 3, ("q", "k", "v"))
    return None


def _blocks(
    info: TensorInfo, axis: int, groups: int, sizes: tuple[int, ...], kinds: tuple[str, ...]
) -> list[tuple[str, FusedPart]]:
    return [(kind, FusedPart(info, axis, groups, sizes, index)) for index, kind in enumerate(kinds)]


def split_fused(selection: Selection, layout: HeadLayout, min_evals: int) -> Selection:
    """The selection with each fused tensor replaced by its parts (`fused_parts`), each
    its own layer named ``<tensor>[q]``; a part too small to analyse is skipped."""
    layers: list[LayerSpec] = []
    skipped = list(selection.skipped)
    for spec in selection.layers:
        parts = fused_parts(spec, layout)
        if parts is None:
            layers.append(spec)
            continue
        for kind, part in parts:
            shape = list(spec.info.shape)
            shape[part.axis] = part.groups * part.sizes[part.index]
            share = shape[part.axis] / spec.info.shape[part.axis]
            info = TensorInfo(
                f"{spec.name}[{kind}]", tuple(shape), spec.info.dtype, spec.info.file, int(spec.info.nbytes * share)
            )
            reason = skip_reason(info, min_evals)
            if reason is None:
                layers.append(LayerSpec(info, kind, spec.block, part=part))
            else:
                skipped.append(SkippedTensor(info.name, info.shape, info.dtype, reason))
    return Selection(layers, skipped)


def lora_layers(
    modules: list[LoraModule], include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()
) -> list[LayerSpec]:
    """A LayerSpec per adapted module that the name filters keep (no size filter: ΔW is
    read from its factors, whatever its rank)."""
    includes = compile_patterns(include, "--include")
    excludes = compile_patterns(exclude, "--exclude")
    specs = []
    for module in modules:
        if (includes and not any(p.search(module.name) for p in includes)) or any(
            p.search(module.name) for p in excludes
        ):
            continue
        info = TensorInfo(module.name, module.shape, module.a.dtype, module.a.file, module.a.nbytes + module.b.nbytes)
        specs.append(LayerSpec(info, layer_kind(module.name, 2), block_index(module.name), module))
    return specs


def layer_matrices(array: np.ndarray) -> list[np.ndarray]:
    """The 2-D matrices of a layer: the matrix itself, or one slice per conv kernel position."""
    if array.ndim == 2:
        return [array]
    out_channels, in_channels = array.shape[:2]
    positions = math.prod(array.shape[2:])
    kernel = array.reshape(out_channels, in_channels, positions)
    return [kernel[:, :, p] for p in range(positions)]
