"""Overlap reading with computing, and layers with each other, in bounded memory.

Why threads and not processes: the heavy steps (decoding, the Gram product, LAPACK)
run in numpy/scipy with the GIL released, so threads on one process use every core
while sharing the open checkpoint, its memory maps and the imported libraries. Worker
processes would each pay ~0.5 s of imports and read their tensors again, which is more
than a whole small model takes; they would only pay for Python-bound work, and there is
none worth the name here (the fit and the checks are vectorised numpy).

Items are read one at a time, in order, by one reader thread (so readers need not be
thread-safe, and the disk sees one sequential stream), and read ahead of the workers by
at most one item; ``workers`` threads compute; results come back in input order. An
item is admitted only while the summed cost of the items in flight stays within
``budget`` (a single item is always admitted), which bounds memory by the caller's cost
estimate, not by the number of workers.

One BLAS thread whatever the workers: a threaded Gram product is not bitwise the same (a
300×300 float64 Gram differed between 1 and 2 threads here, and with it every number of
that layer under --eig-dtype float64 between --workers 1 and 2); parallelism is the
workers. Both local streams, analyze's layers and compare's pairs, run through here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
) -> Iterator[Result]:
    """Yield ``compute(item, load(item))`` for each item, in order, with BLAS on one
    thread (module docstring); ``progress`` gets the count done after each.

    ``load`` runs on one background thread, at most one item ahead of the ``workers``
    compute threads; exceptions from either propagate when that item's result is due.
    """
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    with blas_threads(1):
        for done, result in enumerate(_in_order(items, load, compute, workers, cost, budget), start=1):
            yield result
            if progress is not None:
                progress(done)


def _in_order(
    items: Iterable[Item],
    load: Callable[[Item], Loaded],
    compute: Callable[[Item, Loaded], Result],
    workers: int,
    cost: Callable[[Item], float],
    budget: float,
) -> Iterator[Result]:
    reader = ThreadPoolExecutor(1, thread_name_prefix="weightscope-read")
    pool = ThreadPoolExecutor(workers, thread_name_prefix="weightscope-layer")
    in_flight: deque[tuple[float, Future[Result]]] = deque()
    spent = 0.0
    try:
        for item in items:
            needed = cost(item)
            while in_flight and (len(in_flight) > workers or spent + needed > budget):
                done_cost, future = in_flight.popleft()
                spent -= done_cost
                yield future.result()
            loaded = reader.submit(load, item)
            in_flight.append((needed, pool.submit(_when_loaded, compute, item, loaded)))
            spent += needed
        while in_flight:
            yield in_flight.popleft()[1].result()
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        pool.shutdown(wait=True, cancel_futures=True)


def _when_loaded(compute: Callable[[Item, Loaded], Result], item: Item, loaded: Future[Loaded]) -> Result:
    return compute(item, loaded.result())
