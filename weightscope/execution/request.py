"""What a caller asks of the machinery: `Execution` (device, workers, cache, executor).

Importable without numpy, like the option names it checks against
(`weightscope.linalg.choices`): the command line declares its defaults from it. `plan`
(`weightscope.execution.plan`) turns it into a `Plan` for a checkpoint's layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from weightscope.errors import WeightscopeError
from weightscope.linalg.choices import check_device

#: Where layers are analysed: threads of this process, or tasks on a Ray cluster.
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Execution:
    """What a caller asks of the machinery (CLI: --device, --workers, --cache-dir, --no-cache,
    --executor, --ray-address)."""

    device: str = "auto"
    #: layers analysed at once; 0 = one per core this process may use (CPU) or 2 (GPU).
    #: Local only: on Ray, the cluster's free CPUs and memory decide.
    workers: int = 0
    cache: bool = True
    #: None: `weightscope.execution.cache.default_cache_dir()`, resolved where the layer
    #: is analysed (on Ray: on each node, so the cache is per node unless this names
    #: shared storage)
    cache_dir: str | None = None
    #: the cache's size cap in bytes; None: $WEIGHTSCOPE_CACHE_MAX, else 2 GB
    cache_max_bytes: int | None = None
    #: "local" (threads of this process) or "ray" (tasks on a Ray cluster)
    executor: str = "local"
    #: The Ray cluster (host:port or ray://…); None: $RAY_ADDRESS, else the cluster
    #: last started here with `ray start`, else a new local Ray instance
    ray_address: str | None = None

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.cache_max_bytes is not None and self.cache_max_bytes < 0:
            raise WeightscopeError(f"cache size must be ≥ 0 bytes, got {self.cache_max_bytes}")
        if self.executor not in EXECUTORS:
            raise WeightscopeError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise WeightscopeError(f"workers must be 0 (auto) or a positive integer, got {self.workers!r}")
