"""LoRA adapters saved by PEFT: ``adapter_config.json`` + ``adapter_model.safetensors`` (or ``.bin``).

An adapter holds, per adapted module, two factors: A (r×k) and B (d×r), and the update
it makes to the module's weight W (d×k) is ΔW = s·B·A with s = lora_alpha / r, or
lora_alpha / √r with ``use_rslora`` (PEFT's `LoraLayer.update_layer`); ``rank_pattern``
and ``alpha_pattern`` override r and lora_alpha per module, matched as PEFT's
`get_pattern_key` does (the pattern matches the module name's end, at a dot). Embedding
adapters store A (r×num_embeddings) and B (dim×r), and ``fan_in_fan_out`` (GPT-2's
Conv1D) stores W transposed: in both ΔW is (s·B·A)ᵀ in the stored layout.

Names, as PEFT writes them: ``base_model.model.<module>.lora_A.weight`` (saved files; the
adapter name is removed), ``<module>.lora_A.default.weight`` and ``<module>.base_layer.weight``
(a PEFT model's own state dict), ``lora_embedding_A``/``_B`` (embeddings, no ``.weight``),
``<module>.lora_magnitude_vector`` (DoRA; ``.default.weight`` in memory), and
``modules_to_save`` copies, saved under the module's own name (``…modules_to_save.default.…``
in memory): those are whole replacement tensors, not updates.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from weightscope.checkpoint.base import CheckpointReader, TensorInfo
from weightscope.checkpoint.directory import ADAPTER_CONFIG
from weightscope.errors import CheckpointError, WeightscopeError
from weightscope.patterns import Pattern, compile_pattern

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
#: What PEFT puts in front of the wrapped model's names.
PEFT_PREFIX = "base_model.model."

_FACTOR = re.compile(
    r"^(?P<module>.+?)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)"
    r"(?:\.(?!weight$)(?P<adapter>[^.]+))?(?:\.weight)?$"
)
_WRAPPED = re.compile(r"\.(?:modules_to_save|original_module)\.[^.]+(?=\.)|\.base_layer(?=\.)")
_MAX_CONFIG_BYTES = 1024 * 1024


def canonical_name(name: str) -> str:
    """A tensor's name in the model PEFT wrapped: without ``base_model.model.``, and
    without the wrappers ``.base_layer``, ``.modules_to_save.<adapter>`` and
    ``.original_module.<adapter>``."""
    return _WRAPPED.sub("", name.removeprefix(PEFT_PREFIX))


@dataclass(frozen=True)
class LoraConfig:
    """The fields of ``adapter_config.json`` that decide ΔW."""

    r: int
    lora_alpha: float
    use_rslora: bool = False
    use_dora: bool = False
    fan_in_fan_out: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    modules_to_save: list[str] = field(default_factory=list)
    base_model: str | None = None

    def rank_and_alpha(self, module: str) -> tuple[int, float]:
        """r and lora_alpha of one module, after the per-module patterns."""
        return _pattern_value(self.rank_pattern, module, self.r), _pattern_value(
            self.alpha_pattern, module, self.lora_alpha
        )

    def scale(self, rank: int, alpha: float) -> float:
        return alpha / math.sqrt(rank) if self.use_rslora else alpha / rank


def _module_pattern(pattern: str, where: str) -> Pattern:
    """A ``rank_pattern``/``alpha_pattern`` key as PEFT's `get_pattern_key` matches it: the
    module name's end, at a dot. Keys come from a file: they run on RE2 (linear time)."""
    return compile_pattern(rf"^(?:.*\.)?(?:{pattern})$", where)


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    for pattern, value in patterns.items():
        if _module_pattern(pattern, "adapter pattern").search(module):
            return value
    return default


