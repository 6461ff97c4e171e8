"""How many threads BLAS/LAPACK may use, set at run time.

Why this exists: OpenBLAS spins its threads at every synchronisation point of a LAPACK
call, and the symmetric eigensolver synchronises thousands of times (one level-2 update
per column in the tridiagonal reduction). When other processes hold the cores, each
spin waits for a time slice: on a 2-core machine under a load average of ~2, a
4096×4096 ``eigvalsh`` took 19–36 s with 2 threads and 3.9–7.4 s with one, and a whole
MiniLM analysis 36 s against 2.2 s. A threaded eigensolver also rounds differently with
each thread count, so reports would depend on the machine's load. weightscope therefore
runs BLAS single-threaded (`weightscope.analysis.pipeline` for the whole stream, and every
eigensolve itself, whoever calls it) and parallelises over layers instead (threads, see
`weightscope.execution.schedule`).

The numpy and scipy wheels each bundle their own OpenBLAS, so every loaded OpenBLAS (or
MKL) library is set. Libraries are found among the shared objects mapped into this
process (Linux) or in the wheels' library folders (elsewhere); an unknown BLAS (Apple
Accelerate, BLIS) is left alone. An explicit ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/
``MKL_NUM_THREADS`` in the environment is the user's choice and is never overridden.

Why not threadpoolctl, which does this across more vendors: measured (3.8.0), it is
cheap (5–10 ms to import, 1.6 ms per library scan, 15 µs per limit), but for OpenBLAS
with pthreads it lets only the first thread that sets a limit change it ("other threads
silently do nothing"), while here limits are set from worker threads around each
eigensolve. With it, a lone worker's eigensolves ran 2-threaded and reports differed
between ``--workers 1`` and ``--workers 2`` in the 7th digit
(`test_a_worker_thread_can_limit_blas` fails on such a library).
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

#: Environment variables through which a user pins BLAS threads; any of them disables
#: weightscope's own thread policy.
THREAD_ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

# (setter, getter) symbol pairs, by vendor build: plain OpenBLAS, the scipy-openblas
# wheels' 32- and 64-bit-integer builds, and MKL's runtime library.
_THREAD_SYMBOLS = (
    ("openblas_set_num_threads", "openblas_get_num_threads"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),
)
_LIBRARY_MARKERS = ("openblas", "mkl_rt")


@dataclass(frozen=True)
class ThreadControl:
    """The thread setter and getter of one loaded BLAS library."""

    path: str
    setter: ctypes._CFuncPtr  # type: ignore[name-defined]  # the stubs do not name ctypes' private function-pointer type
    getter: ctypes._CFuncPtr  # type: ignore[name-defined]  # as above

    def get(self) -> int:
        return int(self.getter())

    def set(self, threads: int) -> None:
        self.setter(ctypes.c_int(threads))


def user_pinned_threads() -> bool:
    """True when the environment already fixes the BLAS thread count."""
    return any(os.environ.get(name) for name in THREAD_ENV_VARS)


#: Packages whose wheels bundle a BLAS: a new library can only appear when one is imported.
_BLAS_PACKAGES = ("numpy", "scipy", "torch")


def loaded_blas_libraries() -> tuple[str, ...]:
    """Paths of the BLAS/LAPACK shared libraries loaded into this process so far (numpy's
    always: it is imported here; scipy's once something imported scipy)."""
    import numpy  # noqa: F401  (its library is only loaded once it is imported)

    return _scan_libraries(tuple(name for name in _BLAS_PACKAGES if name in sys.modules))


@cache
def _scan_libraries(packages: tuple[str, ...]) -> tuple[str, ...]:
    paths: set[str] = set()
    maps = Path("/proc/self/maps")
    if maps.is_file():
        for line in maps.read_text().splitlines():
            path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
            if path.startswith("/") and any(marker in Path(path).name.lower() for marker in _LIBRARY_MARKERS):
                paths.add(path)
    else:  # macOS / Windows wheels keep their BLAS next to the package
        for package in packages:
            root = Path(sys.modules[package].__file__).parent  # type: ignore[arg-type]  # an installed wheel's package has a file
            for folder in (root / ".dylibs", root.parent / f"{package}.libs"):
                paths.update(p for p in glob.glob(str(folder / "*")) if any(m in p.lower() for m in _LIBRARY_MARKERS))
    return tuple(sorted(paths))


def thread_controls() -> tuple[ThreadControl, ...]:
    """One `ThreadControl` per loaded BLAS library whose thread API is known."""
    return tuple(control for path in loaded_blas_libraries() if (control := _thread_control(path)) is not None)


@cache
def _thread_control(path: str) -> ThreadControl | None:
    try:
        library = ctypes.CDLL(path)
    except OSError:
        return None
    for setter_name, getter_name in _THREAD_SYMBOLS:
        setter, getter = getattr(library, setter_name, None), getattr(library, getter_name, None)
        if setter is not None and getter is not None:
            setter.restype, setter.argtypes = None, [ctypes.c_int]
            getter.restype, getter.argtypes = ctypes.c_int, []
            return ThreadControl(path, setter, getter)
    return None


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
    """Run the block with every known BLAS library limited to ``threads`` threads, then
    restore each library's previous count. Does nothing when the user pinned the count."""
    if user_pinned_threads():
        yield
        return
    controls = thread_controls()
    previous = [control.get() for control in controls]
    for control in controls:
        control.set(max(1, threads))
    try:
        yield
    finally:
        for control, count in zip(controls, previous):
            control.set(count)
