"""The one result type: `LayerResult` per layer and `Report` per checkpoint.

Every view (rich table, JSON, CSV, markdown, plots, the gate, compare, trend) reads a
`Report`; nothing downstream recomputes. JSON is versioned (`SCHEMA`) and round-trips:
`Report.from_dict(report.to_dict()) == report`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from weightscope.checks import DragonKings, FitTrust, LikelihoodRatio, RankInfo, TrapEntry, Traps, VectorStats  # noqa: F401  (hints)
from weightscope.errors import WeightscopeError
from weightscope.layers import SkippedTensor
from weightscope.stats.randmat import MPBulk

SCHEMA = "weightscope.report/2"


# --- the report ------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerResult:
    """Everything weightscope says about one weight matrix (or one pooled conv kernel).

    ``status`` is "ok" or "failed". A failed layer keeps its identity (name, kind, shape)
    and a ``reason``; its numbers are None. Spectrum numbers are of X = WᵀW/N (N ≥ M).
    """

    name: str
    kind: str
    block: int | None
    shape: tuple[int, ...]
    dtype: str
    status: str
    reason: str | None = None
    num_evals: int | None = None
    # power-law fit
    alpha: float | None = None
    xmin: float | None = None
    xmax: float | None = None
    D: float | None = None
    sigma: float | None = None
    num_tail: int | None = None
    # norms (WeightWatcher's definitions, σ² of W; the _per_n ones are σ²/N: stats.norms)
    lambda_max: float | None = None
    log_norm: float | None = None
    log_spectral_norm: float | None = None
    alpha_weighted: float | None = None
    log_norm_per_n: float | None = None
    log_spectral_norm_per_n: float | None = None
    alpha_weighted_per_n: float | None = None
    stable_rank: float | None = None
    entropy: float | None = None
    # diagnostics (None where not computed)
    mp: MPBulk | None = None
    rand_distance: float | None = None
    traps: Traps | None = None
    rank: RankInfo | None = None
    dragon_kings: DragonKings | None = None
    fit_trust: FitTrust | None = None
    vectors: VectorStats | None = None
    verdict: str | None = None
    flags: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Summary:
    """Model-level figures. The robust ones (median, MAD) are what users should read.

    ``alpha_median``/``alpha_mad`` and the per-kind/per-block medians use only the robust
    set: fitted layers whose fit is trusted (when trust was assessed) and whose alpha is
    ≤ 8 — a random-like layer's alpha is large and meaningless, and would drag the figures.
    ``alpha_mean`` is the plain mean over every fitted layer, for comparison only.
    """

    analysed: int
    skipped: int
    failed: int
    alpha_median: float | None
    alpha_mad: float | None
    alpha_mean: float | None
    below_2: int
    in_2_6: int
    above_6: int
    robust_layers: int = 0
    excluded_above_8: int = 0
    excluded_untrusted: int = 0
    alpha_median_by_kind: dict[str, float] = field(default_factory=dict)
    alpha_median_by_block: dict[str, float] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """One analysed checkpoint: its layers, what was skipped, the options and a summary."""

    source: str
    format: str
    weightscope_version: str
    options: dict[str, Any]
    layers: list[LayerResult]
    skipped: list[SkippedTensor]
    summary: Summary
    schema: str = SCHEMA

    def layer(self, name: str) -> LayerResult:
        for result in self.layers:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        data = _to_jsonable(self)
        return {"schema": data.pop("schema"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        if isinstance(data, dict) and data.get("schema") == "weightscope.report/1":
            raise WeightscopeError("this report was written by an older weightscope (schema report/1, whose "
                                   "lambda_max/log_norm were σ²/N); analyse the checkpoint again")
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise WeightscopeError(f"not a weightscope report (schema {found!r}, expected {SCHEMA!r})")
        try:
            return _from_jsonable(cls, data)
        except (TypeError, ValueError, KeyError) as exc:
            raise WeightscopeError(f"malformed weightscope report: {exc}") from None


# --- generic dataclass <-> JSON-able conversion ----------------------------------------


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _from_jsonable(hint: Any, value: Any) -> Any:
    """Rebuild a value of type ``hint`` from its JSON form, guided by type hints."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _from_jsonable(inner, value)
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        known = {f.name for f in dataclasses.fields(hint)}
        kwargs = {k: _from_jsonable(hints[k], v) for k, v in value.items() if k in known}
        return hint(**kwargs)
    if origin is list:
        (inner,) = typing.get_args(hint)
        return [_from_jsonable(inner, v) for v in value]
    if origin is tuple:
        return tuple(value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value
