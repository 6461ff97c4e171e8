"""One layer's analysis: which layers a checkpoint has, reading one, and analysing it.

The unit both `analyze` (a checkpoint's layers) and `compare` (pairs of layers) stream
through the runner (`weightscope.execution.runner`): `select` lists the layers from
metadata, `read_layer` decodes one (on the reader thread), `analyze_read` turns what was
read into a `LayerAnalysis` (on a worker). A layer that cannot be read or analysed (NaN
weights, a corrupt tensor region, a degenerate spectrum) becomes a failed result with a
reason; it never costs the rest of the report.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from weightscope.analysis.model_measures import MeasurePart, MeasureRole, NotMeasured, measure_part
from weightscope.analysis.spectra import layer_esd, layer_randomized
from weightscope.checkpoint.base import CheckpointReader
from weightscope.checkpoint.heads import read_head_layout
from weightscope.checkpoint.layers import (
    LayerSpec,
    Selection,
    SkippedTensor,
    layer_matrices,
    lora_layers,
    select_layers,
    split_fused,
)
from weightscope.checkpoint.lora import AdapterReader
from weightscope.checks import diagnose
from weightscope.errors import WeightscopeError
from weightscope.execution.plan import Plan
from weightscope.linalg.gram import mirror_lower, oriented
from weightscope.linalg.spectrum import GramHook, power_of_two_exponent
from weightscope.options import AnalysisOptions
from weightscope.report import LayerResult
from weightscope.stats.embedding import GRAM_MAX_DIM
from weightscope.stats.fit import fit_power_law
from weightscope.stats.norms import norm_metrics
from weightscope.stats.update import lora_update_stats
from weightscope.stats.ww_columns import ww_columns

#: Called with (layers done so far, all layers to analyse or compare): once with 0 before the first
#: layer, then after each one. The CLI drives its progress bar with it.
ProgressHook = Callable[[int, list[LayerSpec]], None]


def select(reader: CheckpointReader, options: AnalysisOptions) -> Selection:
    """Which tensors of an open checkpoint would be analysed, from metadata alone.

    Fused tensors are cut into their parts (`weightscope.checkpoint.layers.split_fused`) unless
    ``options.split`` is off; head counts come from the options, the file's metadata
    (GGUF) or the model's config.json, in that order.

    For a LoRA adapter: one layer per adapted module (its update ΔW, from the factors),
    and the ``modules_to_save`` tensors as ordinary layers; tensors that are neither are
    listed as skipped.
    """
    if isinstance(reader, AdapterReader):
        adapter = reader.adapter
        selection = select_layers(
            adapter.saved, include=options.include, exclude=options.exclude, min_evals=options.min_evals
        )
        updates = lora_layers(adapter.modules, options.include, options.exclude)
        stray = [
            SkippedTensor(
                info.name,
                tuple(info.shape),
                info.dtype,
                "not read as a LoRA update (a factor without its pair, a conv LoRA factor, a bias)",
            )
            for info in adapter.other
        ]
        return Selection(updates + selection.layers, selection.skipped + stray)
    selection = select_layers(
        reader.tensors(), include=options.include, exclude=options.exclude, min_evals=options.min_evals
    )
    if not options.split:
        return selection
    layout = read_head_layout(reader, options.heads, options.kv_heads)
    return split_fused(selection, layout, options.min_evals)


def _result(spec: LayerSpec, **fields: Any) -> LayerResult:
    """A layer's result with its identity (name, kind, block, shape, stored dtype) from its spec."""
    info = spec.info
    return LayerResult(spec.name, spec.kind, spec.block, tuple(info.shape), info.dtype, **fields)


def _failed(spec: LayerSpec, reason: str) -> LayerResult:
    return _result(spec, status="failed", reason=reason, verdict="failed", flags=["failed"], reasons=[reason])


#: Elements checked for NaN/Inf at a time: a whole-tensor mask of a 152064×3584
#: embedding would be 545 MB on top of the tensor.
_FINITE_CHUNK = 1 << 22


