"""What both trainer callbacks do, whatever the trainer: the in-memory measures every N
optimiser steps, the saved checkpoints' analysis in a background process, the alerts.

The full analysis of a checkpoint (every layer's ESD and fit) costs seconds to minutes:
it never runs on the training thread. After each save a separate process runs
``weightscope watch RUN_DIR --once`` at a lower CPU priority (``nice``), or on a Ray
cluster when ``executor="ray"``; its per-checkpoint events (``--log``) and the run's trend
report (``--json``, kept beside the checkpoints) are read back when it ends, checked for
at every step at the cost of one ``poll()``. The report cache makes each run analyse only
the checkpoints that are new (the watch's default ``--settle`` waits until a checkpoint is
old enough for the cache to keep its report). A save while one runs is served by one
more run after it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import weightscope
from weightscope.commands.live import LiveMeasures
from weightscope.commands.monitor import ALERT_FLAGS, Alert
from weightscope.commands.watch import ALERT_METRIC, CheckpointEvent
from weightscope.errors import WeightscopeError
from weightscope.render.watch_views import read_log

_log = logging.getLogger("weightscope")

#: Optimiser steps between two in-memory measurements (the overhead it costs is measured
#: by benchmarks/bench_callback.py and given in docs/guide/monitor.md).
DEFAULT_EVERY = 50
#: How much lower the background analysis runs than training (added to its niceness).
NICENESS = 10
#: The trend report a run's analysis keeps current, in its checkpoint directory.
TREND_REPORT = "weightscope-trend.json"


class TrainingAlert(UserWarning):
    """A monitor alert (`weightscope.commands.monitor.ALERT_FLAGS`) raised during training."""


def check_flags(flags: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(flags)
    unknown = sorted(set(chosen) - set(ALERT_FLAGS))
    if unknown:
        raise WeightscopeError(f"stop_on {', '.join(unknown)}: not a flag (one of {', '.join(ALERT_FLAGS)})")
    return chosen


class BackgroundAnalysis:
    """``weightscope watch RUN_DIR --once`` in a separate, lower-priority process."""

    def __init__(self, run_dir: Path, arguments: Sequence[str]) -> None:
        self.run_dir = run_dir
        self._arguments = list(arguments)
        self._scratch = tempfile.TemporaryDirectory(prefix="weightscope-monitor-")
        self._process: subprocess.Popen[bytes] | None = None
        self._again = False
        self._runs = 0
        self._log = Path(self._scratch.name) / "events.jsonl"
        self._errors = Path(self._scratch.name) / "stderr.txt"

    def request(self) -> None:
        """Analyse the run as it is now: start a run, or one more after the current one."""
        if self._process is None:
            self._start()
        else:
            self._again = True

    def _start(self) -> None:
        self._log.unlink(missing_ok=True)
        package_root = str(Path(weightscope.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        command = [
            sys.executable,
            "-m",
            "weightscope",
            "watch",
            str(self.run_dir),
            "--once",
            "--quiet",
            "--log",
            str(self._log),
            "--json",
            str(self.run_dir / TREND_REPORT),
            *self._arguments,
        ]
        with open(self._errors, "wb") as errors:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, env=env
            )
        self._runs += 1
        if hasattr(os, "setpriority"):
            # it may have ended already, or the platform refuses: then it runs at our priority
            with contextlib.suppress(OSError):
                os.setpriority(
                    os.PRIO_PROCESS, self._process.pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)
                )

    @property
    def busy(self) -> bool:
        return self._process is not None

    def poll(self, wait: float | None = 0.0) -> list[CheckpointEvent]:
        """The events of a run that ended (waiting up to ``wait`` seconds; None: until it
        ends); starts the next run when a save came meanwhile."""
        if self._process is None:
            return []
        try:
            code = self._process.wait(wait) if wait != 0.0 else self._process.poll()
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            return []
        self._process = None
        events = read_log(self._log) if self._log.is_file() else []
        if code not in (0, 1):  # 1: not used without --fail-on; anything else: it failed
            lines = self._errors.read_text(errors="replace").strip().splitlines()
            _log.warning(
                "weightscope: the checkpoint analysis of %s failed: %s",
                self.run_dir,
                lines[-1] if lines else f"exit {code}",
            )
        if self._again:
            self._again = False
            self._start()
        return events

    def close(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        self._scratch.cleanup()


@dataclass
class Outcome:
    """What one hook has to pass on to the trainer: metrics to log, alerts, whether to stop."""

    metrics: dict[str, float] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    stop: bool = False


class Monitor:
    """The trainer-independent state of a callback (see the module doc).

    ``every``: optimiser steps between two in-memory measurements; ``stop_on``: the alert
    flags that stop training; ``analyse_checkpoints``: analyse saved checkpoints in the
    background (False: the live measures only); ``heads``/``kv_heads``: the attention
    heads when the model's config does not say; ``spectral_norms``: a regex choosing the
    matrices whose σmax is logged each under its own name (default: every block matrix,
    the block's largest); ``analysis``: extra ``weightscope watch`` options for the
    checkpoints' analysis (``["--executor", "ray"]``, ``["--cache-dir", PATH]``,
    ``["--html", PATH]``); ``wait_at_end``: seconds to wait for it when training ends
    (None: until it is done).
    """

    def __init__(
        self,
        *,
        every: int = DEFAULT_EVERY,
        stop_on: Iterable[str] = (),
        analyse_checkpoints: bool = True,
        heads: int | None = None,
        kv_heads: int | None = None,
        spectral_norms: str | None = None,
        analysis: Sequence[str] = (),
        wait_at_end: float | None = None,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise WeightscopeError(f"every must be a whole number of steps ≥ 1, got {every!r}")
        self.every = every
        self.stop_on = check_flags(stop_on)
        self.analyse_checkpoints = analyse_checkpoints
        self._heads, self._kv_heads = heads, kv_heads
        self._spectral_norms = spectral_norms
        self._analysis = list(analysis)
        self.wait_at_end = wait_at_end
        self._live: LiveMeasures | None = None
        self._background: dict[Path, BackgroundAnalysis] = {}
        self._raised: set[tuple[str, str]] = set()
        self._logged_steps: set[tuple[str, int | None]] = set()
        self.alerts: list[Alert] = []
        self.events: list[CheckpointEvent] = []

    def start(self, model: Any) -> None:
        self._live = LiveMeasures(
            model,
            heads=self._heads,
            kv_heads=self._kv_heads,
            spectral_norms=self._spectral_norms,
        )
        for note in self._live.notes:
            _log.info("weightscope: %s", note)

    def step(self, step: int) -> Outcome:
        """At the end of optimiser step ``step``: measure every N steps, collect finished analyses."""
        outcome = self._collect(self._poll(0.0))
        if self._live is not None and step % self.every == 0:
            outcome.metrics.update(self._live.measure(step))
            self._raise(self._live.alerts(), outcome)
        return outcome

    def saved(self, run_dir: str | os.PathLike[str]) -> None:
        """A checkpoint was written under ``run_dir``: analyse the run in the background."""
        if not self.analyse_checkpoints:
            return
        where = Path(run_dir).resolve()
        if where not in self._background:
            arguments = [*self._analysis]
            live = self._live
            if live is not None and live.heads is not None and "--heads" not in arguments:
                arguments += ["--heads", str(live.heads)] + (
                    ["--kv-heads", str(live.kv_heads)] if live.kv_heads else []
                )
            self._background[where] = BackgroundAnalysis(where, arguments)
        self._background[where].request()

    def finish(self) -> Outcome:
        """At the end of training: wait for the checkpoints' analysis (up to ``wait_at_end``
        seconds; None: until done), then stop the background processes."""
        deadline = None if self.wait_at_end is None else time.monotonic() + self.wait_at_end
        events: list[CheckpointEvent] = []
        while any(b.busy for b in self._background.values()):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            events += self._poll(left)
            if deadline is not None and time.monotonic() >= deadline:
                break
        return self._collect(events)

    def close(self) -> None:
        for background in self._background.values():
            background.close()
        self._background.clear()

    def _poll(self, wait: float | None) -> list[CheckpointEvent]:
        return [event for b in list(self._background.values()) for event in b.poll(wait)]

    def _collect(self, events: list[CheckpointEvent]) -> Outcome:
        """New checkpoint events: the latest one's metrics, and the alerts not raised before
        (``weightscope/alert/<flag>`` counts the new ones)."""
        outcome = Outcome()
        for event in events:
            if (event.path, event.step) in self._logged_steps or event.origin == "incomplete":
                continue
            self._logged_steps.add((event.path, event.step))
            self.events.append(event)
            outcome.metrics.update({k: v for k, v in event.metrics().items() if not k.startswith(ALERT_METRIC)})
            if event.step is not None:
                outcome.metrics["weightscope/checkpoint/step"] = float(event.step)
        self._raise([a for e in events for a in e.alerts], outcome)
        return outcome

    def _raise(self, alerts: list[Alert], outcome: Outcome) -> None:
        for alert in alerts:
            if alert.key in self._raised:
                continue
            self._raised.add(alert.key)
            self.alerts.append(alert)
            outcome.alerts.append(alert)
            key = f"{ALERT_METRIC}{alert.flag}"
            outcome.metrics[key] = outcome.metrics.get(key, 0.0) + 1.0
            warnings.warn(f"weightscope {alert.line()}", TrainingAlert, stacklevel=4)
            outcome.stop = outcome.stop or alert.flag in self.stop_on
