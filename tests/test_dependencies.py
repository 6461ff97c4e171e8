"""Honest dependencies: the core runs on its core dependencies alone, an optional one is
imported only where it is needed (inside the function), and a missing one is an `error:`."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
from typer.testing import CliRunner

from weightscope.checkpoint import write_safetensors
from weightscope.cli import app

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Import names of the core dependencies (pyproject `dependencies`).
CORE = {"numpy", "typer", "click", "rich", "tomli"}
#: Optional packages, by the extra that installs them.
OPTIONAL = {
    "torch": "torch",
    "matplotlib": "plot",
    "scipy": "vectors",
    "transformers": "transformers",
    "lightning": "lightning",
    "tensorboard": "tensorboard",
}
#: The trainer callbacks subclass their trainer's callback class: importing one imports
#: its trainer (and only it); nothing else imports them (`weightscope.integrations`).
TRAINER_MODULES = {"integrations/transformers.py": {"transformers"}, "integrations/lightning.py": {"lightning"}}
runner = CliRunner()


def _requirement_name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower()


def test_core_dependencies_are_the_ones_imported():
    """safetensors (read by our own reader) and scipy (only --vectors) are not core."""
    declared = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert declared == {"numpy", "typer", "rich", "tomli", "google-re2"}
    extras = PYPROJECT["project"]["optional-dependencies"]
    test_extra = {_requirement_name(r) for r in extras["test"]}
    for package, extra in OPTIONAL.items():
        assert package in {_requirement_name(r) for r in extras[extra]}
    assert "scipy" in test_extra, "CI installs [torch,plot,test]: every optional path must be testable"


def _module_level_imports(path: Path) -> set[str]:
    """Top-level package names imported when the module is imported (not inside a function)."""
    found = set()
    nodes = list(ast.parse(path.read_text()).body)
    for node in nodes:
        if isinstance(node, ast.Try):  # `try: import x` runs at import time too
            nodes.extend([*node.body, *(line for handler in node.handlers for line in handler.body), *node.orelse])
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_no_module_imports_an_optional_package_at_import_time():
    third_party = set()
    for path in (ROOT / "weightscope").rglob("*.py"):
        own = TRAINER_MODULES.get(path.relative_to(ROOT / "weightscope").as_posix(), set())
        names = _module_level_imports(path) - set(sys.stdlib_module_names) - {"weightscope"} - own
        assert not names & set(OPTIONAL), f"{path.relative_to(ROOT)} imports {names & set(OPTIONAL)} at import time"
        third_party |= names
    assert third_party <= CORE, f"undeclared core imports: {third_party - CORE}"


@pytest.fixture
def without(monkeypatch):
    """Make packages unimportable, as in an environment that lacks them."""

    def block(*names):
        for name in list(sys.modules):
            if name.split(".")[0] in names:
                monkeypatch.delitem(sys.modules, name)
        for name in names:
            monkeypatch.setitem(sys.modules, name, None)

    return block


def test_the_core_analyses_without_scipy_or_safetensors(tmp_path, without):
    without("scipy", "safetensors")
    rng = np.random.default_rng(0)
    write_safetensors(tmp_path / "m.safetensors", {"l.weight": rng.standard_t(3, (160, 96)).astype(np.float32)})
    result = runner.invoke(
        app, ["analyze", str(tmp_path / "m.safetensors"), "--min-evals", "10", "-f", "json", "--no-cache"]
    )
    assert result.exit_code == 0, result.output
    assert '"alpha"' in result.stdout
    needs_scipy = runner.invoke(app, ["analyze", str(tmp_path / "m.safetensors"), "--min-evals", "10", "--vectors"])
    assert needs_scipy.exit_code == 2
    assert "error: --vectors needs scipy: pip install 'weightscope-esd[vectors]'" in needs_scipy.stderr


@pytest.mark.slow
def test_the_cli_imports_a_command_module_only_when_it_is_used():
    script = (
        "import sys, weightscope.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith('weightscope.cli.') or m == 'numpy'))\n"
        "from typer.main import get_command\n"
        "group = get_command(weightscope.cli.app)\n"
        "group.get_command(None, 'cache')\n"
        "print(sorted(m for m in sys.modules if m.startswith('weightscope.cli.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    at_start, after_cache = done.stdout.splitlines()
    assert at_start == "['weightscope.cli.app', 'weightscope.cli.common']"
    assert (
        after_cache
        == "['weightscope.cli.app', 'weightscope.cli.cache', 'weightscope.cli.common', 'weightscope.cli.options']"
    )


#: Command lines that end before any work, and the first line each writes to stderr: help,
#: the version, a usage error, a bad option value, a path that holds no checkpoint (the
#: test makes EMPTY_DIRECTORY and NOT_A_CHECKPOINT).
NO_WORK = {
    "root-help": (["--help"], None),
    "version": (["--version"], None),
    "analyze-help": (["analyze", "--help"], None),
    "inspect-help": (["inspect", "--help"], None),
    "compare-help": (["compare", "--help"], None),
    "trend-help": (["trend", "--help"], None),
    "plot-help": (["plot", "--help"], None),
    "cache-help": (["cache", "info", "--help"], None),
    "gate-help": (["gate", "--help"], None),
    "watch-help": (["watch", "--help"], None),
    "usage-error": (["analyze", "model.safetensors", "--format", "xml"], "Usage: "),
    "analyze-missing-path": (["analyze", "/no/such/path"], "error: /no/such/path: no such file or directory"),
    "inspect-missing-path": (["inspect", "/no/such/path"], "error: /no/such/path: no such file or directory"),
    "compare-missing-path": (["compare", "NOT_A_CHECKPOINT", "/no/b"], "error: NOT_A_CHECKPOINT: not a checkpoint"),
    "trend-missing-path": (["trend", "/no/such/run"], "error: /no/such/run: no such file or directory"),
    "gate-missing-path": (["gate", "/no/such/path"], "error: /no/such/path: no such file or directory"),
    "watch-missing-run": (["watch", "/no/such/run", "--once"], "error: /no/such/run: not a directory"),
    "gate-missing-baseline": (
        ["gate", "NOT_A_CHECKPOINT", "--baseline", "/no/base"],
        "error: NOT_A_CHECKPOINT: not a checkpoint",
    ),
    "trend-no-checkpoints": (["trend", "EMPTY_DIRECTORY"], "error: EMPTY_DIRECTORY: no checkpoints in this directory"),
    "analyze-empty-directory": (["analyze", "EMPTY_DIRECTORY"], "error: EMPTY_DIRECTORY: directory holds no files"),
    "analyze-not-a-checkpoint": (["analyze", "NOT_A_CHECKPOINT"], "error: NOT_A_CHECKPOINT: not a checkpoint"),
    "bad-eig-dtype": (
        ["analyze", "model.safetensors", "--eig-dtype", "float16"],
        "error: eigenvalue dtype must be one of auto, float64, float32, got 'float16'",
    ),
    "bad-device": (
        ["analyze", "model.safetensors", "--device", "tpu"],
        "error: device must be one of auto, cpu, cuda, got 'tpu'",
    ),
}


@pytest.mark.parametrize(("args", "says"), NO_WORK.values(), ids=NO_WORK.keys())
def test_help_version_and_error_lines_import_no_numpy(args, says, tmp_path):
    """`-X importtime` lists every module the process imported: numpy must not be one of
    them (the command modules import the pipeline inside the commands, after the options
    and the path are checked; the checkpoint package tells files apart without numpy)."""
    (tmp_path / "EMPTY_DIRECTORY").mkdir()
    (tmp_path / "NOT_A_CHECKPOINT").write_text("hello\n")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "weightscope", *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    if says is None:
        assert done.returncode == 0 and not said, done.stderr[-2000:]
    else:
        assert done.returncode == 2 and said[0].startswith(says), said
        assert len(said) == 1 or says == "Usage: ", said  # an error is one line
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "weightscope.cli.app" in imported
    assert "numpy" not in imported, sorted(name for name in imported if name.startswith("weightscope"))