def _non_finite_reason(array: np.ndarray) -> str | None:
    rows = max(1, _FINITE_CHUNK * len(array) // max(array.size, 1))  # slabs of whole rows: views, never copies
    nans = infs = 0
    for start in range(0, len(array), rows):
        slab = array[start : start + rows]
        finite = np.isfinite(slab)
        if not finite.all():
            slab_nans = int(np.isnan(slab).sum())
            nans += slab_nans
            infs += int(slab.size - finite.sum()) - slab_nans
    return f"weights contain {nans} NaN and {infs} Inf values" if nans or infs else None


@dataclass(frozen=True)
class LayerAnalysis:
    """One layer on its way through the pipeline: its result and the spectrum behind it.

    `analyze` keeps only ``result``; views that draw spectra (plots) use ``evals`` too.
    ``evals`` is None when the layer failed before its spectrum was computed. ``measure``
    is what the tensor gave the model-level measures, where it has a role in them.
    """

    spec: LayerSpec
    result: LayerResult
    evals: np.ndarray | None = None
    rand_evals: np.ndarray | None = None
    measure: MeasurePart | None = None


#: Sees every analysed layer, spectrum included, as it streams past.
LayerHook = Callable[[LayerAnalysis], None]


#: A layer whose largest |w| lies beyond 2^±this is analysed as 2^k·W (`_rescaled`): its
#: eigenvalues (~M·|w|², down to a tiny fraction of that) would leave float64's range
#: (2^±1022): ×1e160 gave λmax = inf and an unwritable report, ×1e-200 an "all-zero matrix".
FLOAT64_SAFE_EXPONENT = 400


def _rescaled(analysed: LayerAnalysis, exponent: int) -> LayerAnalysis:
    """The analysis of 2^k·W as the analysis of W. Alpha, D, the tail size, the MP shape
    and every verdict are scale-invariant; λ-valued figures are divided by 4^k in float64
    (None where float64 cannot hold them), log norms shifted by −2k·log10 2, exactly.
    The spectrum kept for pictures is that of 2^k·W, and the layer says so."""
    result = analysed.result
    shift = -2 * exponent * math.log10(2.0)

    def unscaled(value: float | None) -> float | None:
        if value is None:
            return None
        with np.errstate(over="ignore", under="ignore"):
            back = float(np.ldexp(value, -2 * exponent))
        return back if math.isfinite(back) and (back != 0.0 or value == 0.0) else None

    def shifted(value: float | None) -> float | None:
        return None if value is None else value + shift

    logs = {
        name: shifted(getattr(result, name))
        for name in ("log_norm", "log_spectral_norm", "log_norm_per_n", "log_spectral_norm_per_n")
    }
    alpha = result.alpha
    note = (
        f"entries beyond float64's safe range (largest |w| ≈ 2^{-exponent}): analysed as 2^{exponent}·W, which changes "
        "no alpha, D or verdict; λ-valued figures are given in float64 where it holds them, and the MP fit and picture are of 2^k·W"
    )
    return dataclasses.replace(
        analysed,
        result=dataclasses.replace(
            result,
            lambda_max=unscaled(result.lambda_max),
            bulk_max=unscaled(result.bulk_max),
            xmin=unscaled(result.xmin),
            xmax=unscaled(result.xmax),
            **logs,
            alpha_weighted=None
            if alpha is None or logs["log_spectral_norm"] is None
            else alpha * logs["log_spectral_norm"],
            alpha_weighted_per_n=None
            if alpha is None or logs["log_spectral_norm_per_n"] is None
            else alpha * logs["log_spectral_norm_per_n"],
            reason=note if result.ok else result.reason,
        ),
    )


def analyze_matrices(
    spec: LayerSpec, array: np.ndarray, options: AnalysisOptions, run: Plan = Plan(), role: MeasureRole | None = None
) -> LayerAnalysis:
    """Analyse one decoded layer tensor: spectrum, power-law fit, norms and diagnostics;
    with a ``role`` in the model-level measures, take its part too, from the same array
    (and a token matrix's row cloud from the Gram matrix its spectrum formed), even where
    the layer's own analysis fails."""
    reason = _non_finite_reason(array)
    if reason:
        return LayerAnalysis(spec, _failed(spec, reason), measure=NotMeasured("non-finite weights") if role else None)
    if role is None:
        return _analyze_finite(spec, array, options, run)
    grams: list[np.ndarray] = []
    try:
        analysis = _analyze_finite(spec, array, options, run, _gram_keeper(role, array, grams))
    except _LAYER_ERRORS as exc:
        analysis = failure_of(spec, exc)
    return dataclasses.replace(analysis, measure=measure_part(spec.name, role, array, grams[0] if grams else None))


def _gram_keeper(role: MeasureRole, array: np.ndarray, kept: list[np.ndarray]) -> GramHook | None:
    """For a token matrix whose row cloud reads WᵀW (`GRAM_MAX_DIM`): a hook that keeps the
    first Gram matrix the spectrum forms, as WᵀW in float64 (d × d), in ``kept``."""
    if role.kind != "tokens" or array.ndim != 2 or min(array.shape) > GRAM_MAX_DIM:
        return None
    rows = oriented(array).shape[0]

    def keep(gram: np.ndarray) -> None:
        if not kept:
            full = gram.astype(np.float64)
            mirror_lower(full)
            kept.append(full * rows)

    return keep


def _analyze_finite(
    spec: LayerSpec, array: np.ndarray, options: AnalysisOptions, run: Plan, on_gram: GramHook | None = None
) -> LayerAnalysis:
    exponent = power_of_two_exponent(array)
    if abs(exponent) > FLOAT64_SAFE_EXPONENT:
        return _rescaled(analyze_matrices(spec, np.ldexp(array, exponent), options, run), exponent)
    matrices = layer_matrices(array)
    spectrum = layer_esd(spec, matrices, options, run, on_gram)
    evals = spectrum.evals
    if not evals.size or evals[-1] <= 0:
        return LayerAnalysis(spec, _failed(spec, "all-zero matrix: the spectrum is empty"), evals)
    n, m = max(matrices[0].shape), min(matrices[0].shape)
    norms = norm_metrics(evals, n)
    fit = fit_power_law(evals, min_tail=options.min_tail)
    randomized = layer_randomized(spec, matrices, options, spectrum.judged, run) if options.randomize else None
    diagnostics = diagnose(
        matrices,
        evals,
        fit,
        stored_dtype=spec.info.value_dtype,
        thresholds=options.thresholds,
        randomized=randomized,
        vectors=options.vectors,
        spectrum=spectrum.judged,
        solved=spectrum.solved,
        known_rank=spectrum.rank,
    )
    result = _result(
        spec,
        status="ok",
        num_evals=int(evals.size),
        **dataclasses.asdict(norms),
        **{f.name: getattr(diagnostics, f.name) for f in dataclasses.fields(diagnostics)},
        **dataclasses.asdict(ww_columns(evals, n, m, randomized.evals if randomized is not None else None)),
    )
    if fit.status != "ok":
        result = dataclasses.replace(result, status="failed", reason=f"power-law fit failed: {fit.reason}")
    else:
        result = dataclasses.replace(
            result,
            alpha=fit.alpha,
            xmin=fit.xmin,
            xmax=fit.xmax,
            D=fit.D,
            sigma=fit.sigma,
            num_tail=fit.num_tail,
            alpha_weighted=fit.alpha * norms.log_spectral_norm,
            alpha_weighted_per_n=fit.alpha * norms.log_spectral_norm_per_n,
        )
    return LayerAnalysis(spec, result, evals, randomized.evals if randomized is not None else None)


#: Why a DoRA magnitude vector is left out of an adapter analysed alone.
DORA_WITHOUT_BASE = "DoRA magnitude not applied: it needs the base (compare BASE ADAPTER)"


def analyze_update(spec: LayerSpec, a: np.ndarray, b: np.ndarray) -> LayerAnalysis:
    """A LoRA module's update ΔW = s·B·A from its factors: singular values, ranks, norm.

    The ESD of ΔW (σ²/N, its M − r zero eigenvalues included) gives the usual norms;
    with at most r non-zero eigenvalues there is no power-law tail to fit.
    """
    module = spec.lora
    assert module is not None
    reason = _non_finite_reason(a) or _non_finite_reason(b)
    if reason:
        return LayerAnalysis(spec, _failed(spec, f"LoRA factors: {reason}"))
    note = DORA_WITHOUT_BASE if module.magnitude is not None else module.note
    update = lora_update_stats(a, b, module.scale, note=note)
    n, m = max(spec.info.shape), min(spec.info.shape)
    evals = np.zeros(m)
    nonzero = np.sort(np.square(update.singular_values[:m]))
    evals[m - nonzero.size :] = nonzero / n
    base = {"status": "ok", "num_evals": m, "update": update}
    if not evals[-1] > 0:
        return LayerAnalysis(spec, _result(spec, reason="zero update (B = 0: an untrained adapter)", **base), evals)
    result = _result(
        spec,
        reason=f"low-rank update (r = {module.rank}): no power-law fit",
        **base,
        **dataclasses.asdict(norm_metrics(evals, n)),
    )
    return LayerAnalysis(spec, result, evals)


#: What one bad layer may raise; each becomes that layer's failed result.
_LAYER_ERRORS = (WeightscopeError, ValueError, ArithmeticError, MemoryError, np.linalg.LinAlgError)


def failure_of(spec: LayerSpec, exc: Exception) -> LayerAnalysis:
    """A layer's failed analysis from the error that stopped it (its first line)."""
    return LayerAnalysis(spec, _failed(spec, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))


#: What `read_layer` hands `analyze_read`: a tensor, a LoRA module's (A, B), or a failure.
Loaded = np.ndarray | tuple[np.ndarray, np.ndarray] | LayerAnalysis


def read_layer(reader: CheckpointReader, spec: LayerSpec) -> Loaded:
    """The decoded tensor of a layer (for a LoRA update: its factors A and B), or its
    failed analysis if it cannot be read."""
    try:
        if spec.lora is not None:
            return reader.read(spec.lora.a), reader.read(spec.lora.b)
        if spec.part is not None:
            return spec.part.cut(reader.read(spec.part.source))
        return reader.read(spec.info)
    except _LAYER_ERRORS as exc:
        return failure_of(spec, exc)


def analyze_read(
    spec: LayerSpec, array: Loaded, options: AnalysisOptions, run: Plan = Plan(), role: MeasureRole | None = None
) -> LayerAnalysis:
    """`analyze_matrices` (or `analyze_update`) on what `read_layer` returned, with the
    tensor's ``role`` in the measures; a failure becomes a failed result."""
    if isinstance(array, LayerAnalysis):
        if role is None or array.result.reason is None:
            return array
        return dataclasses.replace(array, measure=NotMeasured(f"not read: {array.result.reason}"))
    try:
        if isinstance(array, tuple):
            return analyze_update(spec, *array)
        return analyze_matrices(spec, array, options, run, role)
    except _LAYER_ERRORS as exc:
        return failure_of(spec, exc)


def measure_read(spec: LayerSpec, array: Loaded, role: MeasureRole) -> MeasurePart:
    """The measures' part of a tensor that is not one of the analysed layers (a q or k
    narrower than ``min_evals``), from what `read_layer` returned."""
    if isinstance(array, LayerAnalysis):
        return NotMeasured(f"not read: {array.result.reason}")
    assert not isinstance(array, tuple)  # a LoRA adapter has no measures (`plan_measures`)
    if _non_finite_reason(array):
        return NotMeasured("non-finite weights")
    return measure_part(spec.name, role, array)
