"""Cheap measures of a model being trained, taken in memory every N optimiser steps.

They run on the training thread, so none solves the eigenproblem of a whole layer:

- the attention-logit bound of every head (`weightscope.stats.attention.head_bounds`:
  two thin QRs and one d_h × d_h SVD per head, from the block's q and k and the gain of
  the norm before them), max over heads per block;
- the spectral norm σmax of chosen matrices by power iteration on the weights' own
  device, warm-started from the previous call's vector (the scheme of
  ``torch.nn.utils.spectral_norm``): weights move little between calls, so a few
  matrix-vector products per call track σmax; the first call iterates longer;
- the anisotropy of the token embedding (mean cosine and first principal direction's
  share, `weightscope.stats.embedding`) on a fixed seeded sample of its rows.

Which tensors are q, k, gains, blocks and the embedding is decided once, from names, by
the same selection as a checkpoint's (`weightscope.layers.select_layers`); head counts
come from the model's config (also a sub-module's, as in a Lightning module wrapping a
transformers model) or are given. The logit bounds over the steps feed the same growth
test as a trend's (`weightscope.commands.trend.block_growth`): ``logit-growth`` can be
raised from the training thread, before any checkpoint is analysed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from weightscope.analysis.model_measures import norm_gain_name, qk_pairs, token_matrices
from weightscope.checkpoint.heads import read_head_layout
from weightscope.checkpoint.layers import select_layers
from weightscope.checkpoint.memory import MemoryReader
from weightscope.checkpoint.model_config import head_counts
from weightscope.commands.monitor import Alert, growth_alerts
from weightscope.commands.trend import GROWTH_WINDOW, block_growth
from weightscope.errors import WeightscopeError
from weightscope.linalg._blas import blas_threads
from weightscope.patterns import compile_pattern
from weightscope.stats.attention import check_head_split, head_bounds
from weightscope.stats.embedding import mean_cosine, pc1_share, row_moments

#: Matrix-vector product pairs per call of the spectral-norm power iteration, and on the
#: first call (from a random vector). On the tiny test model 4 warm-started pairs per call
#: keep σmax within 1e-3 of numpy's SVD after the first call's 30.
ITERATIONS = 4
FIRST_ITERATIONS = 30
#: Rows of the token embedding sampled for its anisotropy (a 1024 × d copy per call).
SAMPLE_ROWS = 1024

METRIC_PREFIX = "weightscope/"


@dataclass(frozen=True)
class _Block:
    block: int | None
    q: str
    k: str
    gain: str | None
    split: tuple[int, int, int]  # heads, kv heads, head size


def _config_heads(model: Any) -> dict[str, Any]:
    """Head counts from the first (sub-)module carrying a transformers-style config."""
    modules = model.modules() if hasattr(model, "modules") else [model]
    for module in modules:
        to_dict = getattr(getattr(module, "config", None), "to_dict", None)
        if callable(to_dict):
            found = head_counts(to_dict())
            if found.get("head_count"):
                return found
    return {}


class LiveMeasures:
    """The cheap measures of one torch model; `measure` returns ``weightscope/…`` metrics.

    ``spectral_norms`` is a regex over tensor names: each matching matrix gets its own
    ``weightscope/spectral_norm/<name>``; without it every block's weight matrices are
    measured and the block's largest is logged as ``weightscope/spectral_norm/block_<b>``.
    ``notes`` says what could not be measured (no head counts, no q/k pair).
    """

    def __init__(
        self,
        model: Any,
        *,
        heads: int | None = None,
        kv_heads: int | None = None,
        spectral_norms: str | None = None,
        sample_rows: int = SAMPLE_ROWS,
        seed: int = 0,
        jump_k: float = 5.0,
    ) -> None:
        import torch

        self._torch = torch
        self._model = model
        self._jump_k = jump_k
        self._seed = seed
        reader = MemoryReader(model)
        if not reader.model_config:
            reader.model_config = _config_heads(model)
        specs = select_layers(reader.tensors(), min_evals=1).layers
        source = read_head_layout(reader, heads, kv_heads)
        #: the head counts used (from the model's config or given), for the checkpoints' analysis
        self.heads, self.kv_heads = source.heads, source.kv_heads
        pairs, self.notes = qk_pairs(specs)
        gains = {info.name for info in reader.tensors() if len(info.shape) == 1 and info.is_float}
        self._blocks: list[_Block] = []
        if pairs and source.heads is None:
            self.notes.append(
                "number of attention heads unknown (no config on the model): pass heads= for the logit bounds"
            )
        elif source.heads is not None:
            for q, k in pairs:
                try:
                    split = source.split_block(q.info.shape[0], k.info.shape[0])
                    check_head_split(*split)
                except WeightscopeError as exc:
                    self.notes.append(f"block {q.block}: no logit bound ({exc})")
                    continue
                self._blocks.append(_Block(q.block, q.name, k.name, norm_gain_name(q.name, gains), split))
        chosen = compile_pattern(spectral_norms, "spectral_norms") if spectral_norms is not None else None
        matrices = [s for s in specs if len(s.info.shape) == 2 and s.part is None and s.lora is None]
        self._per_matrix = chosen is not None
        self._matrices = [
            (s.name, s.block)
            for s in matrices
            if (chosen.search(s.name) if chosen is not None else s.block is not None)
        ]
        tokens = [s for s in token_matrices(specs) if s.kind == "embedding"]
        self._embedding = tokens[0].name if tokens else None
        rows = tokens[0].info.shape[0] if tokens else 0
        self._rows = (
            np.sort(np.random.default_rng(seed).choice(rows, size=min(sample_rows, rows), replace=False))
            if rows
            else None
        )
        self._vectors: dict[str, Any] = {}
        self._steps: list[int] = []
        self._bounds: dict[tuple[int | None, str], list[float | None]] = {(b.block, b.q): [] for b in self._blocks}

    def _live(self) -> dict[str, Any]:
        """The model's tensors now (the parameters themselves, no copies)."""
        return self._model.state_dict(keep_vars=True)

    def _numpy(self, tensor: Any) -> np.ndarray:
        return tensor.detach().to("cpu", self._torch.float64).numpy()

    def _sigma_max(self, name: str, weight: Any) -> float:
        torch = self._torch
        w = weight.detach()
        w = w if w.dtype in (torch.float32, torch.float64) else w.float()
        v = self._vectors.get(name)
        steps = ITERATIONS
        if v is None or v.shape[0] != w.shape[1] or v.device != w.device:
            generator = torch.Generator().manual_seed(self._seed)
            v = torch.randn(w.shape[1], generator=generator, dtype=w.dtype).to(w.device)
            v = v / torch.linalg.vector_norm(v)
            steps = FIRST_ITERATIONS
        sigma = torch.zeros((), dtype=w.dtype, device=w.device)
        for _ in range(steps):
            u = w @ v
            u = u / torch.linalg.vector_norm(u).clamp_min(1e-30)
            v = w.T @ u
            sigma = torch.linalg.vector_norm(v)
            v = v / sigma.clamp_min(1e-30)
        self._vectors[name] = v
        return float(sigma)

    def measure(self, step: int) -> dict[str, float]:
        """The metrics at ``step`` (also remembered for `alerts`)."""
        torch = self._torch
        live = self._live()
        metrics: dict[str, float] = {}
        with torch.no_grad(), blas_threads(1):  # small products: threads only contend
            bounds = []
            for block in self._blocks:
                gain = self._numpy(live[block.gain]) if block.gain is not None else None
                heads, _ = head_bounds(self._numpy(live[block.q]), self._numpy(live[block.k]), *block.split, gain)
                bound = float(heads.max())
                bounds.append(bound)
                metrics[f"{METRIC_PREFIX}logit_bound/block_{block.block}"] = bound
                self._bounds[(block.block, block.q)].append(bound if math.isfinite(bound) else None)
            if bounds:
                metrics[f"{METRIC_PREFIX}logit_bound/max"] = max(bounds)
            norms: dict[str, float] = {}
            for name, number in self._matrices:
                sigma = self._sigma_max(name, live[name])
                key = name if self._per_matrix else f"block_{number}"
                norms[key] = max(sigma, norms.get(key, 0.0))
            metrics.update({f"{METRIC_PREFIX}spectral_norm/{key}": value for key, value in norms.items()})
            if norms:
                metrics[f"{METRIC_PREFIX}spectral_norm/max"] = max(norms.values())
            if self._embedding is not None and self._rows is not None and len(self._rows) > 1:
                index = torch.as_tensor(self._rows, device=live[self._embedding].device)
                sample = live[self._embedding].detach().index_select(0, index).to("cpu", torch.float32).numpy()
                moments = row_moments(sample)
                metrics[f"{METRIC_PREFIX}embedding/mean_cosine"] = mean_cosine(sample, moments)
                metrics[f"{METRIC_PREFIX}embedding/pc1_share"] = pc1_share(sample, moments, seed=self._seed)
        self._steps.append(step)
        self._trim()
        return metrics

    def _trim(self) -> None:
        """Keep the first measurement and the growth window: all the growth test reads."""
        keep = GROWTH_WINDOW + 1
        if len(self._steps) > keep:
            self._steps = [self._steps[0], *self._steps[-GROWTH_WINDOW:]]
            for key, series in self._bounds.items():
                self._bounds[key] = [series[0], *series[-GROWTH_WINDOW:]]

    def alerts(self) -> list[Alert]:
        """``logit-growth`` for the blocks whose bound grows faster than the others' now."""
        if not self._steps:
            return []
        steps: list[int | None] = list(self._steps)
        return growth_alerts(block_growth(self._bounds, steps, self._jump_k), self._steps[-1])
