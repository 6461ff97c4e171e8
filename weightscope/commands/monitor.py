"""What a monitor warns about while a run trains: alerts read from a trend.

`weightscope watch` and the trainer callbacks (`weightscope.integrations`) raise the same
alerts, each a trend flag at a checkpoint (or a live measurement) naming what it is about:

- ``logit-growth``: a block's attention-logit bound grows faster on log-time than the
  other blocks' (`weightscope.commands.trend.attention_series`), the instability
  QK-normalisation was introduced to stop;
- ``jump``: a layer's alpha moved far outside its usual change between two checkpoints
  (`weightscope.commands.trend.find_jumps`);
- ``alpha-band``: a layer whose trusted alpha sat inside [alpha_low, alpha_high] has a
  trusted alpha outside it at a later checkpoint (below: over-fitting; above: drifting
  back towards random);
- ``id-rise``: the token embedding's intrinsic dimension rose suddenly
  (`weightscope.stats.series.sudden_rises`), reported shortly before loss spikes;
- ``rank-collapse``: a layer that was not rank-collapsed at the run's first checkpoint
  is at a later one.

The other trend flags (``fall-then-rise``, ``stuck-random-like``) describe the run as a
whole and stay in the trend report: every run starts random-like, so an alert for it
would fire at the start of every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from weightscope.commands.flags import FLAG_ALPHA_BAND, FLAG_ID_RISE, FLAG_JUMP, FLAG_LOGIT_GROWTH, FLAG_RANK_COLLAPSE
from weightscope.config import Thresholds

if TYPE_CHECKING:  # the trend's types only: `watch --help` lists ALERT_FLAGS without numpy
    from weightscope.commands.trend import AttentionSeries, LayerSeries, Trend


@dataclass(frozen=True)
class FlagAdvice:
    """What a monitor flag means and what to do when it fires."""

    meaning: str
    action: str


#: The alerts a monitor raises, in the order they are listed, with their meaning and advice.
ALERT_FLAGS: dict[str, FlagAdvice] = {
    FLAG_LOGIT_GROWTH: FlagAdvice(
        "a block's attention logits can grow larger, faster than the other blocks' (the bound "
        "‖W_Qᵀ W_K‖₂/√d_h from the weights alone)",
        "lower the learning rate or warm it up longer, add QK-norm or logit soft-capping, "
        "check that block's weight decay; keep the last checkpoint before the growth",
    ),
    FLAG_JUMP: FlagAdvice(
        "a layer's alpha changed between two checkpoints far more than it usually does",
        "look for a loss spike, a restart from the wrong checkpoint or a data change at that step",
    ),
    FLAG_ALPHA_BAND: FlagAdvice(
        "a layer's alpha left the well-trained band: below it the layer may over-fit, above it "
        "it drifts back towards random",
        "below: regularise (weight decay, dropout) or stop earlier; above: check that the layer "
        "still receives gradient (frozen by mistake, learning rate too low)",
    ),
    FLAG_ID_RISE: FlagAdvice(
        "the token embedding's intrinsic dimension rose suddenly",
        "watch the loss over the next steps; lower the learning rate if a spike follows",
    ),
    FLAG_RANK_COLLAPSE: FlagAdvice(
        "a layer lost rank during the run: a share of its directions are numerically zero",
        "check that layer's weight decay and learning rate, and for dead units (zero rows)",
    ),
}


@dataclass(frozen=True)
class Alert:
    """One flag raised at one step about one subject ("block 3", a layer or embedding name)."""

    flag: str
    subject: str
    step: int | None
    message: str

    @property
    def key(self) -> tuple[str, str]:
        """What makes an alert new: its flag and subject (it is raised once)."""
        return self.flag, self.subject

    def line(self) -> str:
        return f"{self.flag}: {self.subject}: {self.message}"


def growth_alerts(series: list[AttentionSeries], step: int | None) -> list[Alert]:
    """``logit-growth`` for each flagged block, raised at ``step`` (growth is measured now)."""
    alerts = []
    for block in series:
        if not block.flagged:
            continue
        known = [b for b in block.bounds if b is not None]
        alerts.append(
            Alert(
                FLAG_LOGIT_GROWTH,
                f"block {block.block}",
                step,
                f"logit bound {known[0]:.3g} → {known[-1]:.3g}, growing {block.growth:.2f} per ln(step) ({block.q})",
            )
        )
    return alerts


def _band_alert(layer: LayerSeries, steps: list[int | None], thresholds: Thresholds) -> Alert | None:
    inside = None
    for index, (alpha, trusted) in enumerate(
        zip(layer.alphas, layer.trusted or [True] * len(layer.alphas), strict=True)
    ):
        if alpha is None or not trusted:
            continue
        if thresholds.alpha_low <= alpha <= thresholds.alpha_high:
            inside = inside if inside is not None else index
        elif inside is not None:
            side = "below" if alpha < thresholds.alpha_low else "above"
            return Alert(
                FLAG_ALPHA_BAND,
                layer.name,
                steps[index],
                f"alpha {layer.alphas[inside]:.2f} at step {steps[inside]} → {alpha:.2f}, {side} "
                f"[{thresholds.alpha_low:g}, {thresholds.alpha_high:g}]",
            )
    return None


def _collapse_alert(layer: LayerSeries, steps: list[int | None]) -> Alert | None:
    judged = [(i, v) for i, v in enumerate(layer.verdicts) if v is not None]
    if not judged or judged[0][1] == "rank-collapsed":
        return None
    index = next((i for i, v in judged if v == "rank-collapsed"), None)
    if index is None:
        return None
    return Alert(FLAG_RANK_COLLAPSE, layer.name, steps[index], f"rank-collapsed at step {steps[index]}")


def trend_alerts(trend: Trend, thresholds: Thresholds = Thresholds()) -> list[Alert]:
    """Every alert of a trend, in checkpoint order within each flag."""
    steps = [point.step for point in trend.checkpoints]
    last = steps[-1] if steps else None
    alerts = growth_alerts(trend.attention, last)
    for layer in trend.layers:
        alerts.extend(
            Alert(FLAG_JUMP, layer.name, jump.step, f"alpha {jump.delta:+.2f} into step {jump.step}")
            for jump in layer.jumps
        )
        alerts.extend(
            found for found in (_band_alert(layer, steps, thresholds), _collapse_alert(layer, steps)) if found
        )
    for cloud in trend.embeddings:
        for at in cloud.rises:
            before = next(v for v in reversed(cloud.twonn[:at]) if v is not None)
            alerts.append(
                Alert(
                    FLAG_ID_RISE,
                    cloud.name,
                    steps[at],
                    f"intrinsic dimension {before:.1f} → {cloud.twonn[at]:.1f} at step {steps[at]}",
                )
            )
    order = list(ALERT_FLAGS)
    return sorted(alerts, key=lambda alert: order.index(alert.flag))
