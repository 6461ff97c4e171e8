"""The local runner: a batch's ``finish`` runs once, alongside its units, under the budget."""

import threading

from weightscope.execution.plan import Execution
from weightscope.execution.runner import LocalBatch, run_batches


def _run(batch: LocalBatch, progress=None) -> tuple[list, object]:
    (ran,) = list(_batches(batch, progress))
    return ran


def _batches(batch: LocalBatch, progress):
    from contextlib import nullcontext

    for ran in run_batches(1, Execution(), local=lambda index: nullcontext(batch), remote=None, progress=progress):
        yield list(ran.results), ran.finish()


def test_finish_starts_first_on_a_worker_while_the_units_run() -> None:
    started = threading.Event()
    seen_while_finishing: list[bool] = []

    def finish() -> str:
        started.set()
        return "measures"

    def compute(unit: int, loaded: int) -> int:
        # every unit waits until the finish has started: it must not be queued behind them
        seen_while_finishing.append(started.wait(timeout=10))
        return loaded * 2

    batch = LocalBatch(list(range(6)), lambda unit: unit, compute, workers=2, finish=finish)
    results, extra = _run(batch)
    assert results == [0, 2, 4, 6, 8, 10]
    assert extra == "measures"
    assert all(seen_while_finishing)


def test_finish_runs_once_and_progress_counts_only_the_units() -> None:
    calls: list[int] = []
    counts: list[int] = []
    batch = LocalBatch(
        [3, 1, 2],
        lambda unit: unit,
        lambda unit, loaded: loaded,
        workers=2,
        finish=lambda: calls.append(1) or len(calls),
    )
    results, extra = _run(batch, progress=lambda done, units: counts.append(done))
    assert results == [3, 1, 2]
    assert extra == 1 and calls == [1]
    assert counts == [0, 1, 2, 3]


def test_finish_is_held_to_the_budget() -> None:
    """A finish as costly as the whole budget never runs beside a unit; units (half the
    budget each) run in pairs."""
    running: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    lock = threading.Lock()

    def busy(what: str) -> None:
        with lock:
            running.append(what)
            overlaps.append(tuple(sorted(running)))
        threading.Event().wait(0.05)
        with lock:
            running.remove(what)

    batch = LocalBatch(
        list(range(4)),
        lambda unit: unit,
        lambda unit, loaded: busy("unit"),
        workers=2,
        cost=lambda unit: 1.0,
        budget=2.0,
        finish=lambda: busy("finish"),
        finish_cost=2.0,
    )
    _run(batch)
    assert ("finish",) in overlaps and ("unit", "unit") in overlaps
    assert not [seen for seen in overlaps if "finish" in seen and len(seen) > 1]


def test_a_finish_without_units_still_runs() -> None:
    results, extra = _run(LocalBatch([], lambda unit: unit, lambda unit, loaded: loaded, workers=2, finish=lambda: 7))
    assert results == [] and extra == 7
