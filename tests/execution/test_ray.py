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
from weightscope.analysis.pipeline import analyze
from weightscope.checkpoint import write_safetensors
from weightscope.commands.compare import compare
from weightscope.commands.trend import trend
from weightscope.execution.cache import RACY_SECONDS
from weightscope.execution.plan import Execution
from weightscope.render.formats import json_text as to_json

REPO = Path(__file__).resolve().parents[2]
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
        pytest.skip("ray is not installed (pip install 'weightscope-esd[ray]')")
    if not os.environ.get("RAY_ADDRESS"):
        if required:
            pytest.fail("WEIGHTSCOPE_REQUIRE_RAY=1 but RAY_ADDRESS is not set")
        pytest.skip("no Ray cluster: RAY_ADDRESS is not set (.ci/run starts one)")
    from weightscope.execution.cluster import connect

    try:
        connect(None)
    except Exception as exc:
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
        write_safetensors(tmp_path / shard, tensors, dtypes=dict.fromkeys(tensors, "BF16"))
        weight_map.update(dict.fromkeys(tensors, shard))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    local_spectra: list = []
    local = analyze(tmp_path, execution=LOCAL, randomize=True, on_layer=local_spectra.append)
    seen: list[int] = []
    spectra: list = []
    remote = analyze(
        tmp_path,
        execution=ON_RAY,
        randomize=True,
        progress=lambda done, layers: seen.append(done),
        on_layer=spectra.append,
    )
    assert [layer.name for layer in remote.layers] == sorted(weight_map)
    assert seen == [0, 1, 2, 3, 4]  # the progress bar sees every completion once
    for here, there in zip(local_spectra, spectra, strict=True):  # what --html draws comes back too
        assert np.array_equal(here.evals, there.evals) and np.array_equal(here.rand_evals, there.rand_evals)
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
    path = write_safetensors(
        tmp_path / "m.safetensors", {"blocks.0.mlp.weight": planted_power_law(256, 128, 3.0, seed=7)}
    )
    time.sleep(RACY_SECONDS + 0.1)  # the cache keys no file changed within its racy window
    cache = tmp_path / "cache"
    first = analyze(path, execution=Execution(executor="ray", cache_dir=str(cache)))
    assert list((cache / "spectra").rglob("*.npz")), "the worker did not write the shared cache"
    again = analyze(path, execution=Execution(executor="ray", cache_dir=str(cache)))
    assert to_json(again) == to_json(first) == to_json(analyze(path, execution=LOCAL))


def _task_workers(name: str) -> list[int]:
    """PIDs of this cluster's worker processes executing a task called ``name``: Ray
    titles them ``ray::<name>`` while the task runs, and their parent is a raylet of the
    cluster at $RAY_ADDRESS (other Ray clusters on the machine are left alone)."""
    cluster = f"--gcs-address={os.environ.get('RAY_ADDRESS', '')}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
            if not title.startswith(f"ray::{name}".encode()):
                continue
            parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            if cluster in Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _killing_workers(name: str, most: int) -> tuple[threading.Event, list[int], threading.Thread]:
    """A thread that SIGKILLs up to ``most`` worker processes seen running task ``name``."""
    killed: list[int] = []
    stop = threading.Event()

    def kill() -> None:
        deadline = time.monotonic() + 60
        while len(killed) < most and not stop.is_set() and time.monotonic() < deadline:
            for pid in _task_workers(name):
                if pid not in killed:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.01)

    thread = threading.Thread(target=kill)
    thread.start()
    return stop, killed, thread


def test_a_worker_killed_mid_run_is_retried_and_the_report_is_unchanged(cluster, tmp_path):
    tensors = {f"blocks.{i}.mlp.weight": gaussian(2048, 1024, seed=10 + i) for i in range(4)}  # ~0.2 s of work each
    path = write_safetensors(tmp_path / "m.safetensors", tensors)
    local = analyze(path, execution=LOCAL)
    stop, killed, killer = _killing_workers("analyze_task", most=1)
    try:
        remote = analyze(path, execution=ON_RAY)
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was caught running a layer"
    assert to_json(remote) == to_json(local)


def test_a_layer_whose_worker_always_dies_is_a_failed_layer(cluster, tmp_path):
    from weightscope.execution.cluster import MAX_RETRIES

    path = write_safetensors(tmp_path / "m.safetensors", {"blocks.0.mlp.weight": gaussian(2048, 1024, seed=30)})
    stop, killed, killer = _killing_workers("analyze_task", most=MAX_RETRIES + 1)
    try:
        report = analyze(path, execution=ON_RAY)
    finally:
        stop.set()
        killer.join()
    assert len(killed) == MAX_RETRIES + 1
    (layer,) = report.layers
    assert layer.status == "failed", layer
    assert layer.reason.startswith(f"Ray ran it {MAX_RETRIES + 1} times and lost it each time: The worker died")
    assert report.summary.failed == 1


