"""Run work units as tasks on a Ray cluster, results back in submission order.

Why Ray and not our own scheduler: clusters that train large models already run it, and
it already does what a many-node run needs — placing a task where its memory and GPU
fit, retrying a task whose worker or node died, cancelling on Ctrl-C. This module only
maps a list of calls onto Ray tasks; what a call does (open a checkpoint from shared
storage, read one tensor, analyse it) is the caller's function, a module-level function
that Ray pickles by reference, so no weight bytes pass through the driver.

Why one task per layer: Ray costs 3–5 CPU-ms per task and +1 % CPU on Llama-7B layers
(benchmarks/bench_ray.py), nothing beside seconds of eigensolves, while a task per
checkpoint would leave nodes idle behind each checkpoint's largest layer. All calls are
submitted at once (one pool, however many checkpoints they come from, so every node
stays busy) and collected in order. Completions are counted with
`ray.wait` for the progress bar. Ray itself is an optional dependency
(the ``ray`` extra), imported only when a Ray run starts.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from weightscope._version import __version__
from weightscope.checkpoint.base import CheckpointReader
from weightscope.checkpoint.layers import LayerSpec
from weightscope.errors import CheckpointError, WeightscopeError, install_hint
from weightscope.execution.plan import CUDA_WORKERS
from weightscope.linalg.device import AUTO_CUDA_MIN_FLOPS, eigen_flops

Result = TypeVar("Result")

#: How often a task is re-run after its worker process or node died (Ray's
#: ``max_retries``; application errors are never retried: the analysis is deterministic).
MAX_RETRIES = 3
#: Longest wait between two looks at the outstanding tasks (seconds): bounds the latency
#: of the progress bar and of the last result, while one look costs O(outstanding tasks).
POLL_SECONDS = 0.2
#: How long to wait for the head's port to answer before giving up on an address. Ray
#: itself keeps retrying an unreachable GCS (2.60 was still at it after 2 minutes here).
REACH_SECONDS = 5.0
#: The GPU share a layer asks for: as many layers share a GPU as local runs put on one
#: (`CUDA_WORKERS`: one computes while the other reads).
GPU_SHARE = 1.0 / CUDA_WORKERS


@dataclass(frozen=True)
class Need:
    """What one task asks Ray for: bytes of memory (its working set) and a GPU share."""

    memory: int
    gpus: float = 0.0


def require_ray() -> None:
    """Raise the install hint when Ray is missing (the ``ray`` extra)."""
    if importlib.util.find_spec("ray") is None:
        raise WeightscopeError(f"--executor ray needs Ray: {install_hint('ray')}")


def connect(address: str | None) -> Any:
    """The `ray` module, connected: to ``address``, else $RAY_ADDRESS, else the cluster
    last started on this machine with `ray start`, else a new local instance (Ray's own
    order). Connecting twice in one process reuses the first connection."""
    require_ray()
    import ray

    if not ray.is_initialized():
        _check_reachable(address or os.environ.get("RAY_ADDRESS"))
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise WeightscopeError(f"cannot connect to Ray at {address or 'RAY_ADDRESS/local'}: {exc}") from None
    return ray


def _check_reachable(address: str | None) -> None:
    """Fail fast, in one line, when a host:port address does not answer (the Ray client's
    ray://, "auto" and "local" are left to Ray)."""
    if not address or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=REACH_SECONDS).close()
    except OSError as exc:
        raise WeightscopeError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def largest_node_memory(ray: Any) -> int:
    """Memory (bytes) Ray may hand out on the biggest live node."""
    return max((int(node["Resources"].get("memory", 0)) for node in ray.nodes() if node.get("Alive")), default=0)


def cluster_gpus(ray: Any) -> float:
    """GPUs the cluster has, in all."""
    return float(ray.cluster_resources().get("GPU", 0.0))


def cluster_device(choice: str, shapes: list[tuple[int, int]], gpus: float) -> str:
    """The device a checkpoint's layers run on in the cluster, chosen by the driver the
    way `resolve_device` chooses locally, but by the cluster's GPUs, not the driver's."""
    if choice == "cuda" and not gpus:
        raise WeightscopeError("--device cuda: the Ray cluster has no GPU")
    if choice == "auto":
        return "cuda" if gpus and eigen_flops(shapes) >= AUTO_CUDA_MIN_FLOPS else "cpu"
    return choice


# --- on a worker ---------------------------------------------------------------------


