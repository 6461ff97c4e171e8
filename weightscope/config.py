"""Every threshold the per-layer checks and the verdict use, in one place.

Why one frozen object: a verdict is only reproducible if the numbers that produced it
are known, so they live in one `Thresholds` value that is recorded with a report and can
be overridden from exactly two places — ``[tool.weightscope]`` of a pyproject.toml (a
team's standing policy) and the command line (a one-off), in that order of precedence.
"""

from __future__ import annotations

import math
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightscope.errors import WeightscopeError

#: The levels the fitted-KS table of weightscope.stats.fitted_ks covers (its LEVELS[0],
#: LEVELS[-1]; config sits below stats, so tests/stats/test_fitted_ks.py checks they agree).
KS_LEVELS = (0.01, 0.2)


@dataclass(frozen=True)
class Thresholds:
    """Thresholds of the checks (weightscope.checks) and of the verdict.

    The defaults are argued in the docstrings of the checks that use them; the short
    version is given per field.
    """

    #: Tracy–Widom scales above the Marchenko–Pastur edge an eigenvalue must clear to be
    #: a spike (or, in the randomised ESD, a trap). 4 scales: P(TW1 > 4) ≈ 2e-4.
    tw_margin: float = 4.0
    #: A stored entry is listed as a trap entry when it lies this many robust (MAD)
    #: standard deviations from the median. A Gaussian entry exceeds 6 with p ≈ 2e-9.
    trap_sigmas: float = 6.0
    #: At most this many trap entries are listed, largest deviation first.
    trap_max_entries: int = 5
    #: An entry is outsized (a trap entry) when the power-law tail of the layer's own
    #: entries reaches it with probability below this (checks.traps.outsized_entries).
    trap_p: float = 0.001
    #: A trap matters (verdict correlation-trap) when alpha moves by more than this many
    #: of its standard errors without the trap entries, or crosses into or out of
    #: [alpha_low, alpha_high] (checks.traps.trap_matters).
    trap_alpha_shift: float = 2.0
    #: For 16- and 8-bit weights an eigenvalue is numerically zero below this multiple of
    #: the top eigenvalue of the stored values' own rounding noise (F32/F64 follow numpy's
    #: matrix_rank; see linalg.rank.zero_tolerance): a margin for the draw and the power
    #: iteration's ≤ 2.5 % shortfall.
    rank_noise_factor: float = 1.5
    #: A layer is rank-collapsed when more than this share of its eigenvalues is zero
    #: (of those its live channels can carry).
    rank_loss_max: float = 0.1
    #: A row or column (output or input channel) is dead when its norm is at most this
    #: share of the median row's (column's): energy 1e-6 of a typical channel's. CRAFT's
    #: dead channels sit at 1e-7–1.7e-4, its live ones from 0.52 (checks.rank.dead_channels).
    dead_channel_ratio: float = 1e-3
    #: Significance of the sequential dragon-king test (its false-king rate on a layer
    #: without kings).
    dragon_p: float = 0.01
    #: How many of the largest eigenvalues are tested as dragon-king candidates.
    dragon_candidates: int = 5
    #: A reading of alpha is solid only with at least this many eigenvalues in the tail:
    #: fewer leave the KS and likelihood-ratio tests of the exact power law without power,
    #: so a stable alpha of a shorter tail is read as approximate. Read from the old key
    #: ``min-tail`` too.
    trust_min_tail: int = 20
    #: A tail shorter than this gives no reading at all. It equals the fit's own floor
    #: (`AnalysisOptions.min_tail`, ``--min-tail``, 10), so by default it matters only
    #: when that floor is lowered: tails of 10–19 picked by the fit name the true band of
    #: exact power laws as often as longer ones (docs/method/diagnostics.md).
    reading_min_tail: int = 10
    #: Significance level of the fitted-power-law KS test (weightscope.stats.fitted_ks;
    #: its simulated table covers 0.01 … 0.2).
    ks_level: float = 0.05
    #: xmin is moved up this many candidates to test alpha's stability.
    stability_window: int = 3
    #: ... and alpha is stable when its spread (max − min) over that window is at most this
    #: many of its standard errors (α − 1)/√n_tail. On exact power laws the spread's 99th
    #: percentile is 0.5–0.8 standard errors for tails of 30–50 and falls with the tail
    #: (scripts/measure_readings.py).
    stability_max_se: float = 1.0
    #: An alternative tail (lognormal, exponential) beats the power law when its
    #: log-likelihood ratio favours it with a Vuong p-value below this (Clauset et al. use 0.1).
    llr_p: float = 0.1
    #: alpha below this: over-trained (HTSR).
    alpha_low: float = 2.0
    #: alpha above this: under-trained (HTSR).
    alpha_high: float = 6.0
    #: alpha above this says only "no tail": the layer is random-like, and its alpha is
    #: left out of the robust model figures (median, MAD) and counted instead.
    alpha_random: float = 8.0
    #: The ESD is random-like when its KS distance to the randomised ESD is at most this
    #: (two Gaussian ESDs of M eigenvalues differ by at most ~5/M; trained layers of
    #: all-MiniLM-L6-v2 by 0.1 to 0.85).
    shuffle_ks_max: float = 0.05
    #: ... and only when the MP law also fits its shape: KS distance of the ESD from the
    #: fitted MP law at most this (Gaussian layers: ≤ 0.035 from M = 96 up; trained
    #: layers of the example run: 0.1–0.35; a planted power-law ESD: ≥ 0.3).
    mp_ks_max: float = 0.1
    #: With --randomize, a tail gives no reading when at most this share of it rises above
    #: the largest eigenvalue of the layer's shuffled copy and — for a tail of
    #: ``trust_min_tail`` or more — the copy has a tail of its own that this one sits on
    #: (checks.verdict.reading_problems). Sparse i.i.d. layers: ≤ 0.21 of their tails;
    #: the short tails of four real models read: ≥ 0.41.
    shuffled_above_share: float = 0.25
    #: ... a long tail sits on the copy's when the geometric mean of its eigenvalues over
    #: the copy's at the same ranks lies within [1/this, this]. Sparse i.i.d. layers (0.5–5 %
    #: density, 192 seeded): 0.914–1.109; real layers whose copy has a tail: ≥ 1.207 or ≤ 0.682.
    shuffled_tail_ratio: float = 1.15

    def __post_init__(self) -> None:
        probabilities = (
            "dragon_p",
            "trap_p",
            "dead_channel_ratio",
            "ks_level",
            "llr_p",
            "rank_loss_max",
            "shuffle_ks_max",
            "mp_ks_max",
            "shuffled_above_share",
        )
        for name in probabilities:
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise WeightscopeError(f"threshold {name} must lie strictly between 0 and 1, got {value}")
        if not KS_LEVELS[0] <= self.ks_level <= KS_LEVELS[1]:
            raise WeightscopeError(
                f"threshold ks_level must lie in [{KS_LEVELS[0]}, {KS_LEVELS[1]}] (the range of the "
                f"simulated fitted-KS table), got {self.ks_level}"
            )
        for name in ("trap_max_entries", "dragon_candidates", "trust_min_tail", "reading_min_tail", "stability_window"):
            if getattr(self, name) < 1:
                raise WeightscopeError(f"threshold {name} must be at least 1, got {getattr(self, name)}")
        for name in ("tw_margin", "trap_sigmas", "trap_alpha_shift", "rank_noise_factor", "stability_max_se"):
            if getattr(self, name) < 0:
                raise WeightscopeError(f"threshold {name} must not be negative, got {getattr(self, name)}")
        if self.shuffled_tail_ratio < 1.0:
            raise WeightscopeError(f"threshold shuffled_tail_ratio must be at least 1, got {self.shuffled_tail_ratio}")
        if not 1.0 <= self.alpha_low < self.alpha_high:
            raise WeightscopeError(
                f"thresholds need 1 <= alpha_low < alpha_high, got {self.alpha_low} and {self.alpha_high}"
            )
        if self.alpha_random < self.alpha_high:
            raise WeightscopeError(
                f"thresholds need alpha_high <= alpha_random, got {self.alpha_high} and {self.alpha_random}"
                " (raise alpha_random with alpha_high)"
            )

    @classmethod
    def recorded(cls, options: dict[str, Any]) -> Thresholds:
        """The thresholds a report was made with (its ``options["thresholds"]``).

        Every view reads the band from here, never from a constant, so a report made with
        ``alpha_high=2.5`` is coloured, counted and drawn with 2.5. A field an older report
        did not record keeps its default; a field this version does not know is ignored.
        """
        recorded = options.get("thresholds")
        if isinstance(recorded, Thresholds):
            return recorded
        if not isinstance(recorded, dict):
            return cls()
        known = {k: v for k, v in recorded.items() if _RENAMED.get(k, k) in _THRESHOLD_HINTS}
        return cls(**_checked(known, "the report's recorded thresholds"))


