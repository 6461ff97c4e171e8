"""`weightscope watch`: a run followed while a writer process saves checkpoints slowly in
chunks (none is analysed before it is complete), and ``--once`` over a finished run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import weightscope.commands.trend as trend_module
import weightscope.commands.watch as watch_module
from tests.monitor_runs import PLANTED_BLOCK, checkpoint_bytes, write_run
from weightscope.cli import app
from weightscope.commands.watch import RunWatcher, follow, readable, watch_once
from weightscope.execution.plan import Execution
from weightscope.render.watch_views import read_log

pytest.importorskip("safetensors")

runner = CliRunner()
STEPS = [10, 20, 30, 40, 50]


def test_a_slow_writer_is_never_read_early(tmp_path, monkeypatch):
    """The writer pauses longer than ``settle`` between chunks: the size/time test alone
    would pass a half-written file; the reader's check of the header's sizes refuses it."""
    run = tmp_path / "run"
    steps = [10, 20, 30]
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.monitor_runs",
            str(run),
            "--steps",
            *map(str, steps),
            "--chunks",
            "3",
            "--pause",
            "0.5",
        ],
        cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    final_sizes = {step: len(checkpoint_bytes(step, saves, planted=False)) for saves, step in enumerate(steps)}
    analysed_sizes: list[dict[str, int]] = []
    refused: list[str] = []
    real_trend, real_readable = trend_module.trend_of_run, watch_module.readable

    def spy_trend(entries, **kwargs):
        analysed_sizes.append({entry.path.name: entry.path.stat().st_size for entry in entries})
        return real_trend(entries, **kwargs)

    def spy_readable(path):
        ok = real_readable(path)
        if not ok:
            refused.append(path.name)
        return ok

    monkeypatch.setattr(trend_module, "trend_of_run", spy_trend)  # the watcher imports it when it runs
    monkeypatch.setattr(watch_module, "readable", spy_readable)
    seen = []

    def on_events(events):
        seen.extend(events)
        return writer.poll() is not None and len(seen) == len(steps)

    deadline = time.monotonic() + 60
    run.mkdir()
    with RunWatcher(run, settle=0.2, execution=Execution(cache_dir=str(tmp_path / "cache"))) as watcher:
        follow(watcher, lambda events: on_events(events) or time.monotonic() > deadline, interval=0.1)
    writer.wait(10)
    assert [event.step for event in seen] == steps  # each checkpoint once, in order
    for sizes in analysed_sizes:
        for name, size in sizes.items():
            assert size == final_sizes[int(name.split("-")[1].split(".")[0])], f"{name} analysed at {size} bytes"
    assert refused  # the test did exercise a half-written file that had settled


def test_readable_refuses_a_truncated_checkpoint(tmp_path):
    data = checkpoint_bytes(10, 0, planted=False)
    path = tmp_path / "step-10.safetensors"
    path.write_bytes(data[: len(data) // 2])
    assert not readable(path)
    path.write_bytes(data)
    assert readable(path)


def test_watch_once_flags_the_planted_block(tmp_path):
    run = tmp_path / "run"
    write_run(run, STEPS, planted=True)
    data = checkpoint_bytes(60, 5, planted=True)
    (run / "step-60.safetensors").write_bytes(data[: len(data) // 3])  # still being written
    out, log = tmp_path / "trend.json", tmp_path / "watch.jsonl"
    result = runner.invoke(
        app,
        [
            "watch",
            str(run),
            "--once",
            "--settle",
            "0",
            "--json",
            str(out),
            "--log",
            str(log),
            "--fail-on",
            "logit-growth",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--tensorboard",
            str(tmp_path / "tb"),
        ],
    )
    assert result.exit_code == 1, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(STEPS) + 1
    assert f"logit-growth (block {PLANTED_BLOCK})" in lines[-2] and lines[-2].startswith("step 50")
    assert all("no alerts" in line for line in lines[:-2])
    assert lines[-1].startswith("step 60") and "incomplete" in lines[-1]
    trend = json.loads(out.read_text())
    assert [point["step"] for point in trend["checkpoints"]] == STEPS
    events = read_log(log)
    assert [e.step for e in events] == [*STEPS, 60]
    assert [a.subject for a in events[-2].alerts] == [f"block {PLANTED_BLOCK}"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(tmp_path / "tb"))
    board.Reload()
    assert [s.step for s in board.Scalars("weightscope/checkpoint/logit_bound_max")] == STEPS
    assert [s.step for s in board.Scalars("weightscope/alert/logit-growth")] == [50]


def test_watch_once_steady_run_passes(tmp_path):
    run = tmp_path / "run"
    write_run(run, STEPS, planted=False)
    result = runner.invoke(
        app,
        [
            "watch",
            str(run),
            "--once",
            "--settle",
            "0",
            "--fail-on",
            "logit-growth",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.count("no alerts") == len(STEPS)


def test_watch_once_waits_for_a_young_checkpoint(tmp_path):
    run = tmp_path / "run"
    write_run(run, [10, 20], planted=False)
    naps = []
    with RunWatcher(run, settle=5.0, execution=Execution(cache_dir=str(tmp_path / "cache"))) as watcher:
        events = watch_once(watcher, sleep=naps.append)  # the files are seconds old: not settled
    assert naps == [5.0]
    assert [e.origin for e in events] == ["incomplete", "incomplete"]  # the fake sleep let no time pass


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail-on", "logit-grwoth"], "not a flag"),
        (["--settle", "-1"], "settle"),
    ],
)
def test_watch_bad_input(tmp_path, args, message):
    result = runner.invoke(app, ["watch", str(tmp_path), "--once", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_watch_missing_directory(tmp_path):
    result = runner.invoke(app, ["watch", str(tmp_path / "nope"), "--once"])
    assert result.exit_code == 2 and "error:" in result.output


def test_watch_refuses_to_write_over_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    paths = write_run(run, [10, 20], planted=False)
    before = paths[0].read_bytes()
    result = runner.invoke(app, ["watch", str(run), "--once", "--json", str(paths[0])])
    assert result.exit_code == 2 and "input" in result.output
    assert paths[0].read_bytes() == before
