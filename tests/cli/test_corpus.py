"""Every case of the fault-injection corpus (`tests/corpus.py`) through the real CLI.

In-process (typer's CliRunner) where possible, for speed; in a child process where a
signal, a resource limit or a possible SIGBUS is part of the case. Each case asserts the
contract: the exit code expected (2 with exactly one ``error:`` line naming the problem),
no traceback and no "internal error", no hang (a timer per case), no death by signal,
no code run from a checkpoint (a marker file), and every protected file unchanged.
"""

from __future__ import annotations

import collections
import hashlib
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.corpus import CASES, MARKER, REPO_ROOT, Case, Kit, small_layers
from weightscope.checkpoint import write_safetensors
from weightscope.cli import app


class CaseTimeout(BaseException):
    """Raised by the timer inside a hung in-process run; not an Exception, so the CLI's
    error handling cannot swallow it."""


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    directory = tmp_path_factory.mktemp("kit")
    model = write_safetensors(directory / "m.safetensors", small_layers())
    result = CliRunner().invoke(app, ["analyze", str(model), "-f", "json", "--no-cache"])
    assert result.exit_code == 0, result.output
    return Kit(model, result.stdout)


def _fingerprint(path: Path) -> tuple[int, str]:
    info = os.lstat(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else ""
    return stat.S_IFMT(info.st_mode), digest


def _run_in_process(args: list[str], timeout: float, patch: object) -> tuple[int, str, str]:
    def expire(signum: int, frame: object) -> None:
        raise CaseTimeout(f"no result after {timeout} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        if patch is not None:
            with patch():  # type: ignore[operator]
                result = CliRunner().invoke(app, args)
        else:
            result = CliRunner().invoke(app, args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


#: The child of a bounded case: the limits are set, the CLI imported, and only then the
#: watchdog started, so that the bound measures the work, not a loaded machine's start-up.
#: faulthandler's watchdog is a C thread: it ends a child stuck inside C code too.
_BOUNDED_CHILD = """
import faulthandler, resource, sys
memory, bound = {memory!r}, {bound!r}
if memory is not None:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
from weightscope.cli import main
if bound is not None:
    faulthandler.dump_traceback_later(bound, exit=True)
sys.argv = ["weightscope", *sys.argv[1:]]
main()
"""


def _run_child(
    args: list[str], script: str | None, timeout: float, bound: float | None = None, memory: int | None = None
) -> tuple[int, str, str]:
    if script is None and (bound is not None or memory is not None):
        script = _BOUNDED_CHILD.format(memory=memory, bound=bound)
    command = (
        [sys.executable, "-c", script, *args] if script is not None else [sys.executable, "-m", "weightscope", *args]
    )
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode >= 0, f"killed by signal {-done.returncode}: {done.stderr[-2000:]}"
    assert "Timeout (" not in done.stderr, f"a hang: no result after {bound} s of work\n{done.stderr[-3000:]}"
    assert "MemoryError" not in done.stderr, f"over the {memory}-byte address-space limit\n{done.stderr[-3000:]}"
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_contract(case: Case, tmp_path: Path, kit: Kit) -> None:
    scenario = case.build(tmp_path, kit)
    try:
        before = {path: _fingerprint(path) for path in scenario.keep}
        if scenario.subprocess:
            code, out, err = _run_child(
                scenario.args, scenario.script, scenario.timeout, scenario.bound, scenario.memory
            )
        else:
            code, out, err = _run_in_process(scenario.args, scenario.timeout, scenario.patch)
        expected = scenario.exit if isinstance(scenario.exit, tuple) else (scenario.exit,)
        assert code in expected, f"exit {code}, expected {expected}\nstderr: {err[-3000:]}"
        if "--debug" not in scenario.args:
            assert "Traceback" not in err, err[-3000:]
        assert "internal error" not in err, err
        if code == 2:
            errors = [line for line in err.splitlines() if line.startswith("error:")]
            assert len(errors) == 1, err
            if scenario.error is not None:
                assert scenario.error in errors[0], errors[0]
        assert not (tmp_path / MARKER).exists(), "code from the checkpoint ran"
        for path, fingerprint in before.items():
            assert _fingerprint(path) == fingerprint, f"{path} was changed"
        if scenario.check is not None:
            scenario.check(out, err, tmp_path)
    finally:
        for cleanup in scenario.cleanup:
            cleanup()


def test_corpus_covers_every_class_with_at_least_100_cases() -> None:
    per_class = collections.Counter(c.klass for c in CASES)
    assert len(CASES) >= 100, per_class
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    for klass in (
        "pickles",
        "safetensors-headers",
        "shard-indexes",
        "tensor-contents",
        "paths",
        "signals-and-rewrites",
        "disk-full",
        "report-tampering",
        "options",
        "output-injection",
    ):
        assert per_class[klass] >= 3, per_class
