"""How many threads BLAS/LAPACK may use, set at run time.

Why this exists: OpenBLAS spins its threads at every synchronisation point of a LAPACK
call, and the symmetric eigensolver synchronises thousands of times (one level-2 update
per column in the tridiagonal reduction). When other processes hold the cores, each
spin waits for a time slice: on this project's 2-core machine, under a load of ~2, a
4096×4096 ``eigvalsh`` took 19–36 s with 2 threads and 3.9–7.4 s with one, and a whole
MiniLM analysis 36 s against 2.2 s. A threaded eigensolver also rounds differently with
each thread count, so reports would depend on the machine's load. weightscope therefore
runs every eigensolve single-threaded and parallelises over layers instead (threads,
see `weightscope.execution.schedule`); only the Gram product of a lone worker, whose result does
not depend on the thread count, is given several threads.

The numpy and scipy wheels each bundle their own OpenBLAS (torch brings MKL or OpenBLAS),
so every loaded BLAS library is set, through threadpoolctl: it finds the libraries mapped
into the process and knows each vendor's thread API (OpenBLAS and its scipy-openblas
builds, MKL, BLIS, FlexiBLAS). It replaced ~80 lines of hand-written ctypes symbol
hunting that covered OpenBLAS and MKL only; measured here it costs 5–10 ms to import and
1.6 ms to scan the libraries (once per set of loaded BLAS packages), and a limit 15 µs.
An explicit ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` in the
environment is the user's choice and is never overridden.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from threadpoolctl import ThreadpoolController

#: Environment variables through which a user pins BLAS threads; any of them disables
#: weightscope's own thread policy.
THREAD_ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

#: Packages whose wheels bundle a BLAS: a new library can only appear when one is imported.
_BLAS_PACKAGES = ("numpy", "scipy", "torch")


def user_pinned_threads() -> bool:
    """True when the environment already fixes the BLAS thread count."""
    return any(os.environ.get(name) for name in THREAD_ENV_VARS)


def blas_controller() -> ThreadpoolController:
    """threadpoolctl's controller of the BLAS libraries loaded so far (numpy's always: it
    is imported here; scipy's or torch's once something imported them)."""
    import numpy  # noqa: F401  (its library is only loaded once it is imported)

    return _controller(tuple(name for name in _BLAS_PACKAGES if name in sys.modules))


@cache
def _controller(packages: tuple[str, ...]) -> ThreadpoolController:  # noqa: ARG001 - the cache key
    with warnings.catch_warnings():  # e.g. two OpenMP runtimes beside torch: not ours to report
        warnings.simplefilter("ignore")
        return ThreadpoolController().select(user_api="blas")


def loaded_blas_libraries() -> tuple[str, ...]:
    """Paths of the BLAS/LAPACK shared libraries loaded into this process so far."""
    return tuple(sorted(library.filepath for library in blas_controller().lib_controllers))


def available_cores() -> int:
    """Cores this process may run on (its affinity mask; all cores where there is none).

    Not reduced by the load average: eigensolves are single-threaded anyway, and a worker
    thread competes for a core fairly, while a load-dependent count made a run go serial
    whenever the previous one had just finished (the 1-minute average decays slowly).
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """Run the block with every loaded BLAS library limited to ``threads`` threads, then
    restore each library's previous count. Does nothing when the user pinned the count."""
    if user_pinned_threads():
        yield
        return
    with blas_controller().limit(limits=max(1, threads)):
        yield