def check_worker_version(version: str) -> None:
    """Refuse to work for a driver of another weightscope version: the numbers of a
    cluster run must be those of a local run on the driver."""
    if version != __version__:
        raise WeightscopeError(
            f"the Ray worker runs weightscope {__version__}, the driver {version}: install one version everywhere"
        )


def reopened(reader: CheckpointReader, spec: LayerSpec, path: str) -> LayerSpec:
    """``spec`` (chosen by the driver from the headers) as this worker's reader sees it:
    its own entry of the same name, so reads go to the file as this node mounts it.
    An entry whose shape or dtype differ means the checkpoint changed in between."""
    here = next((info for info in reader.tensors() if info.name == spec.name), None)
    if here is None or (here.shape, here.dtype) != (spec.info.shape, spec.info.dtype):
        raise CheckpointError(f"{path}: tensor {spec.name} changed or vanished since the driver read the headers")
    return dataclasses.replace(spec, info=here)


# --- on the driver --------------------------------------------------------------------


def _call(function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return function(*args)


def run_tasks(
    ray: Any,
    function: Callable[..., Result],
    calls: Sequence[tuple[Any, ...]],
    needs: Sequence[Need],
    *,
    lost: Callable[[int, Exception], Result],
    progress: Callable[[int], None] | None = None,
) -> TaskResults[Result]:
    """Submit ``function(*calls[i])`` as Ray tasks now, and return an iterator of their
    results in the order of ``calls``. Submission is eager (not on the first ``next``), so
    tasks asked for first queue first on the cluster.

    A call whose worker died more than `MAX_RETRIES` times yields ``lost(i, error)``
    instead (a `WeightscopeError` saying so); an exception the function raised is
    re-raised here as itself. A task never asks for more memory than the biggest node
    has (it then runs alone there, as the local scheduler admits a single oversized
    layer). ``progress`` gets the number of
    completed tasks whenever it grows. Leaving early (an error, Ctrl-C, the consumer
    stopping) cancels every task not yet collected.
    """
    remote = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_call)
    cap = largest_node_memory(ray) or None
    refs = [
        remote.options(
            memory=max(1, min(need.memory, cap) if cap else need.memory),
            num_gpus=need.gpus,
            name=getattr(function, "__name__", "task"),
        ).remote(function, call)
        for call, need in zip(calls, needs)
    ]
    return TaskResults(ray, refs, lost, progress)


class TaskResults(Iterator[Result]):
    """The results of submitted tasks, in order (see `run_tasks`). ``close()`` (an error,
    Ctrl-C, the consumer stopping) cancels every task not yet collected, also before the
    first result was asked for."""

    def __init__(
        self,
        ray: Any,
        refs: list[Any],
        lost: Callable[[int, Exception], Result],
        progress: Callable[[int], None] | None,
    ) -> None:
        self._ray, self._refs, self._lost, self._progress = ray, refs, lost, progress
        self._pending = list(refs)
        self._ready: set[Any] = set()
        self._collected = 0

    def __next__(self) -> Result:
        from ray.exceptions import RayError, RayTaskError

        refs = self._refs
        if self._collected >= len(refs):
            raise StopIteration
        try:
            while refs[self._collected] not in self._ready:
                finished, self._pending = self._ray.wait(
                    self._pending, num_returns=len(self._pending), timeout=POLL_SECONDS
                )
                self._ready.update(finished)
                if self._progress is not None:
                    left = len(self._pending)
                    for done in range(len(refs) - left - len(finished) + 1, len(refs) - left + 1):
                        self._progress(done)
            ref = refs[self._collected]
            try:
                result = self._ray.get(ref)
            except RayTaskError as exc:
                raise _cause(exc) from None
            except RayError as exc:  # the worker or its node died on every attempt
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                result = self._lost(
                    self._collected,
                    WeightscopeError(f"Ray ran it {MAX_RETRIES + 1} times and lost it each time: {first}"),
                )
        except BaseException:
            self.close()
            raise
        self._ready.discard(ref)
        self._collected += 1
        return result

    def close(self) -> None:
        for ref in self._refs[self._collected :]:
            self._ray.cancel(ref, force=True)
        self._collected = len(self._refs)


def _cause(exc: Exception) -> Exception:
    """The exception a task raised, without Ray's wrapper and remote traceback."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, WeightscopeError):
        return WeightscopeError(f"on a Ray worker: {cause}")
    return cause if isinstance(cause, Exception) else exc