@dataclass(frozen=True)
class LoraModule:
    """One adapted module: its factors and the update they make.

    ``name`` is the weight ΔW adds to, in the base model (``model.layers.0.q_proj.weight``);
    ``shape`` is ΔW's shape in that weight's stored layout; ``transposed`` says that layout
    is (B·A)ᵀ. ``magnitude`` is DoRA's per-output magnitude vector, if any.
    """

    name: str
    a: TensorInfo
    b: TensorInfo
    rank: int
    alpha: float
    scale: float
    transposed: bool
    magnitude: TensorInfo | None = None
    note: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        d, k = self.b.shape[0], self.a.shape[1]
        return (k, d) if self.transposed else (d, k)

    def delta(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """ΔW = s·B·A in the stored layout (float32 unless a factor is float64)."""
        product = np.matmul(b, a) * np.asarray(self.scale, dtype=np.result_type(a, b))
        return product.T if self.transposed else product

    def merged(self, w: np.ndarray, a: np.ndarray, b: np.ndarray, magnitude: np.ndarray | None) -> np.ndarray:
        """W + s·B·A, rescaled row by row to DoRA's magnitude when there is one (PEFT's
        ``DoraLinearLayer``: m · (W + ΔW) / ‖W + ΔW‖ over each output's row)."""
        if w.shape != self.shape:
            raise CheckpointError(
                f"adapter's ΔW is {'×'.join(map(str, self.shape))}, base weight {'×'.join(map(str, w.shape))}"
            )
        merged = w + self.delta(a, b)
        if magnitude is not None:
            rows = merged if not self.transposed else merged.T
            norms = np.linalg.norm(rows, axis=1)
            if magnitude.shape != norms.shape:
                raise CheckpointError(f"DoRA magnitude has shape {magnitude.shape}, expected {norms.shape}")
            rows *= (magnitude / np.where(norms > 0, norms, 1.0))[:, None].astype(rows.dtype)
        return merged


@dataclass(frozen=True)
class LoraAdapter:
    """What an adapter directory holds: its config, adapted modules and full replacements.

    ``saved`` are ``modules_to_save`` tensors (they replace the base's, by canonical name);
    ``other`` are tensors that are neither (an A without its B, a bias), listed not read.
    """

    directory: Path
    config: LoraConfig
    modules: list[LoraModule]
    saved: list[TensorInfo]
    other: list[TensorInfo]


def read_config(path: Path) -> LoraConfig:
    try:
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            raise CheckpointError(f"{path}: adapter config is larger than 1 MB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read file: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not valid JSON: {exc}") from exc
    return config_from_dict(data, str(path))


def config_from_dict(data: Any, where: str) -> LoraConfig:
    """A `LoraConfig` from ``adapter_config.json``'s content (or a PEFT config's ``to_dict()``)."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: adapter config is not a JSON object")
    kind = data.get("peft_type", "LORA")
    kind = getattr(kind, "value", kind)  # a PEFT config in memory holds the PeftType enum
    if kind != "LORA":
        raise CheckpointError(f"{where}: PEFT type {kind!r} is not supported (LoRA and DoRA adapters are)")
    r, alpha = data.get("r"), data.get("lora_alpha", data.get("r"))
    if not _rank(r) or not _positive_number(alpha):
        raise CheckpointError(
            f"{where}: r and lora_alpha must be positive numbers, r a whole number below 2³¹ "
            f"(got r={_shown(r)}, lora_alpha={_shown(alpha)})"
        )
    rank_pattern = data.get("rank_pattern") or {}
    alpha_pattern = data.get("alpha_pattern") or {}
    saved = data.get("modules_to_save") or []
    saved = sorted(saved) if isinstance(saved, (set, tuple)) else saved  # a PEFT config in memory may hold a set
    if not (isinstance(rank_pattern, dict) and isinstance(alpha_pattern, dict) and isinstance(saved, list)):
        raise CheckpointError(f"{where}: rank_pattern/alpha_pattern must be objects and modules_to_save a list")
    for key, patterns, valid, wanted in (
        ("rank_pattern", rank_pattern, _rank, "a whole number from 1 to 2³¹"),
        ("alpha_pattern", alpha_pattern, _positive_number, "a positive finite number"),
    ):
        for pattern, value in patterns.items():
            if not valid(value):
                raise CheckpointError(
                    f"{where}: {key} {_shown(pattern)} has the value {_shown(value)}; expected {wanted}"
                )
            try:
                _module_pattern(pattern, f"{key} of {where}:")
            except WeightscopeError as exc:
                raise CheckpointError(str(exc)) from None
    return LoraConfig(
        r=int(r),
        lora_alpha=float(alpha),
        use_rslora=bool(data.get("use_rslora", False)),
        use_dora=bool(data.get("use_dora", False)),
        fan_in_fan_out=bool(data.get("fan_in_fan_out", False)),
        rank_pattern={str(k): int(v) for k, v in rank_pattern.items()},
        alpha_pattern={str(k): float(v) for k, v in alpha_pattern.items()},
        modules_to_save=[str(m) for m in saved],
        base_model=data.get("base_model_name_or_path")
        if isinstance(data.get("base_model_name_or_path"), str)
        else None,
    )


def _positive_number(value: object) -> TypeGuard[float]:
    """A positive number that is finite as a float (a 400-digit integer is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value)) and value > 0
    except OverflowError:
        return False