def _slow_run(tmp_path: Path) -> list[Path]:
    """A checkpoint of one layer, then one of six such layers, each seconds of work on a
    loaded core. Every layer has the same shape, so every task asks Ray for the same
    resources and they queue in one scheduling class, first in first out: the first
    checkpoint's layer runs first. (Ray dispatches unlike requests in no promised order; with
    a small first layer and a measures task, both slow layers ran before it on one CI
    machine, and the first report came after all the work was done.)"""
    layers = [gaussian(3072, 3072, seed=20 + i) for i in range(7)]
    first = write_safetensors(tmp_path / "step-1.safetensors", {"blocks.0.mlp.weight": layers[0]})
    slow = write_safetensors(
        tmp_path / "step-2.safetensors", {f"blocks.{i}.mlp.weight": layer for i, layer in enumerate(layers[1:])}
    )
    return [first, slow]


def _until_no_task_runs(name: str, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while _task_workers(name) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _task_workers(name)


def test_leaving_a_ray_run_early_cancels_its_tasks(cluster, tmp_path):
    from weightscope.analysis.pipeline import analyze_many
    from weightscope.options import AnalysisOptions

    # no measures: their tasks ask for other resources than the layers' (see _slow_run)
    reports = analyze_many(_slow_run(tmp_path), AnalysisOptions(measures=False), execution=ON_RAY)
    first = next(reports)  # the second checkpoint's layers are running by now
    assert first.summary.analysed == 1
    deadline = time.monotonic() + 30
    while not _task_workers("analyze_task") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _task_workers("analyze_task"), "the slow layers never started"
    reports.close()
    assert _until_no_task_runs("analyze_task", 3) == []


def test_ctrl_c_on_the_cli_cancels_the_cluster_tasks(cluster, tmp_path):
    import subprocess
    import sys

    _, slow = _slow_run(tmp_path)
    command = [sys.executable, "-m", "weightscope", "analyze", str(slow), "--executor", "ray", "--no-cache"]
    # SIGINT at its default in the driver, which Python then turns into KeyboardInterrupt: a
    # shell without job control starts background jobs with SIGINT ignored, and a driver
    # that inherited that ignored the test's SIGINT, finished its run and exited 0.
    driver = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not _task_workers("analyze_task") and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.02)
        assert _task_workers("analyze_task"), "the layers never started"
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=30)
    finally:
        driver.kill()
    assert driver.returncode == 130, err
    assert "interrupted" in err
    assert _until_no_task_runs("analyze_task", 3) == []


def test_the_cli_runs_on_ray_with_the_same_output(cluster):
    from typer.testing import CliRunner

    from weightscope.cli import app

    checkpoint = str(RUN / "step-1500")
    # --min-evals 200: no layer carries the 128-wide q, k and embeddings, so their measures
    # come from the cluster's measures task instead of the layers' own tasks
    for extra in ([], ["--min-evals", "200"]):
        local = CliRunner().invoke(app, ["analyze", checkpoint, "--no-cache", "-f", "json", *extra])
        remote = CliRunner().invoke(
            app, ["analyze", checkpoint, "--no-cache", "-f", "json", "--executor", "ray", *extra]
        )
        assert remote.exit_code == local.exit_code == 0, remote.output
        assert remote.stdout == local.stdout
        measures = json.loads(remote.stdout)["measures"]
        assert measures["attention"]["status"] == "ok" and len(measures["embeddings"]) == 2, measures


def test_without_ray_installed_the_ray_executor_is_one_error_line(monkeypatch, tmp_path):
    import importlib.util

    from typer.testing import CliRunner

    from weightscope.cli import app

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real_find_spec(name, *a)
    )
    path = write_safetensors(tmp_path / "m.safetensors", {"blocks.0.mlp.weight": gaussian(128, 64, seed=1)})
    result = CliRunner().invoke(app, ["trend", str(path), "--executor", "ray"])
    assert result.exit_code == 2
    assert "error: --executor ray needs Ray: pip install 'weightscope-esd[ray]'" in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_cluster_is_one_error_line_at_once(monkeypatch, tmp_path):
    ray = pytest.importorskip("ray")
    from typer.testing import CliRunner

    from weightscope.cli import app

    ray.shutdown()  # a fresh driver (a later test reconnects through $RAY_ADDRESS)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = write_safetensors(tmp_path / "m.safetensors", {"blocks.0.mlp.weight": gaussian(128, 64, seed=1)})
    start = time.monotonic()
    result = CliRunner().invoke(app, ["analyze", str(path), "--executor", "ray", "--ray-address", "127.0.0.1:1"])
    assert result.exit_code == 2
    assert "error: cannot reach the Ray cluster at 127.0.0.1:1" in result.output
    assert time.monotonic() - start < 10


def test_the_driver_picks_the_device_by_the_clusters_gpus():
    from weightscope.errors import WeightscopeError
    from weightscope.execution.cluster import cluster_device

    llama_block = [(4096, 4096)] * 4 + [(11008, 4096)] * 3
    assert cluster_device("cpu", llama_block, gpus=8) == "cpu"
    assert cluster_device("auto", llama_block, gpus=0) == "cpu"
    assert cluster_device("auto", [(256, 128)], gpus=8) == "cpu"  # too small to repay a GPU
    assert cluster_device("auto", llama_block, gpus=8) == "cuda"
    assert cluster_device("cuda", [(256, 128)], gpus=1) == "cuda"
    with pytest.raises(WeightscopeError, match="no GPU"):
        cluster_device("cuda", llama_block, gpus=0)
