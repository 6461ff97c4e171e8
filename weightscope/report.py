"""The one result type: `LayerResult` per layer and `Report` per checkpoint.

Every view (rich table, JSON, CSV, markdown, plots, the gate, compare, trend) reads a
`Report`; nothing downstream recomputes. JSON is versioned (`SCHEMA`) and round-trips:
`Report.from_dict(report.to_dict()) == report`.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from weightscope import vocabulary
from weightscope.checkpoint.layers import SkippedTensor
from weightscope.checks.results import (  # noqa: F401  (hints)
    DragonKings,
    FitTrust,
    RankInfo,
    TrapEntry,
    Traps,
)
from weightscope.config import Thresholds
from weightscope.errors import WeightscopeError, install_hint
from weightscope.stats.attention import LogitBound
from weightscope.stats.embedding import RowCloud
from weightscope.stats.initialization import InitMatch
from weightscope.stats.likelihood import LikelihoodRatio  # noqa: F401  (hints)
from weightscope.stats.randmat import MPBulk
from weightscope.stats.update import UpdateStats
from weightscope.stats.vectors import VectorStats

SCHEMA = "weightscope.report/4"
#: `Report.to_pandas` columns renamed to WeightWatcher's name of the same quantity.
WEIGHTWATCHER_COLUMNS = {"name": "longname", "num_tail": "num_pl_spikes"}


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
    # WeightWatcher's MP-fit columns (bulk_max in σ² of W) and, with --randomize, its
    # distance from random (stats.ww_columns); weightscope's own are mp and shuffle_ks_distance
    bulk_max: float | None = None
    num_spikes: int | None = None
    mp_softrank: float | None = None
    rand_distance: float | None = None
    # diagnostics (None where not computed)
    mp: MPBulk | None = None
    #: KS distance between the ESD and its shuffled copy's (with --randomize)
    shuffle_ks_distance: float | None = None
    traps: Traps | None = None
    rank: RankInfo | None = None
    dragon_kings: DragonKings | None = None
    fit_trust: FitTrust | None = None
    vectors: VectorStats | None = None
    #: a LoRA adapter's update ΔW = s·B·A of this weight (adapter reports only)
    update: UpdateStats | None = None
    verdict: str | None = None
    flags: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    #: how sure the reading of alpha is: "solid", "approximate", or None when alpha carries
    #: no information (`weightscope.vocabulary.CONFIDENCES`)
    confidence: str | None = None
    #: the verdict's plain meaning and what to do (`weightscope.vocabulary`); empty when healthy
    advice: str = ""
    #: the initialiser a random-like layer's entries match (looks untrained or reset)
    init: InitMatch | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def has_reading(self) -> bool:
        """Whether this layer's alpha carries information: the one definition that the
        summary, the gate, trend and every view read.

        A fitted alpha with a confidence has a reading; so has one whose confidence was
        never judged (a report made without diagnostics: nothing says otherwise).
        """
        return self.ok and self.alpha is not None and (self.confidence is not None or self.fit_trust is None)


@dataclass(frozen=True)
class Summary:
    """Model-level figures. The robust ones (median, MAD) are what users should read.

    ``alpha_median``/``alpha_mad`` and the per-kind/per-block medians use only the robust
    set: fitted layers whose fit is trusted (when trust was assessed) and whose alpha is
    ≤ ``alpha_random`` — a random-like layer's alpha is large and meaningless, and would
    drag the figures. ``alpha_mean`` is the plain mean over every fitted layer, for
    comparison only. The band counts are against the report's own thresholds
    (`Report.thresholds`): ``below_2`` counts alpha < alpha_low, ``in_2_6`` alpha in
    [alpha_low, alpha_high], ``above_6`` alpha > alpha_high and ``excluded_above_8``
    alpha > alpha_random; the names are those of the defaults (2, 6, 8), kept so that
    saved reports stay readable.
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
    #: fitted layers left out of the robust figures because their alpha has no reading
    excluded_no_reading: int = 0
    alpha_median_by_kind: dict[str, float] = field(default_factory=dict)
    alpha_median_by_block: dict[str, float] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AttentionBounds:
    """The attention-logit bound of every block (`weightscope.stats.attention`).

    ``status`` is "ok", or "unavailable" with a ``reason`` (no head count known, no q/k
    pair found): a bound over a guessed head split would be a wrong number, so none is
    given. ``source`` says where the head layout came from (a config.json path, "flags").
    ``max``/``median`` are over all heads of all blocks.
    """

    status: str
    reason: str | None = None
    heads: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    source: str | None = None
    max: float | None = None
    median: float | None = None
    layers: list[LogitBound] = field(default_factory=list)


