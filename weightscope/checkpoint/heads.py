"""How attention splits into heads: the one head-layout type, read from flags and files.

Head counts are never guessed. They come from the flags (``--heads``, ``--kv-heads``),
else from what the checkpoint states: GGUF metadata, else the ``config.json`` beside it
(`weightscope.checkpoint.model_config`). Two uses read the same layout: cutting fused
q/k/v tensors into their parts (`weightscope.checkpoint.layers.fused_parts`) and the
per-head attention-logit bounds (`weightscope.analysis.model_measures`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from weightscope.checkpoint.base import CheckpointReader


@dataclass(frozen=True)
class HeadLayout:
    """Query heads, key/value heads and head size (any may be unknown: None), the model
    type (Falcon's fused layout is not split), and where the counts were read."""

    heads: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    model_type: str | None = None
    source: str | None = None

    def split_block(self, q_rows: int, k_rows: int) -> tuple[int, int, int]:
        """(heads, kv heads, head size) of one block whose q has ``q_rows`` rows and k
        ``k_rows``: a head is q's rows / heads unless its size is stated; kv heads are k's
        rows / head size unless stated. Needs ``heads``."""
        assert self.heads is not None
        head_dim = self.head_dim or q_rows // self.heads
        kv = self.kv_heads or (k_rows // head_dim if head_dim else self.heads)
        return self.heads, kv, head_dim


def read_head_layout(reader: CheckpointReader, heads: int | None, kv_heads: int | None) -> HeadLayout:
    """Flags win over what the checkpoint states (GGUF metadata, or the ``config.json``
    beside it: `reader.metadata`, `reader.model_config`); what none gives stays unknown.
    Counts come from one source: a head size or kv count stated for another head count
    than the flags' is not used."""
    stated: tuple[dict[str, Any], str | None] = next(
        (
            (found, where)
            for found, where in ((reader.metadata, "GGUF metadata"), (reader.model_config, "config.json"))
            if found.get("head_count")
        ),
        ({}, None),
    )
    known, where = stated
    model_type = next(
        (
            d[key]
            for key in ("model_type", "architecture")
            for d in (reader.metadata, reader.model_config)
            if d.get(key) is not None
        ),
        None,
    )
    model_type = model_type if isinstance(model_type, str) else None
    config = HeadLayout(known.get("head_count"), known.get("head_count_kv"), known.get("head_dim"), model_type, where)
    if heads is None:
        if kv_heads is None:
            return config
        return HeadLayout(config.heads, kv_heads, config.head_dim, model_type, f"{config.source} + --kv-heads")
    kv = kv_heads if kv_heads is not None else (config.kv_heads if config.heads == heads else None)
    return HeadLayout(heads, kv, config.head_dim if config.heads == heads else None, model_type, "flags")
