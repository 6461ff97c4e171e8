"""Training runs for the monitor tests: a tiny Llama-shaped model, trained for real by the
transformers and Lightning trainers, and runs of checkpoints written by the safetensors
library (also by a slow writer process: ``python -m tests.monitor_runs RUN_DIR …``).

"Planted" runs multiply one block's query weights by `GROWTH` at each save: its
attention-logit bound grows ×1.5 per save while the other blocks' stay put.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

GROWTH = 1.5
PLANTED_BLOCK = 1
BLOCKS = 4
HIDDEN, INTERMEDIATE, VOCAB, HEADS, KV_HEADS = 64, 128, 256, 4, 2

CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": HIDDEN,
    "intermediate_size": INTERMEDIATE,
    "num_hidden_layers": BLOCKS,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "vocab_size": VOCAB,
    "max_position_embeddings": 64,
}


def llama_config():
    from transformers import LlamaConfig

    return LlamaConfig(**{k: v for k, v in CONFIG.items() if k not in ("model_type", "architectures")})


def tiny_llama(seed: int = 0):
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config())


def token_batches(count: int, length: int = 16, seed: int = 0):
    import torch

    return torch.randint(0, VOCAB, (count, length), generator=torch.Generator().manual_seed(seed))


def plant(model, block: int = PLANTED_BLOCK, factor: float = GROWTH) -> None:
    """Multiply one block's query projection in place (the planted growth)."""
    import torch

    layers = model.model.layers if hasattr(model.model, "layers") else model.model.model.layers
    with torch.no_grad():
        layers[block].self_attn.q_proj.weight.mul_(factor)


# --- runs written without torch ------------------------------------------------------------


def llama_state(step: int, saves: int, *, planted: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """A Llama-shaped state dict after ``saves`` saves: Gaussian weights (std 0.02) drifting
    a little per step, and block 1's q ×`GROWTH` per save when ``planted``."""
    rng = np.random.default_rng(seed)
    drift = np.random.default_rng(seed + 1 + step)
    shapes = {
        "model.embed_tokens.weight": (VOCAB, HIDDEN),
        "model.norm.weight": (HIDDEN,),
        "lm_head.weight": (VOCAB, HIDDEN),
    }
    for b in range(BLOCKS):
        prefix = f"model.layers.{b}."
        shapes.update(
            {
                prefix + "self_attn.q_proj.weight": (HIDDEN, HIDDEN),
                prefix + "self_attn.k_proj.weight": (KV_HEADS * HIDDEN // HEADS, HIDDEN),
                prefix + "self_attn.v_proj.weight": (KV_HEADS * HIDDEN // HEADS, HIDDEN),
                prefix + "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
                prefix + "mlp.gate_proj.weight": (INTERMEDIATE, HIDDEN),
                prefix + "mlp.up_proj.weight": (INTERMEDIATE, HIDDEN),
                prefix + "mlp.down_proj.weight": (HIDDEN, INTERMEDIATE),
                prefix + "input_layernorm.weight": (HIDDEN,),
                prefix + "post_attention_layernorm.weight": (HIDDEN,),
            }
        )
    state = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            state[name] = np.ones(shape, dtype=np.float32)
            continue
        weight = rng.normal(0, 0.02, shape) * (1 + 0.002 * drift.standard_normal(shape))
        if planted and name == f"model.layers.{PLANTED_BLOCK}.self_attn.q_proj.weight":
            weight = weight * GROWTH**saves
        state[name] = weight.astype(np.float32)
    return state


def checkpoint_bytes(step: int, saves: int, *, planted: bool) -> bytes:
    from safetensors.numpy import save

    return save(llama_state(step, saves, planted=planted))


def write_run(run_dir: Path, steps: list[int], *, planted: bool) -> list[Path]:
    """A finished run: ``config.json`` and ``step-N.safetensors`` per step."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(CONFIG))
    paths = []
    for saves, step in enumerate(steps):
        path = run_dir / f"step-{step}.safetensors"
        path.write_bytes(checkpoint_bytes(step, saves, planted=planted))
        paths.append(path)
    return paths


def write_slowly(run_dir: Path, steps: list[int], chunks: int, pause: float, *, planted: bool) -> None:
    """Each checkpoint written in ``chunks`` pieces with ``pause`` seconds between them."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(CONFIG))
    for saves, step in enumerate(steps):
        data = checkpoint_bytes(step, saves, planted=planted)
        size = -(-len(data) // chunks)
        with open(run_dir / f"step-{step}.safetensors", "wb") as file:
            for start in range(0, len(data), size):
                file.write(data[start : start + size])
                file.flush()
                time.sleep(pause)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write a run's checkpoints slowly, in chunks.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", required=True)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.4)
    parser.add_argument("--planted", action="store_true")
    args = parser.parse_args()
    write_slowly(args.run_dir, args.steps, args.chunks, args.pause, planted=args.planted)
