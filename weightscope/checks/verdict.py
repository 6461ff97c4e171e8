"""The judge: from every check's result, the verdict, the flags with one reason each, and how
sure the reading of alpha is (`decide`, `reading_problems`)."""

from __future__ import annotations

from dataclasses import dataclass

from weightscope import vocabulary
from weightscope.checks.results import DragonKings, FitTrust, RankInfo, Traps
from weightscope.checks.traps import trap_matters
from weightscope.config import Thresholds
from weightscope.stats.fit import PowerLawFit
from weightscope.stats.initialization import InitMatch
from weightscope.stats.likelihood import LikelihoodRatio
from weightscope.stats.randmat import MPBulk


def _alternative_wins(test: LikelihoodRatio, thresholds: Thresholds) -> bool:
    return test.R < 0 and test.p < thresholds.llr_p


@dataclass(frozen=True)
class Decision:
    """What `decide` concludes: the verdict, every flag with one reason each (reasons[0]
    explains the verdict), and how sure the reading of alpha is (None: no reading)."""

    verdict: str
    flags: list[str]
    reasons: list[str]
    confidence: str | None


def reading_problems(
    fit: PowerLawFit, mp: MPBulk | None, trust: FitTrust | None, thresholds: Thresholds
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Why alpha has no reading, and why its reading is only approximate, as (flag, reason)
    pairs (flags of `vocabulary.NO_READING_FLAGS` and `vocabulary.APPROXIMATE_FLAGS`).

    No reading only where alpha carries no information: no fit, a tail that is the bulk's
    edge (it starts inside the bulk of an MP-shaped ESD and most of it lies there: a tail
    of mostly spikes above the edge is read, even when the fit starts a little below it),
    a tail below ``reading_min_tail``, alpha unstable beyond its own error, or — with
    ``--randomize`` — a tail that is the layer's element-wise shuffled copy's
    (`shuffled_tail`): the entries' spread, which the shuffle keeps, makes such a tail.
    A tail the exact power law does not describe — rejected by KS, beaten by a lognormal or an exponential, or
    too small (below ``trust_min_tail``) for those tests to have power — still has a
    reading: alpha summarises a heavy tail, which is how HTSR uses it, so the reading is
    "approximate". Rates on planted spectra and real models: docs/method/diagnostics.md.
    Without ``mp`` (a bare spectrum, no shape) the bulk edge is not judged.
    """
    if fit.status != "ok":
        return [("fit-failed", f"No power law could be fitted: {fit.reason}.")], []
    none: list[tuple[str, str]] = []
    # tail values ≤ the edge, when xmin < edge
    inside = int(fit.num_tail or 0) - mp.spikes_above_edge if mp is not None else 0
    if (
        mp is not None
        and mp.ks <= thresholds.mp_ks_max
        and fit.xmin < mp.bulk_edge
        and 2 * inside > (fit.num_tail or 0)
    ):
        none.append(
            (
                "bulk-edge-tail",
                f"The fitted tail starts at {fit.xmin:.3g}, inside the Marchenko–Pastur bulk (edge "
                f"{mp.bulk_edge:.3g}) of an MP-shaped ESD, and {inside} of its {fit.num_tail} values lie in the "
                "bulk: it is the bulk's edge, not a power-law tail.",
            )
        )
    if fit.num_tail is not None and fit.num_tail < thresholds.reading_min_tail:
        none.append(("tiny-tail", f"The tail holds only {fit.num_tail} eigenvalues (< {thresholds.reading_min_tail})."))
    if trust is None:
        return none, []
    if not trust.stable:
        spread = "undefined" if trust.alpha_spread is None else f"{trust.alpha_spread:.2f}"
        none.append(
            (
                "unstable-alpha",
                f"alpha moves by {spread} when xmin moves up {thresholds.stability_window} candidates, more than "
                f"{thresholds.stability_max_se:g} × its standard error {fit.sigma or 0.0:.2f}.",
            )
        )
    shuffled = shuffled_tail(fit, trust, thresholds)
    if shuffled is not None:
        none.append(("shuffled-tail", shuffled))
    approximate: list[tuple[str, str]] = []
    if not trust.tail_ok:
        approximate.append(
            (
                "small-tail",
                f"The tail holds {fit.num_tail} eigenvalues (< {thresholds.trust_min_tail}): "
                "too few to test the exact power law.",
            )
        )
    if not trust.ks_ok:
        approximate.append(
            (
                "ks-reject",
                f"KS distance {trust.ks_distance:.3f} exceeds the {thresholds.ks_level:.0%} critical "
                f"value {trust.ks_critical:.3f} of a fitted power law with {fit.num_tail} tail points.",
            )
        )
    for name, test in (("lognormal", trust.vs_lognormal), ("exponential", trust.vs_exponential)):
        if test is not None and _alternative_wins(test, thresholds):
            approximate.append(
                (
                    f"{name}-better",
                    f"A {name} tail fits better than the power law (R = {test.R:.2f}, p = {test.p:.3f}).",
                )
            )
    return none, approximate


def shuffled_tail(fit: PowerLawFit, trust: FitTrust, thresholds: Thresholds) -> str | None:
    """Why the tail is the shuffled copy's (None: it is not, or there is no copy).

    With ``--randomize``, a tail of which at most ``shuffled_above_share`` rises above the
    largest eigenvalue of the layer's element-wise shuffled copy is the entries' doing, not
    learned correlations, when it is short (below ``trust_min_tail``), or when it is long
    and sits on a tail the copy has too: the copy rises above its own MP edge and the
    tail's eigenvalues over the copy's at the same ranks have a geometric mean within
    [1/``shuffled_tail_ratio``, ``shuffled_tail_ratio``].

    Measured (seeded; docs/method/diagnostics.md): sparse i.i.d. layers (0.5, 1, 2, 5 %
    density, 96 at 512×256, 400², 300×150 and 96 at 512², 768×3072, 1024×256) have 0–21 %
    of their tails above their copy's top, and every copy rises above its edge; their
    ratios lie in 0.914–1.109. Before this rule, 46 of the 96 at 0.5–1 % density and 10 of
    the 48 at 2 % read alpha from tails of 20–133 values (a few nonzero entries per row make a heavy
    ESD of their own, which the shuffle keeps); now none does. The short tails read on
    all-MiniLM-L6-v2, SmolLM2-135M, CRAFT and english_g2 have 41–100 % above their copy's
    top. Of their long tails with few values above it, those whose copy has a tail too
    (outsized entries: MiniLM's outlier-dimension output.dense, SmolLM2's blk.0.attn_output
    and blk.27.ffn_gate, CRAFT's basenet.slice1.7) do not sit on it: ratios 1.207–1.777,
    or 0.682 (a few eigenvalues far above the copy's, the rest under it). The copy's own
    tail is needed: without it the ratio alone would take CRAFT's upconv4.conv.0 (3 of 25
    above, ratio 1.04, its copy at 0.86 of its edge), a trained layer that keeps its reading.
    """
    above, num_tail = trust.tail_above_shuffled, int(fit.num_tail or 0)
    if above is None or above > thresholds.shuffled_above_share * num_tail:
        return None
    rises = f"Only {above} of the tail's {num_tail} eigenvalues rise above the largest of the layer's shuffled copy"
    if not trust.tail_ok:
        return f"{rises}: the entries' spread makes this short tail, not learned correlations."
    ratio, limit = trust.tail_over_shuffled, thresholds.shuffled_tail_ratio
    if not trust.shuffled_beyond_mp or ratio is None or not 1.0 / limit <= ratio <= limit:
        return None
    return (
        f"{rises}, which has a tail of its own beyond its MP edge, and the tail sits on the copy's "
        f"(eigenvalues {ratio:.2f}× the copy's at the same ranks, within {limit:g}×): the entries make it "
        "(sparse or heavy-tailed entries), not learned correlations."
    )


def reading_confidence(
    fit: PowerLawFit, mp: MPBulk | None, trust: FitTrust | None, thresholds: Thresholds
) -> str | None:
    """How sure the reading of alpha is: "solid", "approximate", or None for no reading
    (`reading_problems`)."""
    none, approximate = reading_problems(fit, mp, trust, thresholds)
    return None if none else "approximate" if approximate else "solid"


def decide(
    fit: PowerLawFit,
    mp: MPBulk,
    shuffle_ks_distance: float | None,
    traps: Traps | None,
    rank: RankInfo,
    kings: DragonKings | None,
    trust: FitTrust | None,
    *,
    stored_dtype: str,
    thresholds: Thresholds,
    like_shuffled: bool = False,
    init: InitMatch | None = None,
) -> Decision:
    """The verdict, every flag raised with one sentence each, and the reading's confidence.

    Precedence (`vocabulary.VERDICTS`) puts first what makes alpha meaningless: a
    collapsed rank or a correlation trap produce a small alpha by themselves; a
    random-like ESD (nothing above the MP edge, and MP-shaped or within
    ``shuffle_ks_max`` of its randomised copy) has no learned tail to fit — a layer
    with a spike above the edge is never random-like, so ``--randomize`` cannot turn one
    random-like. Then "no reading" where alpha carries no information
    (`reading_problems`), and only then the HTSR reading of alpha (< alpha_low
    over-trained, > alpha_high under-trained, else healthy), solid or approximate.
    Dragon kings and the reasons a reading is approximate only inform; they never change
    the verdict. Flags come in precedence order with one reason each, so reasons[0]
    explains the verdict; a healthy verdict gets its own first reason.
    """
    raised: list[tuple[str, str, str]] = []  # (verdict it leads to, flag, reason)
    dead = rank.dead_rows or rank.dead_cols
    if rank.collapsed:
        rest = (
            f"; {rank.rank_loss_live:.0%} of what the live channels can carry"
            if dead and rank.rank_loss_live is not None
            else ""
        )
        raised.append(
            (
                "rank-collapsed",
                "rank-collapsed",
                f"{rank.rank_loss:.0%} of the eigenvalues are numerically zero at {stored_dtype} precision "
                f"(numerical rank {rank.numerical_rank}){rest}.",
            )
        )
    if dead:
        raised.append(("", "dead-channels", _dead_reason(rank, thresholds)))
    if traps is not None and traps.entries:
        reason = _entries_reason(traps, fit)
        if trap_matters(traps, fit, mp, shuffle_ks_distance, thresholds):
            raised.append(("correlation-trap", "correlation-trap", reason + "."))
        else:
            raised.append(("", "outsized-entries", reason + ": they do not change the reading of the spectrum."))
    mp_shaped = mp.ks <= thresholds.mp_ks_max
    spectrum = None
    if mp.spikes_above_edge == 0 and mp_shaped:
        spectrum = (
            f"The ESD is Marchenko–Pastur shaped (KS distance {mp.ks:.3f}) and no eigenvalue rises above its bulk edge"
        )
    elif (
        mp.spikes_above_edge == 0
        and shuffle_ks_distance is not None
        and shuffle_ks_distance <= thresholds.shuffle_ks_max
    ):
        spectrum = (
            f"The ESD is within KS distance {shuffle_ks_distance:.3f} of its shuffled copy (≤ "
            f"{thresholds.shuffle_ks_max}) and no eigenvalue rises above the MP edge"
        )
    elif like_shuffled:
        spectrum = (
            f"The ESD is within KS distance {shuffle_ks_distance:.3f} of its shuffled copy (≤ "
            f"{thresholds.shuffle_ks_max}) and its largest eigenvalue no higher than the copy's"
        )
    if spectrum is not None and init is not None:
        raised.append(
            (
                "looks-untrained",
                "looks-untrained",
                f"{spectrum}, and the entries look like an initial draw: {init.name}, std {init.std:.3g} "
                f"(KS distance {init.ks:.3f} from its {init.law} law): the layer looks untrained or reset.",
            )
        )
    if spectrum is not None:
        raised.append(
            (
                "random-like",
                "random-like",
                f"{spectrum}: the spectrum cannot be told from a random matrix's, and alpha says nothing. "
                f"This describes the spectrum only; learned structure can still sit in the singular vectors.",
            )
        )
    none, approximate = reading_problems(fit, mp, trust, thresholds)
    raised.extend((vocabulary.NO_READING, flag, reason) for flag, reason in none)
    raised.extend(("", flag, reason) for flag, reason in approximate)
    confidence = None if none else "approximate" if approximate else "solid"
    if fit.status == "ok":
        if fit.alpha < thresholds.alpha_low:
            raised.append(
                (
                    "over-trained",
                    "alpha-low",
                    f"alpha = {fit.alpha:.2f} < {thresholds.alpha_low:g}: a very heavy tail, possibly over-fit.",
                )
            )
        elif fit.alpha > thresholds.alpha_high:
            raised.append(
                (
                    "under-trained",
                    "alpha-high",
                    f"alpha = {fit.alpha:.2f} > {thresholds.alpha_high:g}: little learned structure.",
                )
            )
    if kings is not None and kings.count:
        without = f"{kings.alpha_without:.2f}" if kings.alpha_without is not None else "not fittable"
        raised.append(
            (
                "",
                "dragon-kings",
                f"{kings.count} eigenvalue(s) lie far beyond the fitted tail; alpha without them is {without}.",
            )
        )
    raised.sort(key=lambda item: vocabulary.precedence(item[0]) if item[0] else len(vocabulary.VERDICTS))
    flags, reasons = [flag for _, flag, _ in raised], [reason for _, _, reason in raised]
    if raised and raised[0][0]:
        # a verdict that precedes "no reading" says alpha is meaningless here (a collapsed
        # rank or a trap make it small, a random-like spectrum has no tail): no reading
        verdict = raised[0][0]
        unread = vocabulary.precedence(verdict) < vocabulary.precedence(vocabulary.NO_READING)
        return Decision(verdict, flags, reasons, None if unread else confidence)
    how = (
        "a solid fit"
        if confidence == "solid"
        else "an approximate fit: alpha is stable, the tail not exactly a power law"
    )
    healthy = (
        f"alpha = {fit.alpha:.2f} ± {fit.sigma or 0.0:.2f} lies in [{thresholds.alpha_low:g}, "
        f"{thresholds.alpha_high:g}] ({how})."
    )
    return Decision("healthy", flags, [healthy, *reasons], confidence)


def _entries_reason(traps: Traps, fit: PowerLawFit) -> str:
    listed = "; ".join(f"({e.row}, {e.col}) = {e.value:.3g}, {e.sigmas:.0f}σ" for e in traps.entries)
    alpha = f"{fit.alpha:.2f}" if fit.status == "ok" else "not fittable"
    without = f"{traps.alpha_without:.2f}" if traps.alpha_without is not None else "not fittable"
    lam = f"{traps.lambda_max_without:.3g}" if traps.lambda_max_without is not None else "—"
    shuffled = (
        f"{traps.count} eigenvalue(s) of the shuffled matrix stay above its MP edge "
        f"({traps.max_rand_eval:.3g} > {traps.bulk_edge:.3g})"
        if traps.count
        else "the shuffled matrix stays within its MP edge"
    )
    return (
        f"{len(traps.entries)} outsized weight(s), in robust sigmas from the median: {listed}; {shuffled}; "
        f"without them λmax is {lam} and alpha at the same xmin {without} (now {alpha})"
    )


def _dead_reason(rank: RankInfo, thresholds: Thresholds) -> str:
    parts = [
        f"{len(found)} {what} ({_indices(found)})"
        for found, what in ((rank.dead_cols, "input channels (columns)"), (rank.dead_rows, "output channels (rows)"))
        if found
    ]
    live = (
        ""
        if rank.collapsed or rank.rank_loss_live is None
        else (f"; the rest is not collapsed ({rank.rank_loss_live:.0%} of its eigenvalues at zero)")
    )
    return (
        f"{' and '.join(parts)} are zero to {thresholds.dead_channel_ratio:g} of a typical channel's norm: "
        f"dead channels, {rank.rank_loss:.0%} of the eigenvalues at zero because of them{live}."
    )


def _indices(found: list[int], shown: int = 8) -> str:
    listed = ", ".join(str(i) for i in found[:shown])
    return listed + (f", … {len(found) - shown} more" if len(found) > shown else "")
