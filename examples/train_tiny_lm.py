"""Train a tiny Llama-style byte-level language model and save checkpoints along the way.

Why this exists: weightscope needs a *real* training trajectory to analyse — an untrained
initialisation, half-trained states and a trained end point — that anyone can regenerate
offline in a few minutes on a CPU. The corpus is the Python standard library's own source
(every machine with Python has it), the model is pure torch, and tensor names follow the
Hugging Face Llama convention so weightscope's layer-kind parser sees familiar names.

Determinism: everything is seeded and ``torch.use_deterministic_algorithms`` is on, so a
re-run on the same machine, Python and torch gives the same numbers. Bitwise equality across
machines is *not* promised: CPU kernels (BLAS, SIMD width) differ, and the corpus is the
stdlib of whichever Python runs the script, which differs between Python versions. The
log records the corpus hash so two runs can be told apart.

Usage:  python examples/train_tiny_lm.py --out examples/runs/tiny-lm
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import os
import sysconfig
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

VOCAB_SIZE = 256  # bytes


@dataclass(frozen=True)
class ModelConfig:
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_hidden: int = 256
    seq_len: int = 128
    vocab_size: int = VOCAB_SIZE
    init_std: float = 0.02  # Hugging Face ``initializer_range`` for Llama


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_windows: int = 128  # fixed windows per split for train/val loss at a checkpoint
    seed: int = 0
    checkpoint_steps: tuple[int, ...] = (0, 25, 75, 200, 500, 1000, 1500)


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Corpus:
    train: torch.Tensor  # uint8 bytes, as int64 token ids
    val: torch.Tensor
    n_files: int
    sha256: str


def load_stdlib_corpus(val_every: int = 10) -> Corpus:
    """Top-level ``*.py`` files of the running Python's stdlib, sorted by name.

    Every ``val_every``-th file goes to the validation split, so validation measures
    generalisation to unseen modules rather than to unseen lines of seen modules.
    """
    stdlib = sysconfig.get_paths()["stdlib"]
    files = sorted(glob.glob(os.path.join(stdlib, "*.py")))
    if len(files) < val_every:
        raise SystemExit(f"too few stdlib source files under {stdlib} ({len(files)})")
    train_parts, val_parts = [], []
    digest = hashlib.sha256()
    for index, path in enumerate(files):
        with open(path, "rb") as handle:
            data = handle.read()
        digest.update(data)
        (val_parts if index % val_every == val_every - 1 else train_parts).append(data)

    def to_ids(parts: list[bytes]) -> torch.Tensor:
        return torch.frombuffer(bytearray(b"".join(parts)), dtype=torch.uint8).long()

    return Corpus(to_ids(train_parts), to_ids(val_parts), len(files), digest.hexdigest())


def ngram_baselines(train: torch.Tensor, val: torch.Tensor) -> dict[str, float]:
    """Validation cross-entropy (nats/byte) of add-one-smoothed unigram and bigram models.

    A trained model must beat these by a wide margin; they calibrate what "trained" means.
    """
    unigram = torch.bincount(train, minlength=VOCAB_SIZE).double() + 1.0
    unigram_nll = -torch.log(unigram / unigram.sum())[val].mean()
    pairs = train[:-1] * VOCAB_SIZE + train[1:]
    bigram = torch.bincount(pairs, minlength=VOCAB_SIZE**2).double().view(VOCAB_SIZE, -1) + 1.0
    bigram_logp = torch.log(bigram / bigram.sum(dim=1, keepdim=True))
    bigram_nll = -bigram_logp[val[:-1], val[1:]].mean()
    return {"unigram_val_loss": float(unigram_nll), "bigram_val_loss": float(bigram_nll)}


def random_batch(data: torch.Tensor, batch: int, seq_len: int, gen: torch.Generator):
    starts = torch.randint(0, len(data) - seq_len - 1, (batch,), generator=gen)
    windows = torch.stack([data[s : s + seq_len + 1] for s in starts.tolist()])
    return windows[:, :-1], windows[:, 1:]


def fixed_windows(data: torch.Tensor, count: int, seq_len: int):
    """Evenly spaced windows: the same evaluation set at every checkpoint."""
    starts = torch.linspace(0, len(data) - seq_len - 2, count).long()
    windows = torch.stack([data[s : s + seq_len + 1] for s in starts.tolist()])
    return windows[:, :-1], windows[:, 1:]


# ----------------------------------------------------------------------------- model


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotary_tables(seq_len: int, head_dim: int, base: float = 10000.0):
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.outer(torch.arange(seq_len).float(), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.q_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.o_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x, cos, sin):
        b, t, d = x.shape

        def heads(proj: nn.Linear) -> torch.Tensor:
            return proj(x).view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)

        q = apply_rotary(heads(self.q_proj), cos[:t], sin[:t])
        k = apply_rotary(heads(self.k_proj), cos[:t], sin[:t])
        out = F.scaled_dot_product_attention(q, k, heads(self.v_proj), is_causal=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, d))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.down_proj = nn.Linear(cfg.mlp_hidden, cfg.d_model, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    """Named ``model`` in the parent so state-dict keys read ``model.layers.{i}...``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model)


