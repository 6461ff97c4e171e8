"""The GitHub Action (`action.yml`) and the pre-commit hook (`.pre-commit-hooks.yaml`) run
what their files say.

The action's steps are shell scripts GitHub runs with the inputs in the environment; here
the same scripts run under bash with the same environment, against the example run, so a
change to the command line (a flag renamed, an input pasted into the script) fails here and
not in a user's workflow. The hook runs through `pre-commit try-repo`, as a user would try it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
HOOKS = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
EXAMPLE = ROOT / "examples" / "runs" / "tiny-lm" / "step-200" / "model.safetensors"
INPUT = re.compile(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}")


#: The layer `_broken_example` plants a NaN in: a failed layer fails the default gate.
BROKEN_LAYER = "model.layers.0.mlp.up_proj.weight"


def _broken_example(directory: Path) -> Path:
    """The example checkpoint with one NaN in one layer (the out-of-band alphas of the
    example itself are warnings, which the default gate does not fail)."""
    import numpy as np

    from weightscope.checkpoint import open_checkpoint, write_safetensors

    with open_checkpoint(EXAMPLE) as reader:
        tensors = {info.name: np.array(reader.read(info)) for info in reader.tensors()}
    tensors[BROKEN_LAYER][0, 0] = np.nan
    path = directory / "model.safetensors"
    write_safetensors(path, tensors)
    return path


def _step(name: str) -> dict:
    return next(step for step in ACTION["runs"]["steps"] if step.get("name") == name)


def _environment(step: dict, inputs: dict[str, str], bin_dir: Path) -> dict[str, str]:
    """The environment GitHub gives a step: its `env:` with the inputs filled in."""
    values = {name: spec.get("default", "") for name, spec in ACTION["inputs"].items()} | inputs
    env = {key: INPUT.sub(lambda m: values[m.group(1)], str(value)) for key, value in step.get("env", {}).items()}
    return {**os.environ, **env, "GITHUB_ACTION_PATH": str(ROOT), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """`weightscope` and `python` on PATH are the interpreter and code under test."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, command in (("weightscope", "-m weightscope"), ("python", "")):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" {command} "$@"\n')
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _run_step(name: str, inputs: dict[str, str], bin_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    step = _step(name)
    assert step["shell"] == "bash" and INPUT.search(step["run"]) is None, "inputs reach the script through env only"
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        env=_environment(step, inputs, bin_dir),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_action_is_a_composite_that_installs_by_distribution_name():
    assert ACTION["runs"]["using"] == "composite"
    assert ACTION["inputs"]["path"]["required"] is True
    assert "weightscope-esd" in _step("Install weightscope-esd")["run"]
    assert "--format github" in _step("weightscope gate")["run"]


def test_the_actions_gate_annotates_and_fails_a_broken_checkpoint(bin_dir: Path, tmp_path: Path):
    broken = _broken_example(tmp_path)
    done = _run_step("weightscope gate", {"path": str(broken)}, bin_dir, tmp_path)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith("::error ")]
    assert errors and all("title=weightscope " in line for line in errors)
    assert any(BROKEN_LAYER in line for line in errors)


def test_the_actions_args_reach_the_gate(bin_dir: Path, tmp_path: Path):
    done = _run_step("weightscope gate", {"path": str(EXAMPLE), "args": "--min-alpha 1.5"}, bin_dir, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "::error" not in done.stdout


def test_an_input_is_never_run_as_shell(bin_dir: Path, tmp_path: Path):
    hostile = f"{EXAMPLE} $(touch pwned) `touch pwned`"
    done = _run_step("weightscope gate", {"path": hostile}, bin_dir, tmp_path)
    assert done.returncode == 2 and not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_the_actions_install_step_resolves_this_distribution(bin_dir: Path, tmp_path: Path):
    """The step's own command, resolved by pip without installing anything (pip's options
    from the environment: a dry run, no index, no build isolation)."""
    report = tmp_path / "report.json"
    step = _step("Install weightscope-esd")
    env = _environment(step, {"path": ".", "extras": "plot"}, bin_dir) | {
        "PIP_DRY_RUN": "1",
        "PIP_NO_DEPS": "1",
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",
        "PIP_REPORT": str(report),
    }
    done = subprocess.run(
        ["bash", "-e", "-c", step["run"]], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    (install,) = json.loads(report.read_text())["install"]
    assert install["metadata"]["name"] == "weightscope-esd" and install["requested_extras"] == ["plot"]


@pytest.mark.slow
def test_the_pre_commit_hook_gates_staged_checkpoints(tmp_path: Path):
    """`pre-commit try-repo` installs the hook from this repository's HEAD into its own
    environment and runs it on a git repository with a checkpoint staged."""
    pre_commit = shutil.which("pre-commit") or pytest.skip("pre-commit is not installed (the test extra has it)")
    (hook,) = HOOKS
    assert hook["id"] == "weightscope-gate" and re.search(hook["files"], "model.safetensors")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit"),
        "WEIGHTSCOPE_CACHE_DIR": str(tmp_path / "cache"),
    }
    env.pop("PYTHONPATH", None)  # the hook's own environment, not the code under test here
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _broken_example(repo)
    subprocess.run(["git", "add", "model.safetensors"], cwd=repo, check=True)
    try_repo = [pre_commit, "try-repo", str(ROOT), "weightscope-gate", "--files", "model.safetensors"]

    failed = subprocess.run(try_repo, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"FAIL [failed-layer] {BROKEN_LAYER}" in failed.stdout

    exclude = "^" + BROKEN_LAYER.replace(".", "\\.") + "$"
    (repo / "pyproject.toml").write_text(f"[tool.weightscope.gate]\nexclude = ['{exclude}']\n")
    passed = subprocess.run(try_repo, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "weightscope gate passed" in passed.stdout or "Passed" in passed.stdout