def _rank(value: object) -> TypeGuard[float]:
    """A LoRA rank: a whole number (``8`` or ``8.0``) from 1 to 2³¹; 0.5 would make r = 0."""
    return _positive_number(value) and float(value) == int(value) and 1 <= int(value) < 2**31


def _shown(value: object) -> str:
    """A config value in a message, at most 60 characters (a 400-digit number is not shown whole)."""
    text = (
        repr(value) if not isinstance(value, int) or abs(value) < 10**40 else f"a {len(str(abs(value)))}-digit integer"
    )
    return text if len(text) <= 60 else text[:57] + "..."


def parse_adapter(directory: Path, config: LoraConfig, tensors: list[TensorInfo]) -> LoraAdapter:
    """Group an adapter's tensors into modules (A, B, magnitude), replacements and the rest."""
    parts: dict[str, dict[str, TensorInfo]] = {}
    adapters: set[str] = set()
    saved: list[TensorInfo] = []
    other: list[TensorInfo] = []
    for info in tensors:
        match = _FACTOR.match(info.name)
        if match is None:
            (saved if ".modules_to_save." in info.name or _is_saved(info.name, config) else other).append(info)
            continue
        if match["adapter"]:
            adapters.add(match["adapter"])
        parts.setdefault(canonical_name(match["module"]), {})[match["part"]] = info
    if len(adapters) > 1:
        raise CheckpointError(
            f"{directory}: holds several adapters ({', '.join(sorted(adapters))}); save one at a time"
        )
    modules = []
    for module, found in parts.items():
        embedding = "lora_embedding_A" in found
        a = found.get("lora_embedding_A" if embedding else "lora_A")
        b = found.get("lora_embedding_B" if embedding else "lora_B")
        if a is None or b is None or len(a.shape) != 2 or len(b.shape) != 2 or a.shape[0] != b.shape[1]:
            other.extend(found.values())
            continue
        rank, alpha = config.rank_and_alpha(module)
        note = None
        if rank != a.shape[0]:
            note = f"config says r={rank} but the factors have rank {a.shape[0]}; scale uses the config, as PEFT does"
        modules.append(
            LoraModule(
                name=f"{module}.weight",
                a=a,
                b=b,
                rank=int(a.shape[0]),
                alpha=alpha,
                scale=config.scale(rank, alpha),
                transposed=embedding or config.fan_in_fan_out,
                magnitude=found.get("lora_magnitude_vector"),
                note=note,
            )
        )
    return LoraAdapter(directory, config, modules, saved, other)