@dataclass(frozen=True)
class ModelMeasures:
    """Model-level measures that need several tensors or a whole matrix's rows at once.

    ``embeddings`` holds the row cloud of the token embedding and of an untied output
    head; ``notes`` says what was not measured and why (one sentence each).
    """

    attention: AttentionBounds
    embeddings: list[RowCloud] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
    #: what the checkpoint says about the model (GGUF: architecture, heads, KV heads, blocks)
    metadata: dict[str, Any] = field(default_factory=dict)
    measures: ModelMeasures | None = None
    schema: str = SCHEMA

    @property
    def thresholds(self) -> Thresholds:
        """The thresholds this report was judged with (defaults where none were recorded)."""
        return Thresholds.recorded(self.options)

    def layer(self, name: str) -> LayerResult:
        for result in self.layers:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return json_document(self)

    def to_pandas(self) -> Any:
        """One row per layer as a `pandas.DataFrame` (needs the ``pandas`` extra).

        Columns carry WeightWatcher's names where the meaning is the same (`details()`:
        ``layer_id``, ``longname``, ``N``, ``M``, ``num_pl_spikes`` for the tail size,
        ``matrix_rank``, and alpha, alpha_weighted, D, xmin, xmax, sigma, lambda_max,
        log_norm, log_spectral_norm, stable_rank, entropy, num_evals, which already share
        them); nested results are flattened to ``group.field`` (``mp.bulk_edge``,
        ``update.rank90``); lists (trap entries, singular values) are left to the JSON.
        """
        try:
            import pandas
        except ImportError as exc:
            raise WeightscopeError(f"Report.to_pandas needs pandas: {install_hint('pandas')}") from exc
        rows = []
        for index, layer in enumerate(self.layers):
            row: dict[str, Any] = {"layer_id": index}
            for key, value in to_jsonable(layer).items():
                if isinstance(value, dict):
                    row.update({f"{key}.{k}": v for k, v in value.items() if not isinstance(v, (list, dict))})
                elif key in ("flags", "reasons"):
                    row[key] = "; ".join(value)
                elif not isinstance(value, list):
                    row[WEIGHTWATCHER_COLUMNS.get(key, key)] = value
            if len(layer.shape) >= 2:
                row["N"], row["M"] = max(layer.shape[:2]), min(layer.shape[:2])
            row["matrix_rank"] = layer.rank.numerical_rank if layer.rank is not None else None
            rows.append(row)
        return pandas.DataFrame(rows)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Rebuild a report from its JSON form, checking every value's type on the way.

        Saved reports are inputs like any other: hand-edited or damaged ones (a string or
        NaN alpha, ``layers: [1]``, two layers of one name) raise `WeightscopeError`
        naming the field, rather than failing later in compare, gate or trend.
        """
        if isinstance(data, dict) and data.get("schema") == "weightscope.report/1":
            raise WeightscopeError(
                "this report was written by an older weightscope (schema report/1, whose "
                "lambda_max/log_norm were σ²/N); analyse the checkpoint again"
            )
        while isinstance(data, dict) and data.get("schema") in _UPGRADES:
            data = _UPGRADES[data["schema"]](data)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise WeightscopeError(f"not a weightscope report (schema {found!r}, expected {SCHEMA!r})")
        collecting = gc.isenabled()
        gc.disable()  # ~7 acyclic objects per layer: the collector's passes over them made 100k layers 2.3× slower
        try:
            report = _from_jsonable(cls, data, "report")
        except (TypeError, ValueError, KeyError) as exc:
            raise WeightscopeError(f"malformed weightscope report: {exc}") from None
        finally:
            if collecting:
                gc.enable()
        seen: set[str] = set()
        for layer in report.layers:
            if layer.name in seen:
                raise WeightscopeError(f"malformed weightscope report: layer {layer.name!r} appears twice")
            seen.add(layer.name)
        return report


def _from_report_2(data: dict[str, Any]) -> dict[str, Any]:
    """A report/2 document as report/3: ``untrusted-fit`` is ``no-reading``
    (`vocabulary.RENAMED`, in verdicts, flags and the summary's counts), a layer's confidence is "solid" where report/2's fit_trust
    said trusted and the verdict agreed (report/2 had no approximate reading), its
    advice comes from the vocabulary, and the summary's ``excluded_untrusted`` is
    ``excluded_no_reading``. Anything malformed is left for `from_dict` to name."""
    layers = []
    for layer in data.get("layers") or []:
        if not isinstance(layer, dict):
            layers.append(layer)
            continue
        layer = dict(layer)
        verdict = layer.get("verdict")
        if isinstance(verdict, str):
            layer["verdict"] = vocabulary.current_name(verdict)
        if isinstance(layer.get("flags"), list):
            layer["flags"] = [vocabulary.current_name(f) if isinstance(f, str) else f for f in layer["flags"]]
        trust = layer.get("fit_trust")
        trusted = (
            isinstance(trust, dict) and trust.get("trusted") is True and layer.get("verdict") != vocabulary.NO_READING
        )
        layer.setdefault("confidence", "solid" if trusted else None)
        layer.setdefault(
            "advice", vocabulary.advice(layer.get("verdict")) if isinstance(layer.get("verdict"), str) else ""
        )
        layers.append(layer)
    summary = data.get("summary")
    if isinstance(summary, dict) and "excluded_untrusted" in summary:
        summary = {("excluded_no_reading" if k == "excluded_untrusted" else k): v for k, v in summary.items()}
    if isinstance(summary, dict) and isinstance(summary.get("verdicts"), dict):
        counts: dict[str, Any] = {}
        for name, count in summary["verdicts"].items():
            key = vocabulary.current_name(name)
            counts[key] = counts.get(key, 0) + count if isinstance(count, int) else count
        summary = {**summary, "verdicts": counts}
    return {**data, "schema": "weightscope.report/3", "layers": layers, "summary": summary}


#: report/3 names of weightscope's own MP-bulk and shuffle figures, given up to
#: WeightWatcher's columns of those names (`weightscope.stats.ww_columns`).
_REPORT_3_NAMES = {
    None: {"rand_distance": "shuffle_ks_distance"},
    "mp": {"bulk_max": "bulk_edge", "num_spikes": "spikes_above_edge", "mp_softrank": "bulk_edge_ratio"},
    "traps": {"bulk_max": "bulk_edge"},
}


def _from_report_3(data: dict[str, Any]) -> dict[str, Any]:
    """A report/3 document as report/4: its ``rand_distance`` (a KS distance) is
    ``shuffle_ks_distance``, ``mp.bulk_max``/``num_spikes``/``mp_softrank`` are
    ``mp.bulk_edge``/``spikes_above_edge``/``bulk_edge_ratio`` and ``traps.bulk_max`` is
    ``traps.bulk_edge``; WeightWatcher's columns, never computed then, stay None."""

    def renamed(entry: Any, names: dict[str, str]) -> Any:
        return {names.get(k, k): v for k, v in entry.items()} if isinstance(entry, dict) else entry

    layers = []
    for layer in data.get("layers") or []:
        if isinstance(layer, dict):
            layer = renamed(layer, _REPORT_3_NAMES[None])
            layer.update(
                {
                    group: renamed(layer.get(group), _REPORT_3_NAMES[group])
                    for group in ("mp", "traps")
                    if group in layer
                }
            )
        layers.append(layer)
    return {**data, "schema": SCHEMA, "layers": layers}


#: Older schemas this version still reads, each upgraded one step by `Report.from_dict`.
_UPGRADES = {"weightscope.report/2": _from_report_2, "weightscope.report/3": _from_report_3}


# --- generic dataclass <-> JSON-able conversion ----------------------------------------


def to_jsonable(value: Any) -> Any:
    """Dataclasses, tuples and dicts as JSON values (objects, lists, string keys); NaN, ±inf → null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):  # NaN and ±inf are not JSON
        return None  # (a difference of two alphas near ±1.7e308 of hand-edited reports overflows)
    return value


def json_document(result: Any, **computed: Any) -> dict[str, Any]:
    """A result (report, comparison, trend, gate result) as its JSON document: ``schema``
    first, then ``computed`` values worth recording (properties), then every field.
    The one `to_dict` of every result type."""
    data = to_jsonable(result)
    return {"schema": data.pop("schema"), **to_jsonable(computed), **data}


class _Wrong(ValueError):
    """A value of the wrong type; the path to it is collected on the way out (cheaper than
    building a path string for every one of a 100k-layer report's values)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []

    def __str__(self) -> str:
        return f"{''.join(reversed(self.path))}: {self.message}"


def _wrong(expected: str, value: Any) -> _Wrong:
    shown = (
        f"a {len(str(abs(value)))}-digit integer"
        if isinstance(value, int) and abs(value) > 10**60
        else repr(str(value)[:60])
    )
    return _Wrong(f"expected {expected}, got {shown}")


def _from_jsonable(hint: Any, value: Any, where: str) -> Any:
    """Rebuild a value of type ``hint`` from its JSON form, guided by type hints; a value of
    the wrong type raises ValueError naming where it is (``where``, then the path)."""
    try:
        return _converter(hint)(value)
    except _Wrong as exc:
        exc.path.append(where)
        raise


Convert = typing.Callable[[Any], Any]


@functools.cache
def _converter(hint: Any) -> Convert:
    """The function that rebuilds values of ``hint``, made once per type: `Report.from_dict`
    costs a few µs per layer, not a `typing.get_type_hints` per nested object (4 ms each,
    which made a 100k-layer report take minutes)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        convert = _converter(inner)
        return lambda value: None if value is None else convert(value)
    if dataclasses.is_dataclass(hint):
        return _dataclass_converter(hint)
    if origin is list or origin is tuple:
        item = _converter(typing.get_args(hint)[0])
        return _list_converter(item, list if origin is list else tuple)
    if origin is dict:
        return _dict_converter(_converter(typing.get_args(hint)[1]))
    if hint is float:
        return _float
    if hint is int:
        return _typed(int, "a whole number")
    if hint is bool:
        return _typed(bool, "true or false")
    if hint is str:
        return _typed(str, "a string")
    return lambda value: value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong("a finite number", value)
    try:
        number = float(value)
    except OverflowError:  # a 400-digit integer
        raise _wrong("a finite number", value) from None
    if not math.isfinite(number):
        raise _wrong("a finite number", value)
    return number


def _typed(kind: type, expected: str) -> Convert:
    def convert(value: Any) -> Any:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _wrong(expected, value)
        return value

    return convert


def _list_converter(item: Convert, build: type) -> Convert:
    def convert(value: Any) -> Any:
        if not isinstance(value, list):
            raise _wrong("a list", value)
        items = []
        for index, entry in enumerate(value):
            try:
                items.append(item(entry))
            except _Wrong as exc:
                exc.path.append(f"[{index}]")
                raise
        return items if build is list else tuple(items)

    return convert


def _dict_converter(item: Convert) -> Convert:
    def convert(value: Any) -> Any:
        if not isinstance(value, dict):
            raise _wrong("an object", value)
        out = {}
        for key, entry in value.items():
            try:
                out[key] = item(entry)
            except _Wrong as exc:
                exc.path.append(f".{key}")
                raise
        return out

    return convert


_FAST = {float: float, int: int, str: str, bool: bool}
_MISSING = object()


def _at(convert: Convert, value: Any, key: str) -> Any:
    """``convert(value)``, naming ``key`` on the path of a wrong value."""
    try:
        return convert(value)
    except _Wrong as exc:
        exc.path.append(key)
        raise


def _dataclass_converter(cls: Any) -> Convert:
    """A function written for ``cls``, as `dataclasses` writes ``__init__``: one straight
    line per field. A value that already has its field's type (a finite float, a string,
    None for an optional) is stored as it is; anything else goes through the field's
    converter, which checks it and names it. The object is built without the generated
    ``__init__`` (a frozen dataclass sets each field through ``object.__setattr__``).
    A report's 40-odd fields per layer then cost about what parsing their JSON costs."""
    hints = typing.get_type_hints(cls)
    if hasattr(cls, "__post_init__") or hasattr(cls, "__slots__"):
        return _checked_dataclass_converter(cls, hints)
    namespace: dict[str, Any] = {
        "cls": cls,
        "new": object.__new__,
        "MISSING": _MISSING,
        "at": _at,
        "wrong": _wrong,
        "Wrong": _Wrong,
    }
    lines = [
        "def convert(value):",
        "    if value.__class__ is not dict:",
        "        raise wrong('an object', value)",
        "    get = value.get",
        "    built = new(cls)",
        "    d = built.__dict__",
    ]
    for index, f in enumerate(dataclasses.fields(cls)):
        hint = hints[f.name]
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
        plain = next((a for a in args if a is not type(None)), hint) if args else hint
        fast, nullable = _FAST.get(plain), type(None) in args
        namespace[f"c{index}"] = _converter(hint)
        key = repr(f.name)
        lines.append(f"    v = get({key}, MISSING)")
        lines.append("    if v is MISSING:")
        if f.default is not dataclasses.MISSING:
            namespace[f"d{index}"] = f.default
            lines.append(f"        v = d{index}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"d{index}"] = f.default_factory
            lines.append(f"        v = d{index}()")
        else:
            lines.append(f"        raise Wrong({cls.__name__ + ' lacks ' + f.name!r})")
        if fast is None:
            test = "True"
        elif fast is float:
            test = "v.__class__ is not float or v - v != 0.0"  # v - v is NaN for ±inf and NaN
        else:
            test = f"v.__class__ is not {fast.__name__}"
        if nullable:
            test = f"v is not None and ({test})"
        lines.append(f"    elif {test}:")
        lines.append(f"        v = at(c{index}, v, {'.' + f.name!r})")
        lines.append(f"    d[{key}] = v")
    lines.append("    return built")
    exec("\n".join(lines), namespace)  # the code is written above, from field names only
    return namespace["convert"]


def _checked_dataclass_converter(cls: Any, hints: dict[str, Any]) -> Convert:
    """For a dataclass that checks itself (``__post_init__``): built through ``__init__``."""
    fields = {f.name: _converter(hints[f.name]) for f in dataclasses.fields(cls)}

    def convert(value: Any) -> Any:
        if not isinstance(value, dict):
            raise _wrong("an object", value)
        kwargs = {key: _at(fields[key], entry, f".{key}") for key, entry in value.items() if key in fields}
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a required field is missing
            raise _Wrong(str(exc)) from None

    return convert
