"""The pieces behind the Safety promises, checked directly (the corpus checks them end to
end): the output writer, the pickle walk, the scale-free spectrum, report validation."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.corpus import enospc_after, small_layers
from tests.helpers import planted_power_law
from weightscope.analysis.pipeline import analyze
from weightscope.checkpoint import input_files, write_safetensors
from weightscope.errors import WeightscopeError, one_line
from weightscope.execution.plan import Execution
from weightscope.io import check_outputs, destination, write_atomic
from weightscope.linalg.spectrum import SpectrumOptions, gram_eigenvalues
from weightscope.report import Report


def test_destination_streams_devices_and_renames_files(tmp_path: Path) -> None:
    assert destination("/dev/null").stream  # classified only: no test writes the machine's /dev/null
    assert destination("-").stdout
    assert not destination(tmp_path / "new.json").stream
    assert destination("/dev/fd/1").stream and destination("/proc/self/fd/1").stream
    if Path("/dev/shm").is_dir():
        assert not destination("/dev/shm/weightscope-report.json").stream  # ordinary files live there
    (tmp_path / "real.json").write_text("x")
    (tmp_path / "link.json").symlink_to("real.json")
    assert destination(tmp_path / "link.json").target == (tmp_path / "real.json").resolve()
    with pytest.raises(WeightscopeError, match="is a directory"):
        destination(tmp_path)


def test_write_atomic_keeps_links_modes_and_devices(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    os.chmod(real, 0o640)
    (tmp_path / "link.json").symlink_to("real.json")
    write_atomic(tmp_path / "link.json", "new")
    assert (tmp_path / "link.json").is_symlink() and real.read_text() == "new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    link = tmp_path / "out"
    link.symlink_to("/proc/self/fd/1")
    assert destination(link).stream  # someone's open file: written in place, never renamed onto


def test_full_disk_leaves_the_old_file_and_no_partial_one(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("previous")
    with enospc_after(10), pytest.raises(WeightscopeError, match="No space left on device"):
        write_atomic(target, [b"12345", b"67890", b"overflow"])
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_outputs_that_are_inputs_are_refused_by_identity(tmp_path: Path) -> None:
    layers = small_layers()
    names = list(layers)
    model = tmp_path / "model"
    model.mkdir()
    write_safetensors(model / "a.safetensors", {names[0]: layers[names[0]]})
    write_safetensors(model / "b.safetensors", {names[1]: layers[names[1]]})
    index = model / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {names[0]: "a.safetensors", names[1]: "b.safetensors"}}))
    inputs = input_files(model)
    assert {p.name for p in inputs} >= {"a.safetensors", "b.safetensors", "model.safetensors.index.json"}
    os.link(model / "b.safetensors", tmp_path / "hard.json")
    for output in (index, model / "b.safetensors", tmp_path / "hard.json"):
        with pytest.raises(WeightscopeError, match="input of this run"):
            check_outputs([output], inputs)
    check_outputs([tmp_path / "report.json", "/dev/null", "-"], inputs)  # fine
    assert not (tmp_path / "report.json").exists()  # the probe leaves nothing behind


def test_shared_pickle_structure_is_walked_once(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from weightscope.checkpoint import open_checkpoint

    tree = torch.ones(2, 2)
    for _ in range(60):
        tree = (tree, tree)
    torch.save({"w": tree}, tmp_path / "bomb.pt")
    with open_checkpoint(tmp_path / "bomb.pt") as reader:
        names = [info.name for info in reader.tensors()]
    deepest = "w" + ".0" * 59
    assert names == [deepest + ".0", deepest + ".1"]  # the innermost pair only, not 2^60 paths


@pytest.mark.parametrize("exponent", [-100, -60, 60, 100])
def test_eigenvalues_of_a_scaled_matrix_scale_exactly(exponent: int) -> None:
    w = planted_power_law(256, 128, alpha=3.0, seed=4)
    plain = gram_eigenvalues(w, SpectrumOptions("float32"))
    scaled = gram_eigenvalues(np.ldexp(w, exponent), SpectrumOptions("float32"))
    assert np.all(np.isfinite(scaled)) and scaled[-1] > 0
    np.testing.assert_allclose(np.ldexp(scaled, -2 * exponent), plain, rtol=0, atol=1e-12 * plain[-1])


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_alpha_is_scale_free_under_the_default_precision(tmp_path: Path, scale: float) -> None:
    w = planted_power_law(256, 128, alpha=3.0, seed=5)
    runs = {}
    for name, values in (("plain", w), ("scaled", (w.astype(np.float64) * scale).astype(np.float32))):
        path = write_safetensors(tmp_path / f"{name}.safetensors", {"layer.weight": values})
        runs[name] = analyze(path, execution=Execution(cache=False)).layers[0]
    assert runs["scaled"].status == "ok", runs["scaled"].reason
    assert runs["scaled"].alpha == pytest.approx(runs["plain"].alpha, rel=1e-4)
    assert runs["scaled"].verdict == runs["plain"].verdict


def test_report_fields_are_type_checked(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", small_layers())
    data = analyze(path, execution=Execution(cache=False)).to_dict()
    assert Report.from_dict(json.loads(json.dumps(data))).to_dict() == data
    data["layers"][1]["num_evals"] = 1.5
    with pytest.raises(WeightscopeError, match=r"layers\[1\]\.num_evals: expected a whole number"):
        Report.from_dict(data)


def test_one_line_escapes_controls_and_keeps_text() -> None:
    assert one_line("a\nb\x1b[31mc\u00e9") == "a\\nb\\x1b[31mc\u00e9"


def test_enospc_helper_raises_enospc(tmp_path: Path) -> None:
    with enospc_after(0), pytest.raises(WeightscopeError) as caught:
        write_atomic(tmp_path / "x", b"1")
    assert os.strerror(errno.ENOSPC) in str(caught.value)


def test_torch_tensors_are_read_from_the_file_not_the_map(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from weightscope.checkpoint import open_checkpoint

    base = torch.randn(64, 48, generator=torch.Generator().manual_seed(0))
    tensors = {
        "plain": base,
        "rows": base[2:9],  # a view at an offset into a shared storage
        "transposed": base.t(),
        "bf16": torch.randn(32, 16).to(torch.bfloat16),
        "f64": torch.randn(7, 3, dtype=torch.float64),
        "empty": torch.randn(5, 0),
    }
    torch.save(tensors, tmp_path / "z.pt")
    with open_checkpoint(tmp_path / "z.pt") as reader:
        assert reader._offsets is not None or sys.platform != "linux"  # Linux: never copied from the map
        for info in reader.tensors():
            expected = tensors[info.name].to(torch.float64 if info.dtype == "F64" else torch.float32).numpy()
            np.testing.assert_array_equal(reader.read(info), expected)


def test_user_patterns_run_in_linear_time_and_unsupported_ones_are_named() -> None:
    import time

    from weightscope.patterns import compile_pattern

    text = "model." + "a." * 5000 + "weight"
    started = time.perf_counter()
    for pattern in (r"(.*\.)*lm_head$", r"(a+)+$", r"(\d+)+y"):
        assert compile_pattern(pattern, "--include").search(text) is None
    assert time.perf_counter() - started < 1.0  # Python's re: beyond any bound for these
    assert compile_pattern("q_proj", "--include").search("blk.\ud800.q_proj") is not None  # a lone surrogate is text
    assert compile_pattern(r"step(\d+)", "--step-regex", ignore_case=True).search("STEP42").group(1) == "42"
    with pytest.raises(
        WeightscopeError, match=r"--include '\(a\)\\\\1' is not a regular expression weightscope can run"
    ):
        compile_pattern(r"(a)\1", "--include")


def test_one_line_leaves_no_workflow_command() -> None:
    assert one_line("::error title=ALL CLEAR::x") == "\\x3a:error title=ALL CLEAR\\x3a:x"
    assert "::" not in one_line(":::a::::b") and one_line("a:b") == "a:b"
    assert one_line("x\ud800") == "x\\ud800"


def test_loading_a_saved_report_costs_about_its_json_parse(tmp_path: Path) -> None:
    """20k layers: `Report.from_dict` at most 1.5× `json.loads` of the same text, measured
    side by side (ratios hold on a loaded machine; absolute times do not)."""
    import time

    path = write_safetensors(tmp_path / "m.safetensors", small_layers())
    data = analyze(path, execution=Execution(cache=False)).to_dict()
    layer = data["layers"][0]
    data["layers"] = [{**layer, "name": f"model.layers.{i}.mlp.up_proj.weight"} for i in range(20_000)]
    text = json.dumps(data)
    started = time.perf_counter()
    parsed = json.loads(text)
    parse = time.perf_counter() - started
    started = time.perf_counter()
    report = Report.from_dict(parsed)
    load = time.perf_counter() - started
    assert len(report.layers) == 20_000
    assert load <= 1.5 * parse, (load, parse)


def test_cache_entries_are_regular_files_with_solver_shaped_eigenvalues(tmp_path: Path) -> None:
    from weightscope.execution.cache import CacheStore

    store = CacheStore(tmp_path / "c")
    store.store_arrays("a" * 40, {"evals": np.arange(4.0)})
    store.store_arrays("b" * 40, {"evals": np.arange(4.0) * 10})
    entry = store.path("spectra", "a" * 40)
    entry.unlink()
    entry.symlink_to(store.path("spectra", "b" * 40))
    assert store.load_arrays("a" * 40) is None and not entry.is_symlink()  # refused and removed
    os.mkfifo(entry)
    assert store.load_arrays("a" * 40) is None and not entry.exists()  # no hang on a FIFO
    assert store.load_arrays("b" * 40)["evals"][-1] == 30.0