def _is_saved(name: str, config: LoraConfig) -> bool:
    """Whether a plain tensor of a saved adapter belongs to a module of ``modules_to_save``."""
    module = canonical_name(name).rpartition(".")[0]
    return any(module == m or module.endswith("." + m) for m in config.modules_to_save)


class AdapterReader(CheckpointReader):
    """A LoRA adapter: the weights file's tensors as stored, plus the parsed `adapter`."""

    def __init__(self, weights: CheckpointReader, adapter: LoraAdapter) -> None:
        self._weights = weights
        self.adapter = adapter
        self.format = f"lora ({weights.format})"

    @property
    def metadata(self) -> dict[str, Any]:
        """The adapter's config as the report records it (and, for a PEFT model in memory, that it was read as one)."""
        config = self.adapter.config
        return {
            "peft_type": "LORA",
            "r": config.r,
            "lora_alpha": config.lora_alpha,
            "use_rslora": config.use_rslora,
            "use_dora": config.use_dora,
            "base_model": config.base_model,
            "modules": len(self.adapter.modules),
            **({"read_as": PEFT_IN_MEMORY} if self._weights.format == "memory" else {}),
        }

    def tensors(self) -> list[TensorInfo]:
        return self._weights.tensors()

    def read(self, info: TensorInfo) -> np.ndarray:
        return self._weights.read(info)

    def close(self) -> None:
        self._weights.close()


#: What a report of an in-memory PEFT model says it is.
PEFT_IN_MEMORY = (
    "a PEFT model in memory, read as base + adapter like an adapter directory: each adapted "
    "module's update ΔW = s·B·A (compare(base, peft_model) for the merged weights against the base)"
)


def is_peft_model(obj: object) -> bool:
    """Whether ``obj`` is a PEFT model in memory (a `peft.PeftModel`: it has ``peft_config``
    and an ``active_adapter``)."""
    return isinstance(getattr(obj, "peft_config", None), dict) and isinstance(getattr(obj, "active_adapter", None), str)


def peft_model_adapter(model: Any, weights: CheckpointReader) -> AdapterReader:
    """The active LoRA adapter of a PEFT model in memory, as an adapter directory reads.

    ``weights`` reads the model's state dict, which holds the frozen base weights
    (``….base_layer.weight``) and every adapter's factors (``….lora_A.<adapter>.weight``);
    only the active adapter's factors and ``modules_to_save`` copies are the adapter.
    """
    name = model.active_adapter
    config = model.peft_config[name]
    config = config_from_dict(
        config.to_dict() if hasattr(config, "to_dict") else vars(config), f"PEFT adapter {name!r}"
    )
    mine = []
    for info in weights.tensors():
        match = _FACTOR.match(info.name)
        if (match is not None and match["adapter"] in (name, None)) or f".modules_to_save.{name}." in info.name:
            mine.append(info)
    adapter = parse_adapter(Path(f"<PEFT adapter {name}>"), config, mine)
    return AdapterReader(weights, adapter)


def open_adapter(path: Path, open_file: Any) -> AdapterReader:
    """Open the adapter at ``path`` (its directory, or its weights file); ``open_file``
    opens the weights file (safetensors or torch pickle, told by content)."""
    directory = path if path.is_dir() else path.parent
    config = read_config(directory / ADAPTER_CONFIG)
    if path.is_dir():
        weights_path = next((directory / name for name in ADAPTER_WEIGHTS if (directory / name).is_file()), None)
        if weights_path is None:
            raise CheckpointError(f"{directory}: adapter directory holds no {' or '.join(ADAPTER_WEIGHTS)}")
    else:
        weights_path = path
    weights = open_file(weights_path)
    try:
        adapter = parse_adapter(directory, config, weights.tensors())
    except BaseException:
        weights.close()
        raise
    if not adapter.modules and not adapter.saved:
        weights.close()
        raise CheckpointError(f"{weights_path}: no LoRA factors (lora_A/lora_B) and no modules_to_save tensors")
    return AdapterReader(weights, adapter)
