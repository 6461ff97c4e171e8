"""Overlap reading with computing, and layers with each other, in bounded memory.

Why threads and not processes: the heavy steps (decoding, the Gram product, LAPACK)
run in numpy/scipy with the GIL released, so threads on one process use every core
while sharing the open checkpoint, its memory maps and the imported libraries. Worker
processes would each pay ~0.5 s of imports and read their tensors again, which is more
than a whole small model takes; they would only pay for Python-bound work, and there is
none worth the name here (the fit and the checks are vectorised numpy).

Items are read one at a time by one reader thread (so readers need not be thread-safe),
in the order they start, and read ahead of the workers by at most one item; ``workers``
threads compute; results come back in input order. An item is admitted only while the
summed cost of the unfinished items stays within ``budget`` (a single item is always
admitted), which bounds memory by the caller's cost estimate, not by the number of
workers. Given the items' sizes, the largest start first: in storage order a Llama
block ends on its 11008×4096 projections, and the last of them ran alone on one core.

One BLAS thread whatever the workers: a threaded Gram product is not bitwise the same (a
300×300 float64 Gram differed between 1 and 2 threads here, and with it every number of
that layer under --eig-dtype float64 between --workers 1 and 2); parallelism is the
workers. Both local streams, analyze's layers and compare's pairs, run through here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from weightscope.linalg._blas import blas_threads

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")
Result = TypeVar("Result")


def pipelined(
    items: Iterable[Item],
    load: Callable[[Item], Loaded],
    compute: Callable[[Item, Loaded], Result],
    *,
    workers: int = 1,
    cost: Callable[[Item], float] = lambda item: 0.0,
    budget: float = float("inf"),
    progress: Callable[[int], None] | None = None,
    size: Callable[[Item], float] | None = None,
) -> Iterator[Result]:
    """Yield ``compute(item, load(item))`` for each item, in order, with BLAS on one
    thread (module docstring); ``progress`` gets the count done after each.

    ``load`` runs on one background thread, at most one item ahead of the ``workers``
    compute threads; exceptions from either propagate when that item's result is due.
    With ``size`` (the work an item costs), items start largest first, and a smaller
    item that fits the budget starts when a larger one does not, so that a run never
    ends with one worker busy on the largest item while the others idle; results still
    come back in input order (finished ones wait, holding only their results).
    """
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    items = list(items)
    order = list(range(len(items)))
    if size is not None:
        order.sort(key=lambda index: -size(items[index]))  # stable: equal sizes keep input order
    with blas_threads(1):
        for done, result in enumerate(_in_order(items, order, load, compute, workers, cost, budget), start=1):
            yield result
            if progress is not None:
                progress(done)


def _in_order(
    items: list[Item],
    order: list[int],
    load: Callable[[Item], Loaded],
    compute: Callable[[Item, Loaded], Result],
    workers: int,
    cost: Callable[[Item], float],
    budget: float,
) -> Iterator[Result]:
    """Start the items in ``order``, each as soon as the items in flight leave room for it
    (count and ``budget``); yield the results in input order as they become due."""
    reader = ThreadPoolExecutor(1, thread_name_prefix="weightscope-read")
    pool = ThreadPoolExecutor(workers, thread_name_prefix="weightscope-layer")
    futures: dict[int, Future[Result]] = {}
    in_flight: dict[int, float] = {}  # started, unfinished items and their cost
    spent = 0.0
    due = 0  # the next result to yield, by input position

    def settle(block: bool) -> Iterator[Result]:
        nonlocal spent, due
        if block and in_flight:
            wait([futures[index] for index in in_flight], return_when=FIRST_COMPLETED)
        for index in [index for index in in_flight if futures[index].done()]:
            spent -= in_flight.pop(index)
        while due in futures and futures[due].done():
            yield futures.pop(due).result()
            due += 1

    costs = {index: cost(items[index]) for index in order}
    pending = list(order)
    try:
        while pending:
            # The first pending item (in ``order``) that fits, or the first one when none
            # is in flight: big items lead, smaller ones fill the room they leave.
            room = len(in_flight) <= workers
            index = next((i for i in pending if room and spent + costs[i] <= budget), None)
            if index is None and not in_flight:
                index = pending[0]
            if index is None:
                yield from settle(block=True)
                continue
            pending.remove(index)
            loaded = reader.submit(load, items[index])
            futures[index] = pool.submit(_when_loaded, compute, items[index], loaded)
            in_flight[index] = costs[index]
            spent += costs[index]
            del loaded
            yield from settle(block=False)
        while due < len(items):
            yield futures.pop(due).result()
            due += 1
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        pool.shutdown(wait=True, cancel_futures=True)


def _when_loaded(compute: Callable[[Item, Loaded], Result], item: Item, loaded: Future[Loaded]) -> Result:
    return compute(item, loaded.result())
