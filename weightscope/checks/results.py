"""The diagnostic result types: what each check finds on one layer (fields of `LayerResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from weightscope.stats.initialization import InitMatch
from weightscope.stats.likelihood import LikelihoodRatio
from weightscope.stats.randmat import MPBulk
from weightscope.stats.vectors import VectorStats


@dataclass(frozen=True)
class TrapEntry:
    """One stored weight that drives a correlation trap (indices into the tensor as stored)."""

    row: int
    col: int
    value: float
    sigmas: float
    #: the entry alone makes an eigenvalue above the MP bulk edge (see outsized_entries)
    dominant: bool = False


@dataclass(frozen=True)
class Traps:
    """Correlation traps: eigenvalues of the element-wise randomised W above the MP edge."""

    count: int
    max_rand_eval: float
    bulk_edge: float
    entries: list[TrapEntry] = field(default_factory=list)
    #: alpha refitted with the trap entries replaced by the median entry (None: no trap,
    #: or no fit without them)
    alpha_without: float | None = None
    #: survival exponent of the entries' own tail (Hill's estimate; see outsized_entries)
    entry_tail_index: float | None = None
    #: λmax with the entries replaced by the median entry (None: no entries)
    lambda_max_without: float | None = None
    #: the entries make the spectrum's top: without them λmax drops by more than
    #: ``tw_margin`` Tracy–Widom scales, to within the MP bulk edge (see trap_matters)
    makes_spike: bool = False


@dataclass(frozen=True)
class RankInfo:
    """Numerical rank relative to λmax and the stored dtype's precision, and dead channels.

    ``rank_loss`` is the share of all eigenvalues at numerical zero; ``collapsed`` is
    judged on the live channels (``rank_loss_live``): channels that are zero to
    ``dead_channel_ratio`` of a typical channel's norm — ``dead_rows`` (output channels,
    dim 0 as stored) and ``dead_cols`` (input channels, dim 1) — are their own finding,
    not a collapse of the rest.
    """

    numerical_rank: int
    rank_loss: float
    collapsed: bool
    dead_rows: list[int] = field(default_factory=list)
    dead_cols: list[int] = field(default_factory=list)
    rank_loss_live: float | None = None


@dataclass(frozen=True)
class DragonKings:
    """Eigenvalues far beyond what the fitted tail predicts, and alpha refitted without them."""

    count: int
    alpha_without: float | None


@dataclass(frozen=True)
class FitTrust:
    """The statistics behind the reading of a layer's alpha (`reading_problems`).

    ``tail_ok``: the tail is large enough for the exact power law to be tested
    (``trust_min_tail``); ``ks_ok``: the KS test does not reject it; ``stable``: alpha
    stays within ``stability_max_se`` standard errors as xmin moves up
    (``alpha_spread``, `alpha_spread`); ``vs_lognormal``/``vs_exponential``: Vuong tests
    against the alternatives. Whether the layer has a reading is
    `LayerResult.has_reading`, decided once from these.
    """

    tail_ok: bool
    ks_ok: bool
    stable: bool
    alpha_spread: float | None
    vs_lognormal: LikelihoodRatio | None
    vs_exponential: LikelihoodRatio | None
    #: two-sided KS distance of the tail from the fitted law, and the critical value of
    #: the fitted-and-searched statistic it was held against (`stats.fitted_ks`)
    ks_distance: float | None = None
    ks_critical: float | None = None
    #: how many tail eigenvalues lie above the largest eigenvalue of the layer's
    #: element-wise shuffled copy (None: not randomised); a tail needs more than a share of
    #: them there to be read (`reading_problems`)
    tail_above_shuffled: int | None = None
    #: geometric mean of the tail's eigenvalues over the shuffled copy's at the same ranks
    #: (`checks.tail.ratio_to_shuffled`; None: not randomised)
    tail_over_shuffled: float | None = None
    #: whether the shuffled copy's largest eigenvalue clears the copy's own MP edge: the
    #: entries alone make a tail (None: not randomised)
    shuffled_beyond_mp: bool | None = None


@dataclass(frozen=True)
class Diagnostics:
    """Everything `diagnose` says about one layer; field names match `LayerResult`'s.

    ``dataclasses.replace(layer, **vars(diagnostics))`` fills a layer's diagnostics.
    """

    mp: MPBulk | None
    shuffle_ks_distance: float | None
    traps: Traps | None
    rank: RankInfo | None
    dragon_kings: DragonKings | None
    fit_trust: FitTrust | None
    vectors: VectorStats | None
    verdict: str
    flags: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    confidence: str | None = None
    advice: str = ""
    #: the initialiser a random-like layer's entries match (None: no match, or not random-like)
    init: InitMatch | None = None
