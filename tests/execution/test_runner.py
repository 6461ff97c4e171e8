"""The local runner: a batch's ``finish`` runs once, after its units."""

from weightscope.execution.plan import Execution
from weightscope.execution.runner import LocalBatch, run_batches


def _run(batch: LocalBatch, progress=None) -> tuple[list, object]:
    (ran,) = list(_batches(batch, progress))
    return ran


def _batches(batch: LocalBatch, progress):
    from contextlib import nullcontext

    for ran in run_batches(1, Execution(), local=lambda index: nullcontext(batch), remote=None, progress=progress):
        yield list(ran.results), ran.finish()


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


def test_a_finish_without_units_still_runs() -> None:
    results, extra = _run(LocalBatch([], lambda unit: unit, lambda unit, loaded: loaded, workers=2, finish=lambda: 7))
    assert results == [] and extra == 7
