"""The Hugging Face hub cache, laid out on disk as huggingface_hub lays it out: blobs,
refs/<revision> → commit, snapshots/<commit>/ with symlinks into the blobs."""

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tests.helpers import planted_power_law
from weightscope.checkpoint import open_checkpoint, write_safetensors
from weightscope.checkpoint.hub import resolve
from weightscope.cli import app
from weightscope.errors import CheckpointError

pytest.importorskip("huggingface_hub")
runner = CliRunner()
MAIN, OLD = "a" * 40, "b" * 40


def build_cache(hub_dir):
    """models--org--tiny with two snapshots: main (2 layers) and an older commit (1 layer)."""
    repo = hub_dir / "models--org--tiny"
    for commit, layers in ((MAIN, 2), (OLD, 1)):
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        blob = repo / "blobs" / f"{commit}-weights"
        blob.parent.mkdir(exist_ok=True)
        write_safetensors(
            blob, {f"model.layers.{i}.mlp.up_proj.weight": planted_power_law(192, 128, 3.0, i) for i in range(layers)}
        )
        os.symlink(os.path.relpath(blob, snapshot), snapshot / "model.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(MAIN)
    (repo / "refs" / "v1").write_text(OLD)
    return repo


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    hub_dir = tmp_path / "hf" / "hub"
    repo = build_cache(hub_dir)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return repo


def test_cache_directory_and_model_id_resolve_to_the_snapshot(hub_cache):
    assert resolve(hub_cache) == hub_cache / "snapshots" / MAIN
    assert resolve(hub_cache, revision="v1") == hub_cache / "snapshots" / OLD
    assert resolve("org/tiny", revision=OLD) == hub_cache / "snapshots" / OLD
    with open_checkpoint(hub_cache) as reader:
        assert len(reader.tensors()) == 2
    with open_checkpoint("org/tiny") as reader:
        assert len(reader.tensors()) == 2


def test_cli_revision_and_offline_errors(hub_cache):
    result = runner.invoke(app, ["analyze", "org/tiny", "--revision", "v1", "-f", "json", "--no-cache"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count('"name": "model.layers.') == 1
    missing = runner.invoke(app, ["analyze", "org/absent"])
    assert missing.exit_code == 2 and "not in the Hugging Face cache (pass --download" in missing.output
    with pytest.raises(CheckpointError, match="revision 'nope'"):
        resolve(hub_cache, revision="nope")
    not_hub = runner.invoke(
        app, ["analyze", str(hub_cache / "snapshots" / MAIN / "model.safetensors"), "--revision", "v1"]
    )
    assert not_hub.exit_code == 2 and "apply to a hub model id" in not_hub.output


def test_hf_home_is_honoured_end_to_end(tmp_path):
    """A fresh process with only HF_HOME set finds the model by id (no monkeypatching)."""
    build_cache(tmp_path / "home" / "hub")
    env = {**os.environ, "HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-m", "weightscope", "inspect", "org/tiny"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "model.layers.1.mlp.up_proj.weight" in done.stdout
