"""The ``config.json`` beside a checkpoint: only what reading the weights needs from it.

Fused attention tensors (``qkv_proj``, ``query_key_value``, …) can only be cut into q, k
and v, and the attention-logit bound split into heads, with the head counts, and with grouped-query attention the k and v blocks are
smaller than q's. Transformers models spell the counts in several ways; this reads
them all and nothing else (the file is never executed, and is refused above 1 MB).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_MAX_CONFIG_BYTES = 1024 * 1024
_HEADS = ("num_attention_heads", "n_head", "num_heads", "n_heads")
_KV_HEADS = ("num_key_value_heads", "n_head_kv", "num_kv_heads", "multi_query_group_num")


def _first_int(config: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def head_counts(config: dict[str, Any]) -> dict[str, Any]:
    """``model_type``, ``head_count``, ``head_count_kv`` (GGUF's names) and ``head_dim``
    from a config dict; absent keys are left out. Falcon's ``multi_query`` means one KV head."""
    if isinstance(config.get("text_config"), dict):  # multimodal wrappers nest the LM's config
        config = {**config["text_config"], "model_type": config.get("model_type")}
    found: dict[str, Any] = {}
    if isinstance(config.get("model_type"), str):
        found["model_type"] = config["model_type"]
    heads = _first_int(config, _HEADS)
    if heads is not None:
        found["head_count"] = heads
        kv = _first_int(config, _KV_HEADS)
        if kv is None and config.get("multi_query") is True:
            kv = 1
        found["head_count_kv"] = kv or heads
    head_dim = _first_int(config, ("head_dim",))
    if head_dim is not None:
        found["head_dim"] = head_dim
    return found


def read_model_config(path: Path) -> dict[str, Any]:
    """`head_counts` of the ``config.json`` in ``path`` (a directory) or beside it (a file);
    empty when there is none or it is unreadable (the counts are then unknown, not an error)."""
    config_path = (path if path.is_dir() else path.parent) / "config.json"
    try:
        if not config_path.is_file() or config_path.stat().st_size > _MAX_CONFIG_BYTES:
            return {}
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return head_counts(config) if isinstance(config, dict) else {}
