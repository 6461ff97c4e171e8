"""`--executor ray` on a real Ray cluster: the same reports as a local run, byte for byte.

These tests need a running cluster at $RAY_ADDRESS (`.ci/run` starts a head and a second
node on loopback, sets WEIGHTSCOPE_REQUIRE_RAY=1 so that a missing cluster fails instead
of skipping, and stops the cluster afterwards). Without Ray or without a cluster they
skip. The spectrum cache is off unless a test is about it, so every number is computed
on the cluster, not read back from the local run's cache.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import gaussian, planted_power_law
from weightscope.checkpoint import write_safetensors
from weightscope.commands.compare import compare
from weightscope.commands.trend import trend
from weightscope.execution.plan import Execution
from weightscope.pipeline import analyze
from weightscope.render.text import to_json

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / "examples" / "runs" / "tiny-lm"
LOCAL = Execution(cache=False)
ON_RAY = Execution(cache=False, executor="ray")


@pytest.fixture(scope="module")
def cluster():
    """The `ray` module connected to the cluster at $RAY_ADDRESS (skip when there is none)."""
    required = os.environ.get("WEIGHTSCOPE_REQUIRE_RAY") == "1"
    try:
        import ray
    except ImportError:
        if required:
            pytest.fail("WEIGHTSCOPE_REQUIRE_RAY=1 but ray is not installed")
        pytest.skip("ray is not installed (pip install 'weightscope[ray]')")
    if not os.environ.get("RAY_ADDRESS"):
        if required:
            pytest.fail("WEIGHTSCOPE_REQUIRE_RAY=1 but RAY_ADDRESS is not set")
        pytest.skip("no Ray cluster: RAY_ADDRESS is not set (.ci/run starts one)")
    from weightscope.execution.cluster import connect

    try:
        connect(None)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the cluster is a skip here
        if required:
            raise
        pytest.skip(f"no Ray cluster reachable at {os.environ['RAY_ADDRESS']}: {exc}")
    yield ray
    ray.shutdown()


def _trend_json(**kwargs) -> str:
    return json.dumps(trend([RUN], **kwargs).to_dict(), indent=2, allow_nan=False)


def test_trend_over_a_run_on_ray_equals_the_local_trend(cluster):
    assert len(cluster.nodes()) >= 1
    assert _trend_json(execution=ON_RAY) == _trend_json(execution=LOCAL)


def test_sharded_checkpoint_on_ray_equals_local(cluster, tmp_path):
    shards = {
        "model-00001-of-00002.safetensors": {
            "model.layers.0.mlp.up_proj.weight": planted_power_law(384, 256, 3.0, seed=1),
            "model.layers.0.self_attn.q_proj.weight": gaussian(256, 256, seed=2),
        },
        "model-00002-of-00002.safetensors": {
            "model.layers.1.mlp.up_proj.weight": planted_power_law(384, 256, 4.5, seed=3),
            "model.layers.1.self_attn.q_proj.weight": gaussian(256, 256, seed=4),
        },
    }
    weight_map = {}
    for shard, tensors in shards.items():
        write_safetensors(tmp_path / shard, tensors, dtypes={name: "BF16" for name in tensors})
        weight_map.update(dict.fromkeys(tensors, shard))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    local = analyze(tmp_path, execution=LOCAL, randomize=True)
    remote = analyze(tmp_path, execution=ON_RAY, randomize=True)
    assert [layer.name for layer in remote.layers] == sorted(weight_map)
    assert to_json(remote) == to_json(local)


def test_a_bad_layer_fails_alone_on_ray_as_locally(cluster, tmp_path):
    broken = planted_power_law(256, 128, 3.0, seed=5)
    broken[3, 7] = np.nan
    path = write_safetensors(
        tmp_path / "m.safetensors",
        {"blocks.0.attn.weight": broken, "blocks.0.mlp.weight": planted_power_law(256, 128, 3.0, seed=6)},
    )
    local = analyze(path, execution=LOCAL)
    remote = analyze(path, execution=ON_RAY)
    assert [layer.status for layer in remote.layers] == ["failed", "ok"]
    assert "NaN" in remote.layers[0].reason
    assert to_json(remote) == to_json(local)


def test_compare_on_ray_equals_local(cluster):
    a, b = RUN / "step-0", RUN / "step-1500"
    local = compare(a, b, execution=LOCAL).to_dict()
    remote = compare(a, b, executor="ray").to_dict()
    assert remote == local
    assert all(layer["update"] is not None for layer in remote["layers"])


def test_workers_use_the_cache_directory_they_are_given(cluster, tmp_path):
    path = write_safetensors(tmp_path / "m.safetensors", {"blocks.0.mlp.weight": planted_power_law(256, 128, 3.0, seed=7)})
    past = time.time() - 60  # older than the cache's racy window
    os.utime(path, (past, past))
    cache = tmp_path / "cache"
    first = analyze(path, execution=Execution(executor="ray", cache_dir=str(cache)))
    assert list((cache / "spectra").rglob("*.npz")), "the worker did not write the shared cache"
    again = analyze(path, execution=Execution(executor="ray", cache_dir=str(cache)))
    assert to_json(again) == to_json(first) == to_json(analyze(path, execution=LOCAL))


def _task_workers(name: str) -> list[int]:
    """PIDs of Ray worker processes executing a task called ``name`` (Ray titles them
    ``ray::<name>`` while the task runs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(f"ray::{name}".encode()):
            found.append(int(entry.name))
    return found


def test_a_worker_killed_mid_run_is_retried_and_the_report_is_unchanged(cluster, tmp_path):
    tensors = {f"blocks.{i}.mlp.weight": gaussian(2048, 1024, seed=10 + i) for i in range(4)}  # ~0.2 s of work each
    path = write_safetensors(tmp_path / "m.safetensors", tensors)
    local = analyze(path, execution=LOCAL)
    killed: list[int] = []
    stop = threading.Event()

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 60
        while not killed and not stop.is_set() and time.monotonic() < deadline:
            for pid in _task_workers("analyze_task"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    try:
        remote = analyze(path, execution=ON_RAY)
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was caught running a layer"
    assert to_json(remote) == to_json(local)
