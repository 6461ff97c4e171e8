"""`WeightscopeCallback` for the Hugging Face `transformers` Trainer (the ``transformers`` extra).

    monitor = WeightscopeCallback(every=50, stop_on=["logit-growth"])
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[monitor])
    monitor.attach(trainer)
    trainer.train()

Metrics go out through ``trainer.log``: into ``state.log_history`` and to every logger
the run reports to (``report_to``: TensorBoard, Weights & Biases, MLflow, …), as
``weightscope/…``. Reporters receive a log through the Trainer's callback handler, which
a callback cannot reach; without `attach` the metrics still reach ``state.log_history``
(and the logs of the callbacks listed after this one), not the reporters. The checkpoints
saved under ``args.output_dir`` are analysed in the background
(`weightscope.integrations._monitor`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from weightscope.errors import install_hint
from weightscope.integrations._monitor import DEFAULT_EVERY, Monitor, Outcome

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover - the extra is installed wherever this is tested
    raise ImportError(
        f"weightscope.integrations.transformers needs transformers: {install_hint('transformers')}"
    ) from exc


class WeightscopeCallback(TrainerCallback):
    """In-memory measures every ``every`` optimiser steps, each saved checkpoint analysed in
    the background, alerts as `TrainingAlert` warnings; a flag in ``stop_on`` stops training.
    ``options`` are `Monitor`'s (``analysis=["--executor", "ray"]``, ``heads=``, …)."""

    def __init__(self, every: int = DEFAULT_EVERY, stop_on: Iterable[str] = (), **options: Any) -> None:
        self.monitor = Monitor(every=every, stop_on=stop_on, **options)
        self._trainer: Any = None

    def attach(self, trainer: Any) -> WeightscopeCallback:
        """Log through ``trainer.log`` (reaching its reporters); adds the callback if absent."""
        self._trainer = weakref.ref(trainer)
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    def _emit(self, outcome: Outcome, state: Any, control: Any) -> Any:
        if outcome.metrics:
            trainer = self._trainer() if self._trainer is not None else None
            if trainer is not None:
                trainer.log(dict(outcome.metrics))
            else:
                state.log_history.append({**outcome.metrics, "step": state.global_step})
        if outcome.stop:
            control.should_training_stop = True
        return control

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        if state.is_world_process_zero and model is not None:
            self.monitor.start(model)
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if not state.is_world_process_zero:
            return control
        return self._emit(self.monitor.step(state.global_step), state, control)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.is_world_process_zero:
            self.monitor.saved(args.output_dir)
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if not state.is_world_process_zero:
            return control
        try:
            return self._emit(self.monitor.finish(), state, control)
        finally:
            self.monitor.close()