class TinyLlama(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)  # untied
        cos, sin = rotary_tables(cfg.seq_len, cfg.d_model // cfg.n_heads)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=cfg.init_std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, self.rope_cos, self.rope_sin)
        return self.lm_head(self.model.norm(x))


def loss_on(model: TinyLlama, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(inputs)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def mean_loss(model: TinyLlama, windows, chunk: int = 32) -> float:
    model.eval()
    inputs, targets = windows
    total = sum(
        float(loss_on(model, inputs[i : i + chunk], targets[i : i + chunk])) * len(inputs[i : i + chunk])
        for i in range(0, len(inputs), chunk)
    )
    model.train()
    return total / len(inputs)


# ----------------------------------------------------------------------------- training


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def make_optimizer(model: TinyLlama, cfg: TrainConfig) -> torch.optim.AdamW:
    """Weight decay on matrices only, as in common LLM recipes (not on norm gains)."""
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    gains = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": matrices, "weight_decay": cfg.weight_decay},
        {"params": gains, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def save_checkpoint(model: TinyLlama, cfg: ModelConfig, out_dir: str, step: int, losses: dict[str, float]) -> str:
    """``<out>/step-<n>/model.safetensors`` in bf16, the losses in the header metadata."""
    step_dir = os.path.join(out_dir, f"step-{step}")
    os.makedirs(step_dir, exist_ok=True)
    path = os.path.join(step_dir, "model.safetensors")
    tensors = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    metadata = {"step": str(step), **{k: f"{v:.6f}" for k, v in losses.items()}}
    save_file(tensors, path, metadata=metadata)
    with open(os.path.join(step_dir, "config.json"), "w") as handle:  # heads for the logit bound
        json.dump(hf_config(cfg), handle, indent=2)
    return path


def hf_config(cfg: ModelConfig) -> dict:
    """The Hugging Face ``config.json`` fields that describe this model's shape.

    weightscope reads the head layout from it (the attention-logit bound splits q and k
    into heads), and so would any tool that knows Llama configs.
    """
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.d_model,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_heads,
        "num_hidden_layers": cfg.n_layers,
        "intermediate_size": cfg.mlp_hidden,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.seq_len,
        "tie_word_embeddings": False,
    }


def train(model_cfg: ModelConfig, train_cfg: TrainConfig, out_dir: str) -> dict:
    torch.manual_seed(train_cfg.seed)
    torch.use_deterministic_algorithms(True)
    corpus = load_stdlib_corpus()
    baselines = ngram_baselines(corpus.train, corpus.val)
    print(
        f"corpus: {corpus.n_files} files, train {len(corpus.train):,} bytes, "
        f"val {len(corpus.val):,} bytes, sha256 {corpus.sha256[:16]}"
    )
    print(
        f"baselines (val nats/byte): unigram {baselines['unigram_val_loss']:.3f}, "
        f"bigram {baselines['bigram_val_loss']:.3f}"
    )

    model = TinyLlama(model_cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters, {asdict(model_cfg)}")
    optimizer = make_optimizer(model, train_cfg)
    gen = torch.Generator().manual_seed(train_cfg.seed)
    eval_sets = {
        "train_loss": fixed_windows(corpus.train, train_cfg.eval_windows, model_cfg.seq_len),
        "val_loss": fixed_windows(corpus.val, train_cfg.eval_windows, model_cfg.seq_len),
    }

    os.makedirs(out_dir, exist_ok=True)
    records = []
    start = time.perf_counter()
    for step in range(train_cfg.steps + 1):
        if step in train_cfg.checkpoint_steps:
            losses = {name: mean_loss(model, windows) for name, windows in eval_sets.items()}
            path = save_checkpoint(model, model_cfg, out_dir, step, losses)
            wall = time.perf_counter() - start
            records.append(
                {
                    "step": step,
                    **losses,
                    "wall_s": round(wall, 1),
                    "path": os.path.relpath(path, out_dir),
                }
            )
            print(
                f"step {step:5d}  train {losses['train_loss']:.3f}  val {losses['val_loss']:.3f}"
                f"  wall {wall:6.1f}s  -> {path}",
                flush=True,
            )
        if step == train_cfg.steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, train_cfg)
        inputs, targets = random_batch(corpus.train, train_cfg.batch_size, model_cfg.seq_len, gen)
        loss = loss_on(model, inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        optimizer.step()

    final_pt = os.path.join(out_dir, "final.pt")
    torch.save({k: v.detach().to(torch.bfloat16) for k, v in model.state_dict().items()}, final_pt)
    with open(os.path.join(out_dir, "config.json"), "w") as handle:
        json.dump(hf_config(model_cfg), handle, indent=2)
    log = {
        "model": asdict(model_cfg),
        "train": asdict(train_cfg),
        "n_params": n_params,
        "corpus": {
            "source": "top-level *.py files of the Python stdlib, sorted; every 10th file is validation",
            "n_files": corpus.n_files,
            "train_bytes": len(corpus.train),
            "val_bytes": len(corpus.val),
            "sha256": corpus.sha256,
        },
        "baselines": baselines,
        "checkpoint_dtype": "bfloat16",
        "versions": {"python": sysconfig.get_python_version(), "torch": torch.__version__},
        "checkpoints": records,
        "total_wall_s": round(time.perf_counter() - start, 1),
    }
    with open(os.path.join(out_dir, "train_log.json"), "w") as handle:
        json.dump(log, handle, indent=2)
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="examples/runs/tiny-lm", help="run directory to write")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    log = train(ModelConfig(), TrainConfig(), args.out)
    print(f"done in {log['total_wall_s']:.1f}s")


if __name__ == "__main__":
    main()
