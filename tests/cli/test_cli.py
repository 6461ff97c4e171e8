"""The CLI end to end, as a user runs it: exit codes, clean stdout, one-line errors."""

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.helpers import gaussian, planted_power_law
from weightscope._version import __version__
from weightscope.cli import app

EXAMPLE_RUN = Path(__file__).resolve().parents[2] / "examples" / "runs" / "tiny-lm"


def _step(path: Path) -> int:
    return int(re.search(r"(\d+)$", path.name).group(1))


@pytest.fixture(scope="module")
def example_checkpoint() -> Path:
    steps = sorted(EXAMPLE_RUN.glob("step-*"), key=_step)
    assert steps, f"the example run is missing under {EXAMPLE_RUN}"
    return steps[-1] / "model.safetensors"


runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_version_and_help():
    assert run("--version").stdout.strip() == f"weightscope {__version__}"
    result = run("--help")
    assert result.exit_code == 0
    assert "analyze" in result.stdout and "inspect" in result.stdout and "alpha" in result.stdout


def test_analyze_example_table(example_checkpoint):
    result = run("analyze", example_checkpoint)
    assert result.exit_code == 0, result.output
    assert "q_proj" in result.stdout and "median alpha" in result.stdout


def test_analyze_example_machine_formats_agree(example_checkpoint, tmp_path):
    as_json = json.loads(run("analyze", example_checkpoint, "--format", "json").stdout)
    assert as_json["schema"] == "weightscope.report/4"
    assert {"schema", "weightscope_version", "source", "options", "layers", "summary"} <= set(as_json)
    layers = as_json["layers"]
    assert len(layers) >= 20 and all(layer["status"] == "ok" for layer in layers)
    required = {
        "name",
        "kind",
        "block",
        "shape",
        "dtype",
        "status",
        "reason",
        "alpha",
        "xmin",
        "xmax",
        "D",
        "sigma",
        "num_tail",
        "num_evals",
        "lambda_max",
        "log_norm",
        "log_spectral_norm",
        "alpha_weighted",
        "log_norm_per_n",
        "log_spectral_norm_per_n",
        "alpha_weighted_per_n",
        "stable_rank",
        "entropy",
    }
    assert required <= set(layers[0])

    rows = list(csv.DictReader(io.StringIO(run("analyze", example_checkpoint, "-f", "csv").stdout)))
    assert [r["name"] for r in rows] == [layer["name"] for layer in layers]
    assert [float(r["alpha"]) for r in rows] == pytest.approx([layer["alpha"] for layer in layers])

    markdown = run("analyze", example_checkpoint, "-f", "md").stdout
    assert markdown.count("\n| ") == len(layers) + 1  # header row + one per layer

    out = tmp_path / "report.json"
    result = run("analyze", example_checkpoint, "-o", out)
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(out.read_text())["layers"] == layers


def test_inspect_lists_skipped_tensors_with_reasons(example_checkpoint):
    result = run("inspect", example_checkpoint)
    assert result.exit_code == 0
    assert "skipped: 1-D tensor (bias or norm)" in result.stdout
    assert "would be analysed" in result.stdout


@pytest.mark.parametrize(
    "content",
    [None, b"", b"definitely not a checkpoint\n", b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": 1'],
    ids=["missing", "empty", "text", "truncated-header"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, content):
    path = tmp_path / "model.safetensors"
    if content is not None:
        path.write_bytes(content)
    result = run("analyze", path)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) == 1


def test_nan_layer_fails_alone(tmp_path):
    from weightscope.checkpoint import write_safetensors

    bad = gaussian(128, 64, 1)
    bad[0, 0] = np.nan
    write_safetensors(tmp_path / "m.safetensors", {"bad": bad, "good": planted_power_law(256, 128, 3.0, 1)})
    data = json.loads(run("analyze", tmp_path / "m.safetensors", "-f", "json").stdout)
    status = {layer["name"]: (layer["status"], layer["reason"]) for layer in data["layers"]}
    assert status["bad"] == ("failed", "weights contain 1 NaN and 0 Inf values")
    assert status["good"][0] == "ok"


def test_bad_usage_exits_2(tmp_path):
    assert run("analyze", tmp_path, "--include", "(").exit_code == 2
    assert run("analyze", tmp_path, "--format", "xml").exit_code == 2
    assert run("analyze", tmp_path, "-o", tmp_path / "report.txt").exit_code == 2


@pytest.mark.slow
def test_python_dash_m_entry_point(example_checkpoint):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "weightscope",
            "analyze",
            str(example_checkpoint),
            "--include",
            "layers\\.0\\.",
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["summary"]["analysed"] >= 7
