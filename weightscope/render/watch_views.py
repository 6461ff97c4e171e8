"""What `weightscope watch` writes per checkpoint: a line, a JSON-lines log, TensorBoard.

The log and the event file are only ever appended to (a new event file per watch, as
TensorBoard's writers name them uniquely): a watch never rewrites what was there.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from weightscope.commands.watch import CheckpointEvent
from weightscope.errors import WeightscopeError, install_hint, one_line


def event_line(event: CheckpointEvent) -> str:
    """One line: step, checkpoint, where its report came from, headline figures, alerts."""
    step = "step ?" if event.step is None else f"step {event.step}"
    name = Path(event.path).name
    if event.origin == "incomplete":
        return one_line(f"{step}  {name}  incomplete: still being written or unreadable, not analysed")
    figures = [
        f"{label} {value:.3g}"
        for label, value in (
            ("alpha median", event.alpha_median),
            ("logit bound", event.logit_bound_max),
            ("intrinsic dim", event.intrinsic_dimension),
        )
        if value is not None
    ]
    alerts = "; ".join(f"{a.flag} ({a.subject})" for a in event.alerts) or "no alerts"
    return one_line(f"{step}  {name}  {event.origin}  {'  '.join(figures)}  {alerts}")


def append_log(path: str | os.PathLike[str], events: list[CheckpointEvent]) -> None:
    """Append one JSON object per event (with the wall-clock time) to ``path``."""
    if not events:
        return
    now = time.time()
    text = "".join(json.dumps({"time": now, **event.to_dict()}, allow_nan=False) + "\n" for event in events)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)
    except OSError as exc:
        raise WeightscopeError(f"cannot write {path}: {exc.strerror or exc}") from None


def read_log(path: str | os.PathLike[str]) -> list[CheckpointEvent]:
    """The events of a JSON-lines log (`append_log`); a torn last line is left out."""
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            events.append(CheckpointEvent.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue
    return events


class TensorBoardEvents:
    """Each event's `CheckpointEvent.metrics` as scalars at its step, in a new event file
    in ``directory`` (needs the ``tensorboard`` package: the ``tensorboard`` extra)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        try:
            from tensorboard.compat.proto.event_pb2 import Event
            from tensorboard.compat.proto.summary_pb2 import Summary
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError:
            raise WeightscopeError(
                f"--tensorboard needs the tensorboard package: {install_hint('tensorboard')}"
            ) from None
        if Path(directory).exists() and not Path(directory).is_dir():
            raise WeightscopeError(f"--tensorboard {directory}: not a directory")
        self._event, self._summary = Event, Summary
        self._writer = EventFileWriter(str(directory))

    def add(self, events: list[CheckpointEvent]) -> None:
        for event in events:
            values = [self._summary.Value(tag=tag, simple_value=value) for tag, value in event.metrics().items()]
            if values:
                self._writer.add_event(
                    self._event(wall_time=time.time(), step=event.step or 0, summary=self._summary(value=values))
                )
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
