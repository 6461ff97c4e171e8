"""`WeightscopeCallback` for the Lightning Trainer (the ``lightning`` extra).

    trainer = L.Trainer(callbacks=[WeightscopeCallback(every=50, stop_on=["logit-growth"]),
                                   ModelCheckpoint(every_n_train_steps=500, save_top_k=-1)])

Metrics go to every logger of the trainer (``trainer.loggers``: TensorBoard, CSV, Weights
& Biases, MLflow, …) as ``weightscope/…`` at the trainer's global step. The checkpoints
the trainer's `ModelCheckpoint` callbacks write are analysed in the background
(`weightscope.integrations._monitor`); a Lightning ``.ckpt`` carries no ``config.json``,
so the head counts found on the model (or given) are passed to that analysis.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from weightscope.errors import install_hint
from weightscope.integrations._monitor import DEFAULT_EVERY, Monitor, Outcome

try:
    from lightning.pytorch.callbacks import Callback
except ImportError as exc:  # pragma: no cover - the extra is installed wherever this is tested
    raise ImportError(f"weightscope.integrations.lightning needs lightning: {install_hint('lightning')}") from exc


class WeightscopeCallback(Callback):
    """In-memory measures every ``every`` optimiser steps, each saved checkpoint analysed in
    the background, alerts as `TrainingAlert` warnings; a flag in ``stop_on`` sets
    ``trainer.should_stop``. Options as for the transformers callback."""

    def __init__(self, every: int = DEFAULT_EVERY, stop_on: Iterable[str] = (), **options: Any) -> None:
        self.monitor = Monitor(every=every, stop_on=stop_on, **options)
        self._saved = False
        self._last_step = -1

    def _emit(self, trainer: Any, outcome: Outcome) -> None:
        if outcome.metrics:
            for logger in trainer.loggers:
                logger.log_metrics(dict(outcome.metrics), step=trainer.global_step)
        if outcome.stop:
            trainer.should_stop = True

    def _analyse_saved(self, trainer: Any) -> None:
        """Analyse the directories of the checkpoints written since the last hook."""
        if not self._saved:
            return
        self._saved = False
        for checkpoint in trainer.checkpoint_callbacks:
            if getattr(checkpoint, "dirpath", None):
                self.monitor.saved(checkpoint.dirpath)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero:
            self.monitor.start(pl_module)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        self._saved = True  # the file is written right after this hook returns

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step == self._last_step:  # accumulating gradients: no optimiser step
            return
        self._last_step = step
        self._analyse_saved(trainer)
        self._emit(trainer, self.monitor.step(step))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        try:
            self._analyse_saved(trainer)
            self._emit(trainer, self.monitor.finish())
        finally:
            self.monitor.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.monitor.close()
