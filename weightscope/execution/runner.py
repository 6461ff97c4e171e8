"""The one runner: work units on local threads or as tasks on a Ray cluster.

`analyze` (the layers of each checkpoint) and `compare` (the matched layer pairs of two
checkpoints) hand their work to `run_batches` as *batches* of units — one batch per
checkpoint, or one for the pair — said once for both places it can run:

- locally, batch after batch: ``local(i)`` opens what batch i reads (a context) and says
  how a unit is loaded (one reader thread, in order) and computed (worker threads), in
  what memory budget (`weightscope.execution.schedule.pipelined`); its ``finish`` (the
  measured tensors of a checkpoint that no layer carries) runs after the batch's units,
  still open;
- on Ray (``Execution.executor == "ray"``): ``remote(ray)`` lists every batch's units up
  front from the headers and names the module-level task that computes one on a worker
  (`weightscope.execution.cluster.run_tasks`); the units of all batches form one pool of
  tasks submitted at once, so a run of 100 checkpoints keeps every node busy instead of
  waiting at each checkpoint's slowest layer. The batches' ``finish`` tasks go first:
  each batch waits for its own, and they are small.

Either way the results come back in unit order, batch by batch, and are the same numbers:
how work runs never changes what it computes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import AbstractContextManager, closing, nullcontext
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from weightscope.execution.cluster import Need, connect, run_tasks
from weightscope.execution.plan import Execution
from weightscope.execution.schedule import pipelined

Unit = TypeVar("Unit")
Loaded = TypeVar("Loaded")
Result = TypeVar("Result")
Extra = TypeVar("Extra")

#: Called with (units done so far, the units of this count): once with 0 first, then
#: after each unit. Locally it counts one batch's units, on Ray all batches' together.
Progress = Callable[[int, Sequence[Any]], None]


@dataclass(frozen=True)
class LocalBatch(Generic[Unit, Loaded, Result, Extra]):
    """One batch as local threads run it."""

    units: Sequence[Unit]
    load: Callable[[Unit], Loaded]
    compute: Callable[[Unit, Loaded], Result]
    workers: int
    cost: Callable[[Unit], float] = lambda unit: 0.0
    budget: float = float("inf")
    finish: Callable[[], Extra] | None = None
    #: the work a unit costs: the largest start first (`pipelined`); None keeps the order
    size: Callable[[Unit], float] | None = None


@dataclass(frozen=True)
class RemoteBatches(Generic[Unit, Result, Extra]):
    """Every batch as Ray tasks: ``task(*args(i, unit))`` computes a unit of batch i on a
    worker, asking for ``need(i, unit)``; ``lost`` stands in for a unit Ray lost.
    ``finish_task(*finish_args(i))`` is batch i's ``finish``."""

    units: list[Sequence[Unit]]
    task: Callable[..., Result]
    args: Callable[[int, Unit], tuple[Any, ...]]
    need: Callable[[int, Unit], Need]
    lost: Callable[[Unit, Exception], Result]
    finish_task: Callable[..., Extra] | None = None
    finish_args: Callable[[int], tuple[Any, ...]] = lambda index: ()
    finish_need: Callable[[int], Need] = lambda index: Need(1)
    finish_lost: Callable[[int, Exception], Extra | None] = lambda index, exc: None


@dataclass(frozen=True)
class Ran(Generic[Result, Extra]):
    """One batch's results (iterate them, in unit order, before asking for the next batch)
    and its ``finish`` (call it after the results)."""

    index: int
    results: Iterator[Result]
    finish: Callable[[], Extra | None]


def run_batches(
    count: int,
    execution: Execution,
    *,
    local: Callable[[int], AbstractContextManager[LocalBatch[Unit, Any, Result, Extra]]],
    remote: Callable[[Any], RemoteBatches[Unit, Result, Extra]],
    progress: Progress | None = None,
) -> Generator[Ran[Result, Extra], None, None]:
    """Run ``count`` batches where ``execution`` says (module docstring). Read each
    batch's results before asking for the next; closing the generator cancels what is
    left."""
    if execution.executor == "ray":
        yield from _on_ray(count, execution, remote, progress)
    else:
        yield from _locally(count, local, progress)


def run_local(batch: LocalBatch[Unit, Loaded, Result, Any], progress: Progress | None = None) -> Iterator[Result]:
    """One batch's units on local threads, in order (`pipelined`)."""
    if progress is not None:
        progress(0, batch.units)
    yield from pipelined(
        batch.units,
        batch.load,
        batch.compute,
        workers=batch.workers,
        cost=batch.cost,
        budget=batch.budget,
        progress=(lambda done: progress(done, batch.units)) if progress is not None else None,
        size=batch.size,
    )


def _locally(
    count: int,
    local: Callable[[int], AbstractContextManager[LocalBatch[Unit, Any, Result, Extra]]],
    progress: Progress | None,
) -> Iterator[Ran[Result, Extra]]:
    for index in range(count):
        with local(index) as batch:
            finish = batch.finish
            yield Ran(index, run_local(batch, progress), finish if finish is not None else lambda: None)


def _on_ray(
    count: int,
    execution: Execution,
    remote: Callable[[Any], RemoteBatches[Unit, Result, Extra]],
    progress: Progress | None,
) -> Iterator[Ran[Result, Extra]]:
    ray = connect(execution.ray_address)
    work = remote(ray)
    placed = [(index, unit) for index, units in enumerate(work.units) for unit in units]
    finished = None
    if work.finish_task is not None:
        finished = run_tasks(
            ray,
            work.finish_task,
            [work.finish_args(index) for index in range(count)],
            [work.finish_need(index) for index in range(count)],
            lost=work.finish_lost,
        )
    everything = [unit for _, unit in placed]
    if progress is not None:
        progress(0, everything)
    results = run_tasks(
        ray,
        work.task,
        [work.args(index, unit) for index, unit in placed],
        [work.need(index, unit) for index, unit in placed],
        lost=lambda position, exc: work.lost(placed[position][1], exc),
        progress=(lambda done: progress(done, everything)) if progress is not None else None,
    )
    with closing(results), closing(finished) if finished is not None else nullcontext():
        for index in range(count):
            batch = itertools.islice(results, len(work.units[index]))
            yield Ran(index, batch, (lambda: next(finished)) if finished is not None else (lambda: None))