_THRESHOLD_HINTS: dict[str, Any] = typing.get_type_hints(Thresholds)
#: Keys renamed since: the old spelling still reads (``min-tail`` named the trust floor
#: and the fit's floor alike; ``rand-distance-max`` bounded the same KS distance, named
#: ``rand_distance`` before that name went to WeightWatcher's Jensen–Shannon distance).
_RENAMED = {"min_tail": "trust_min_tail", "rand_distance_max": "shuffle_ks_max"}
#: Keys whose meaning changed, so that an old value would now mean something else: an
#: error says what replaced them (recorded thresholds of old reports skip them).
_RETIRED = {"alpha_spread_max": "stability-max-se, in units of alpha's standard error (α − 1)/√n_tail"}


def load_thresholds(pyproject_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Thresholds:
    """Defaults, then ``[tool.weightscope]`` of ``pyproject_path``, then ``overrides``.

    Keys may be spelt with underscores or hyphens (``alpha-high``). Nested tables under
    ``[tool.weightscope]`` (e.g. ``[tool.weightscope.gate]``) belong to other commands and
    are left alone; any other unknown key is an error, so a typo never silently keeps a
    default. Override values of None mean "not given" (an unset CLI option).
    """
    values: dict[str, Any] = {}
    if pyproject_path is not None:
        section = read_tool_section(Path(pyproject_path))
        values.update(_checked(section, f"[tool.weightscope] in {pyproject_path}", skip_tables=True))
    values.update(_checked({k: v for k, v in (overrides or {}).items() if v is not None}, "overrides"))
    return Thresholds(**values)


def read_tool_section(path: Path) -> dict[str, Any]:
    """The ``[tool.weightscope]`` table of a TOML file ({} when it has none): the one
    reader of weightscope's configuration (thresholds here, the gate's rules in
    ``[tool.weightscope.gate]``). Anything that is not a table where a table belongs
    (``tool = "x"``) is a one-line error."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise WeightscopeError("reading pyproject.toml on Python 3.10 needs the 'tomli' package") from None
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise WeightscopeError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise WeightscopeError(f"{path} is not valid TOML: {exc}") from None
    section: Any = data
    for depth, part in enumerate(("tool", "weightscope")):
        section = section.get(part, {})
        if not isinstance(section, dict):
            table = ".".join(("tool", "weightscope")[: depth + 1])
            raise WeightscopeError(f"[{table}] in {path} must be a table, got {section!r}")
    return section


def _checked(raw: dict[str, Any], where: str, *, skip_tables: bool = False) -> dict[str, Any]:
    """Normalise key spelling and check every key names a threshold of the right type."""
    checked: dict[str, Any] = {}
    for key, value in raw.items():
        if skip_tables and isinstance(value, dict):
            continue
        name = str(key).replace("-", "_")
        name = _RENAMED.get(name, name)
        if name in _RETIRED:
            raise WeightscopeError(f"threshold {key!r} in {where} was replaced by {_RETIRED[name]}")
        if name not in _THRESHOLD_HINTS:
            known = ", ".join(sorted(_THRESHOLD_HINTS))
            raise WeightscopeError(f"unknown threshold {key!r} in {where} (known: {known})")
        checked[name] = coerce(f"threshold {name}", _THRESHOLD_HINTS[name], value, where)
    return checked


def coerce(name: str, hint: Any, value: Any, where: str) -> Any:
    """``value`` as the type ``hint`` (bool, int, float, or one of them | None), or a
    one-line error naming ``name`` and ``where`` it came from.

    Strings are parsed (``--set key=value``, flags): "true"/"false" for a bool, numbers
    otherwise. NaN is never a number here: every comparison with it is False, so a NaN
    limit would silently pass everything. +inf turns an optional limit off (None); an
    infinite required number is an error.
    """
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next(arg for arg in args if arg is not type(None)) if optional else hint
    if isinstance(value, str):
        value = _parsed(value.strip(), base)
    if base is bool:
        if isinstance(value, bool):
            return value
        raise WeightscopeError(f"{name} in {where} must be true or false, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WeightscopeError(f"{name} in {where} must be a number, got {value!r}")
    if math.isnan(value):
        raise WeightscopeError(f"{name} in {where} must be a number, got NaN")
    if math.isinf(value):
        if optional and value > 0:
            return None
        raise WeightscopeError(f"{name} in {where} cannot be {value} (inf only turns an optional limit off)")
    if base is int:
        if not float(value).is_integer():
            raise WeightscopeError(f"{name} in {where} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def _parsed(text: str, base: type) -> Any:
    if base is bool:
        return {"true": True, "false": False}.get(text.lower(), text)
    try:
        return float(text)
    except ValueError:
        return text
