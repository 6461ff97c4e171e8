"""Follow a run directory while it trains: `weightscope watch RUN_DIR`.

Each round lists the checkpoints in the directory (the files and checkpoint directories
`trend` would read), and analyses those that are complete and not yet analysed; the run's
trend (`weightscope.commands.trend.trend_of_run`) is then recomputed over every complete
checkpoint, and each new checkpoint becomes one `CheckpointEvent` with the alerts raised
at it (`weightscope.commands.monitor`). Reports are kept in the report cache (a
temporary one under ``--no-cache``), so a round analyses only the new checkpoints.

A checkpoint is complete when both hold:

- **settled**: no visible file of it (for a directory, every file in it) changed within
  ``settle`` seconds (mtime and ctime), and its files' sizes and times are the same
  after the read below as before it. A writer that pauses longer than ``settle``
  between two chunks passes this test, hence the second one;
- **readable**: its reader opens it and lists its tensors. The readers validate what
  a file promises before reading: a safetensors header's offsets against the file's size,
  a torch zip's central directory (written last), a shard index's every shard. A file
  cut short fails them.

Both are needed: the first alone analyses a file whose writer paused, the second alone a
file whose writer rewrites it in place. The default ``settle`` is the report cache's own
`RACY_SECONDS`: a file that young is not cached (its identity is not yet trustworthy),
so a younger one would be analysed again at every round.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightscope.checkpoint import open_checkpoint
from weightscope.checkpoint.runs import compile_step_pattern, order_run, run_members
from weightscope.commands.monitor import Alert, trend_alerts
from weightscope.config import Thresholds
from weightscope.errors import CheckpointError, WeightscopeError
from weightscope.execution.request import Execution
from weightscope.io import RACY_SECONDS

if TYPE_CHECKING:
    from weightscope.commands.trend import Trend

#: Seconds a checkpoint's files must stay unchanged before it is read (see the module doc).
DEFAULT_SETTLE = RACY_SECONDS
#: The metric counting the alerts of a flag: this prefix and the flag.
ALERT_METRIC = "weightscope/alert/"
#: Seconds between two rounds when following a run.
DEFAULT_INTERVAL = 10.0

#: A file's state: (size, mtime_ns, ctime_ns); a checkpoint's: every visible file's.
Snapshot = tuple[tuple[str, int, int, int], ...]


@dataclass(frozen=True)
class CheckpointEvent:
    """One checkpoint seen by a watch: analysed (``origin`` as in `TrendPoint`), or
    "incomplete" when a ``--once`` pass found it still being written.

    ``alerts`` are those raised at this checkpoint's step (``logit-growth`` at the latest
    checkpoint: it measures the growth now).
    """

    step: int | None
    path: str
    origin: str
    alpha_median: float | None = None
    logit_bound_max: float | None = None
    intrinsic_dimension: float | None = None
    alerts: list[Alert] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """The event as ``weightscope/checkpoint/…`` scalars (what the callbacks and the
        TensorBoard file log), and ``weightscope/alert/<flag>``: the alerts of that flag."""
        values = {
            "alpha_median": self.alpha_median,
            "logit_bound_max": self.logit_bound_max,
            "intrinsic_dimension": self.intrinsic_dimension,
        }
        metrics = {f"weightscope/checkpoint/{name}": float(v) for name, v in values.items() if v is not None}
        for alert in self.alerts:
            key = f"{ALERT_METRIC}{alert.flag}"
            metrics[key] = metrics.get(key, 0.0) + 1.0
        return metrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "path": self.path,
            "origin": self.origin,
            "alpha_median": self.alpha_median,
            "logit_bound_max": self.logit_bound_max,
            "intrinsic_dimension": self.intrinsic_dimension,
            "alerts": [
                {"flag": a.flag, "subject": a.subject, "step": a.step, "message": a.message} for a in self.alerts
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckpointEvent:
        return cls(
            data["step"],
            data["path"],
            data["origin"],
            data.get("alpha_median"),
            data.get("logit_bound_max"),
            data.get("intrinsic_dimension"),
            [Alert(a["flag"], a["subject"], a.get("step"), a["message"]) for a in data.get("alerts", [])],
        )


def snapshot(path: Path) -> Snapshot | None:
    """The state of a checkpoint's files, or None when it cannot be read (gone, moving)."""
    try:
        files = [path] if not path.is_dir() else sorted(p for p in path.iterdir() if not p.name.startswith("."))
        states = []
        for file in files:
            st = file.stat()
            states.append((file.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    except OSError:
        return None
    return tuple(states)


def _age(state: Snapshot, now: float) -> float:
    """Seconds since the youngest change of any file of the checkpoint."""
    return now - max((max(mtime, ctime) / 1e9 for _, _, mtime, ctime in state), default=0.0)


def readable(path: Path) -> bool:
    """Whether the checkpoint's reader opens it and lists its tensors (see the module doc)."""
    try:
        with open_checkpoint(path) as reader:
            return bool(reader.tensors())
    except (CheckpointError, WeightscopeError, OSError):
        return False


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoints in a run directory now (`run_members`; none yet is not an error)."""
    if not run_dir.is_dir():
        raise WeightscopeError(f"{run_dir}: not a directory")
    try:
        return run_members(run_dir)
    except OSError as exc:
        raise WeightscopeError(f"{run_dir}: cannot list: {exc.strerror or exc}") from None


@dataclass
class _Seen:
    state: Snapshot
    analysed: bool = False


class RunWatcher:
    """The state of a watch over one run directory; `poll` runs one round.

    ``options`` are the `AnalysisOptions` fields; ``on_update`` gets the trend after every
    round that analysed something (the CLI writes the JSON/HTML reports there).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        settle: float = DEFAULT_SETTLE,
        step_regex: str | None = None,
        jump_k: float = 5.0,
        min_swing: float = 0.3,
        execution: Execution = Execution(),
        thresholds: Thresholds = Thresholds(),
        on_update: Callable[[Trend], None] | None = None,
        clock: Callable[[], float] = time.time,
        **options: object,
    ) -> None:
        if not settle >= 0:
            raise WeightscopeError(f"settle must be ≥ 0 seconds, got {settle}")
        self.run_dir = Path(run_dir)
        self.settle = settle
        self._pattern = compile_step_pattern(step_regex)
        self._trend_args: dict[str, Any] = {
            "jump_k": jump_k,
            "min_swing": min_swing,
            "thresholds": thresholds,
            **options,
        }
        self._stack = ExitStack()
        if not execution.cache:  # without a cache every round would analyse every checkpoint again
            scratch = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="weightscope-watch-"))
            execution = Execution(**{**execution.__dict__, "cache": True, "cache_dir": scratch})
        self._execution = execution
        self._thresholds = thresholds
        self._on_update = on_update
        self._clock = clock
        self._seen: dict[Path, _Seen] = {}
        self._raised: set[tuple[str, str, int | None]] = set()
        self.trend: Trend | None = None
        self.run_checkpoints()  # a bad directory fails now, not at the first round

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> RunWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_checkpoints(self) -> list[Path]:
        return run_checkpoints(self.run_dir)

    def pending(self) -> list[Path]:
        """Checkpoints seen but not analysed (still being written, or unreadable so far)."""
        return [path for path, seen in self._seen.items() if not seen.analysed]

    def poll(self) -> list[CheckpointEvent]:
        """One round: analyse what became complete; one event per newly analysed checkpoint."""
        now = self._clock()
        ready = []
        present = set()
        for path in self.run_checkpoints():
            present.add(path)
            state = snapshot(path)
            if state is None:
                continue
            seen = self._seen.get(path)
            if seen is None or seen.state != state:  # new, or rewritten since: (re)analysed
                self._seen[path] = seen = _Seen(state)
            if not seen.analysed and _age(state, now) >= self.settle and readable(path) and snapshot(path) == state:
                ready.append(path)
        for gone in set(self._seen) - present:  # deleted (rotated out by save_total_limit)
            del self._seen[gone]
        if not ready:
            return []
        for path in ready:
            self._seen[path].analysed = True
        done = [path for path, seen in self._seen.items() if seen.analysed]
        from weightscope.commands.trend import trend_of_run  # numpy: not for `watch --help`

        self.trend = trend_of_run(order_run(done, self._pattern), execution=self._execution, **self._trend_args)
        if self._on_update is not None:
            self._on_update(self.trend)
        return self._events(set(ready))

    def _events(self, new: set[Path]) -> list[CheckpointEvent]:
        """The new checkpoints' events; an alert not raised before goes to the event of its
        step, else (a jump into an older checkpoint, seen only now) to the latest one."""
        assert self.trend is not None
        points = [point for point in self.trend.checkpoints if Path(point.path) in new]
        alerts: dict[int, list[Alert]] = {index: [] for index in range(len(points))}
        for alert in trend_alerts(self.trend, self._thresholds):
            if (alert.flag, alert.subject, alert.step) in self._raised:
                continue
            self._raised.add((alert.flag, alert.subject, alert.step))
            at = [index for index, point in enumerate(points) if point.step == alert.step]
            alerts[at[0] if at else len(points) - 1].append(alert)
        events = []
        for index, point in enumerate(points):
            attention = point.measures.attention if point.measures is not None else None
            clouds = point.measures.embeddings if point.measures is not None else []
            events.append(
                CheckpointEvent(
                    point.step,
                    point.path,
                    point.origin,
                    point.summary.alpha_median,
                    attention.max if attention is not None else None,
                    clouds[0].twonn if clouds else None,
                    alerts[index],
                )
            )
        return events

    def incomplete(self) -> list[CheckpointEvent]:
        """Events for the checkpoints not analysed (what a ``--once`` pass leaves out)."""
        return [
            CheckpointEvent(entry.step, str(entry.path), "incomplete")
            for entry in order_run(self.pending(), self._pattern)
        ]


def watch_once(watcher: RunWatcher, sleep: Callable[[float], None] = time.sleep) -> list[CheckpointEvent]:
    """Analyse what is complete now and stop (cron, CI).

    If a checkpoint is not complete at the first round (it changed within ``settle``
    seconds, or does not read yet), the pass waits ``settle`` seconds and looks once more.
    What is still incomplete then is reported as such, not analysed.
    """
    events = watcher.poll()
    if watcher.pending():
        sleep(watcher.settle)
        events += watcher.poll()
    return events + watcher.incomplete()


def follow(
    watcher: RunWatcher,
    on_events: Callable[[list[CheckpointEvent]], bool],
    *,
    interval: float = DEFAULT_INTERVAL,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll every ``interval`` seconds until ``on_events`` returns True (a failing flag,
    a caller's stop) or the process is interrupted."""
    if not interval > 0:
        raise WeightscopeError(f"interval must be > 0 seconds, got {interval}")
    while not on_events(watcher.poll()):
        sleep(interval)
