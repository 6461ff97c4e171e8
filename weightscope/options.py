"""`AnalysisOptions`: everything that changes a report's numbers, recorded in the report.

A leaf of the package (it needs only the thresholds and the precision names), so every
level that takes options — execution, pipeline, commands, CLI — imports it from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from weightscope.config import Thresholds
from weightscope.errors import WeightscopeError
from weightscope.linalg.choices import check_precision


@dataclass(frozen=True)
class AnalysisOptions:
    """Everything that changes the numbers of a report; recorded in the report itself."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    min_evals: int = 50
    min_tail: int = 10
    #: "auto" (float32, float64 where float32 could change a verdict), "float32", "float64"
    eig_dtype: str = "auto"
    #: shuffle each layer and re-solve: correlation traps and the distance from random
    #: (about 2× the cost of a plain analysis, hence opt-in)
    randomize: bool = False
    seed: int = 0
    #: eigenvector localisation (a full eigh per layer)
    vectors: bool = False
    #: cut fused tensors (qkv, c_attn, query_key_value, gate_up_proj) into their parts
    split: bool = True
    #: query and key/value heads per block, for the split and the attention-logit bound
    #: (None: from config.json beside the checkpoint or GGUF metadata)
    heads: int | None = None
    kv_heads: int | None = None
    thresholds: Thresholds = Thresholds()
    #: model-level measures (attention-logit bounds, embedding anisotropy and intrinsic
    #: dimension): a second, bounded pass over q/k and the embeddings
    measures: bool = True

    def __post_init__(self) -> None:
        if self.min_evals < 1:
            raise WeightscopeError(f"min_evals must be ≥ 1, got {self.min_evals}")
        if self.min_tail < 2:
            raise WeightscopeError(f"min_tail must be ≥ 2, got {self.min_tail}")
        if self.seed < 0:  # numpy's generators refuse them: every randomised layer would fail
            raise WeightscopeError(f"seed must be a whole number ≥ 0, got {self.seed}")
        check_precision(self.eig_dtype)
        for name in ("heads", "kv_heads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise WeightscopeError(f"{name} must be a positive integer, got {value!r}")

    @classmethod
    def from_kwargs(cls, **kwargs: object) -> AnalysisOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise WeightscopeError(f"unknown analysis option(s): {', '.join(unknown)}")
        for key in ("include", "exclude"):
            if isinstance(kwargs.get(key), str):
                kwargs[key] = (kwargs[key],)
            elif key in kwargs:
                kwargs[key] = tuple(kwargs[key])  # type: ignore[arg-type]  # a sequence of patterns
        return cls(**kwargs)  # type: ignore[arg-type]  # names checked above; values by __post_init__
