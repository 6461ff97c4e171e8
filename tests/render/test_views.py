"""The human views as a user meets them: one alpha band everywhere, tables that fit a
120-column terminal in depth order, names that cannot forge output, options that mean
the same in every command, and the HTML report in a real browser."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from weightscope.config import Thresholds
from weightscope.errors import one_line as printable
from weightscope.render.compare_views import render_comparison
from weightscope.render.rows import depth_order, short_names
from weightscope.render.style import column_texts
from weightscope.render.table import render_report, report_table
from weightscope.report import FitTrust, LayerResult, Report
from weightscope.summary import summarize

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def llama_report(blocks: int = 12, thresholds: Thresholds | None = None, seed: int = 1) -> Report:
    """A Llama-named report stored alphabetically (as safetensors files store tensors)."""
    rng = np.random.default_rng(seed)
    layers = [
        LayerResult("lm_head.weight", "lm_head", None, (32000, 4096), "BF16", "ok", alpha=7.1, verdict="under-trained")
    ]
    for block in range(blocks):
        for part, kind in (("mlp.down_proj", "down"), ("self_attn.q_proj", "q"), ("self_attn.o_proj", "o")):
            alpha = float(rng.uniform(1.8, 7.5))
            layers.append(
                LayerResult(
                    f"model.layers.{block}.{part}.weight",
                    kind,
                    block,
                    (4096, 11008),
                    "BF16",
                    "ok",
                    alpha=alpha,
                    D=0.05,
                    num_tail=40,
                    lambda_max=float(rng.uniform(1, 300)),
                    log_norm=float(rng.uniform(-1, 1)),
                    stable_rank=12.0,
                    fit_trust=FitTrust(True, True, True, 0.1, None, None, True),
                    verdict="correlation-trap",
                )
            )
    layers.append(LayerResult("model.embed_tokens.weight", "embedding", None, (32000, 4096), "BF16", "ok", alpha=4.0))
    layers.sort(key=lambda layer: layer.name)  # storage order: layers.0, layers.1, layers.10, …, lm_head first
    options = {"thresholds": dataclasses.asdict(thresholds)} if thresholds else {}
    return Report(
        "/very/long/path/to/a/checkpoint/directory/model.safetensors",
        "safetensors",
        "0.1.0",
        options,
        layers,
        [],
        summarize(layers, [], thresholds),
    )


def rendered(render, *args, width: int = 120) -> str:
    console = Console(width=width, record=True, color_system=None)
    render(*args, console)
    return console.export_text()


# --- one alpha band -----------------------------------------------------------------------


def test_a_report_made_with_other_thresholds_is_counted_coloured_and_drawn_with_them():
    band = Thresholds(alpha_high=2.5, alpha_random=9.0)
    report = llama_report(thresholds=band)
    alphas = np.array([layer.alpha for layer in report.layers])
    s = report.summary
    assert report.thresholds == band  # read back from report.options["thresholds"]
    assert (s.below_2, s.in_2_6, s.above_6) == (
        (alphas < 2).sum(),
        ((alphas >= 2) & (alphas <= 2.5)).sum(),
        (alphas > 2.5).sum(),
    )
    assert s.above_6 > 20  # most layers are above 2.5: the band moved
    # the terminal colours: yellow exactly where alpha > 2.5
    table = report_table(report)
    alpha_column = next(c for c in table.columns if c.header == "alpha")
    from weightscope.render.rows import ordered_layers

    styles = [cell.style for cell in alpha_column._cells]
    assert [style == "yellow" for style in styles] == [layer.alpha > 2.5 for layer in ordered_layers(report)]
    text = rendered(render_report, report)
    assert f"alpha < 2: {s.below_2}   2–2.5: {s.in_2_6}   > 2.5: {s.above_6}" in text
    # the HTML: the summary cards and the cell classes
    from weightscope.render.html import report_html

    html = report_html(report)
    assert f'alpha &gt; 2.5<b class="high">{s.above_6}</b>' in html
    assert html.count('class="num high"') == s.above_6
    # the picture: the shaded band is 2–2.5
    pytest.importorskip("matplotlib")
    from weightscope.render.plot_summary import summary_figure

    axes = summary_figure(report).axes[0]
    (band_patch,) = [a for a in axes.get_children() if a.get_gid() == "alpha-band"]
    assert (band_patch.get_y(), band_patch.get_y() + band_patch.get_height()) == pytest.approx((2.0, 2.5))


def test_old_reports_without_recorded_thresholds_read_the_defaults():
    report = llama_report()
    assert report.options == {} and report.thresholds == Thresholds()
    assert Report.from_dict(json.loads(json.dumps(report.to_dict()))).thresholds == Thresholds()
    with pytest.raises(Exception, match="alpha_random"):
        Thresholds(alpha_high=9.0)


# --- tables ---------------------------------------------------------------------------------


def test_layer_table_fits_120_columns_by_depth_with_names_on_one_line():
    report = llama_report(blocks=12)
    text = rendered(render_report, report)
    table_lines = text.split("\n\n")[0].splitlines() + text.splitlines()
    assert max(len(line) for line in table_lines) <= 120
    names = short_names([layer.name for layer in report.layers])
    assert "'model.layers.N.' (N = blk)" in names.dropped and "'.weight'" in names.dropped
    assert names.dropped in text
    rows = [line for line in text.splitlines() if re.match(r"^\s*(\d+)?\s+(mlp|self_attn|model|lm_head|embed)", line)]
    shown = [re.split(r"\s{2,}", line.strip()) for line in rows]
    blocks = [int(cells[0]) for cells in shown if cells[0].isdigit()]
    assert blocks == sorted(blocks) and blocks[-1] == 11  # numeric, not 0, 1, 10, 11, 2
    assert "embed_tokens" in rows[0] and "lm_head" in rows[-1]  # embeddings first, head last
    for name in ("self_attn.q_proj", "self_attn.o_proj", "mlp.down_proj", "correlation-trap"):
        assert all(name in line for line in rows if name.split(".")[-1] in line)  # never cut or wrapped
    assert "median alpha by block: 0: " in text and ", 11: " in text


def test_compare_table_fits_120_columns():
    from weightscope.commands.compare import compare_reports

    a = llama_report(seed=1)
    b = llama_report(seed=2)
    text = rendered(render_comparison, compare_reports(a, b))
    assert (
        max(
            len(line)
            for line in text.splitlines()
            if "│" not in line and not line.startswith(("alpha moved", "verdicts"))
        )
        <= 120
    )
    for block in range(12):
        assert re.search(rf"^\s*{block}\s+self_attn\.q_proj\s", text, re.MULTILINE)


def test_depth_order_and_short_names():
    kinds = ["lm_head", "q", "q", "embedding", "q"]
    blocks = [None, 10, 2, None, 0]
    assert depth_order(kinds, blocks) == [3, 4, 2, 1, 0]
    assert short_names(["a.b.weight"]).names == ["a.b"]
    mixed = short_names(["encoder.block.0.x.weight", "decoder.block.0.x.weight"])
    assert mixed.names == ["encoder.block.0.x", "decoder.block.0.x"]  # two stems: only the suffix goes


def test_one_format_per_column_and_ascii_minus():
    assert column_texts([1.6, 1.676, None, -0.5], 2) == ["1.60", "1.68", "—", "-0.50"]
    assert column_texts([3e-4, 0.05], 3) == ["3.00e-04", "5.00e-02"]
    assert column_texts([0.2, -0.1], 2, signed=True) == ["+0.20", "-0.10"]


# --- names from files are printed, never interpreted ------------------------------------------


def test_names_with_markup_and_control_characters_are_printed_escaped():
    evil = ["net[red].layer.weight", "x[/]y.weight", "evil\x1b[31m\nhealthy  forged.weight"]
    layers = [
        LayerResult(
            name, "other", None, (64, 64), "F32", "ok", alpha=3.0, verdict="under-trained", reasons=["r\nforged line"]
        )
        for name in evil
    ]
    report = Report("p[bold]x", "safetensors", "0", {}, layers, [], summarize(layers, []))
    text = rendered(render_report, report, width=200)
    assert "net[red].layer" in text and "x[/]y" in text and "p[bold]x" in text
    assert "\x1b" not in text and "\\x1b[31m\\nhealthy" in text
    assert not any(line.startswith("healthy") for line in text.splitlines())
    assert printable("a\u202eb\tc") == "a\\u202eb\\tc"


# --- the command line -------------------------------------------------------------------------


def invoke(*args):
    from typer.testing import CliRunner

    from weightscope.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    from weightscope.checkpoint import write_safetensors

    rng = np.random.default_rng(0)
    tensors = {
        f"model.layers.{b}.mlp.down_proj.weight": (rng.standard_t(3, (192, 96)) * 0.02).astype(np.float32)
        for b in range(3)
    }
    directory = tmp_path_factory.mktemp("a-directory-with-a-long-name-" + "x" * 60)
    return write_safetensors(directory / "model.safetensors", tensors)


def test_inspect_json_quiet_verbose_and_wrote_path_on_one_line(small_checkpoint, tmp_path):
    done = invoke("inspect", small_checkpoint, "-f", "json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["analysed"] == 3 and {t["name"] for t in data["tensors"] if t["analysed"]} == {
        f"model.layers.{b}.mlp.down_proj.weight" for b in range(3)
    }
    target = tmp_path / ("deep-" + "y" * 90) / "report.json"
    target.parent.mkdir()
    loud = invoke("analyze", small_checkpoint, "-o", target, "-v")
    assert loud.exit_code == 0, loud.output
    assert f"wrote {target}\n" in loud.output  # whole, on one line, however long
    assert "thresholds: " in loud.output and "alpha_high=6.0" in loud.output and "analysed 3 layers in" in loud.output
    quiet = invoke("analyze", small_checkpoint, "-o", target, "-q")
    assert quiet.exit_code == 0 and quiet.output == ""


def test_trend_markdown_and_plot_out_dir(small_checkpoint, tmp_path):
    done = invoke("trend", small_checkpoint, small_checkpoint, "-f", "md", "-q")
    assert done.exit_code == 0, done.output
    assert done.output.startswith("# weightscope trend") and "| `model.layers.0.mlp.down_proj.weight` |" in done.output
    pytest.importorskip("matplotlib")
    assert (
        invoke("plot", small_checkpoint, "--summary", "-o", tmp_path).exit_code == 2
    )  # -o names files, not directories
    done = invoke("plot", small_checkpoint, "--summary", "-d", tmp_path / "pics")
    assert done.exit_code == 0 and (tmp_path / "pics" / "summary.png").is_file()
    old = invoke("plot", small_checkpoint, "--summary", "--out", tmp_path / "old")
    assert old.exit_code == 0 and (tmp_path / "old" / "summary.png").is_file() and "deprecated" in old.output


def test_help_shows_choices():
    for command in ("analyze", "inspect", "trend", "plot", "compare", "gate"):
        done = invoke(command, "--help")
        assert done.exit_code == 0
        assert "<str>" not in done.output and "{path}" not in done.output, command
        assert "--quiet" in done.output and "--verbose" in done.output, command


# --- the ESD figure ----------------------------------------------------------------------------


def test_esd_figure_draws_the_randomised_edge_warns_on_a_wrong_mp_fit_and_has_a_ccdf():
    pytest.importorskip("matplotlib")
    from weightscope.render.plot_esd import esd_figure
    from weightscope.report import MPBulk, Traps

    rng = np.random.default_rng(3)
    evals = np.sort(rng.pareto(2.0, 384) + 0.01)
    rand_evals = np.sort(rng.uniform(0.5, 1.5, 384))
    result = LayerResult(
        "embeddings.word_embeddings.weight",
        "embedding",
        None,
        (30522, 384),
        "F32",
        "ok",
        alpha=3.0,
        xmin=1.0,
        xmax=float(evals[-1]),
        num_tail=150,
        D=0.04,
        lambda_max=float(evals[-1]),
        mp=MPBulk(0.1, 0.05, 0.2, 226, 0.1),
        traps=Traps(0, 1.5, 1.6),
        fit_trust=FitTrust(False, True, True, 0.1, None, None, False),
        flags=["small-tail"],
        verdict="untrusted-fit",
    )
    figure = esd_figure(result, evals, rand_evals)
    loglog, linear, ccdf = figure.axes[:3]
    (edge,) = [a for a in linear.get_children() if a.get_gid() == "randomised-edge"]
    assert edge.get_xdata()[0] == 1.6 and "traps" in edge.get_label()
    assert linear.get_xlim()[1] >= 1.6  # the edge the traps are judged against is on the axis
    assert "MP fit doubtful: 226 of 384" in figure.get_suptitle()
    assert "untrusted: tail too small" in loglog.get_title(loc="left")
    (fit,) = [a for a in ccdf.get_children() if a.get_gid() == "ccdf-fit"]
    x, y = fit.get_xdata(), fit.get_ydata()
    np.testing.assert_allclose(np.diff(np.log(y)) / np.diff(np.log(x)), 1 - result.alpha, atol=1e-9)
    assert y[0] == pytest.approx(150 / 384)  # P(Λ ≥ xmin) is the tail's share
    (empirical,) = [a for a in ccdf.get_children() if a.get_gid() == "ccdf"]
    xs, ys = empirical.get_xdata(), empirical.get_ydata()
    assert ys[0] == 1.0 and np.all(np.diff(ys) <= 0)
    at = np.searchsorted(xs, 1.0)
    assert ys[at] == pytest.approx((evals >= xs[at]).mean(), abs=1e-12)


def test_summary_figure_marks_each_verdict_with_its_marker():
    pytest.importorskip("matplotlib")
    from matplotlib.markers import MarkerStyle

    from weightscope.render.plot_summary import VERDICT_MARKERS, summary_figure

    report = llama_report(blocks=2)
    axes = summary_figure(report).axes[0]
    seen = set()
    for collection in axes.collections:
        gid = collection.get_gid() or ""
        if gid.startswith("alpha:"):
            verdict = gid.split(":")[3]
            style = MarkerStyle(VERDICT_MARKERS.get(verdict, "P"))
            expected = style.get_path().transformed(style.get_transform()).vertices
            np.testing.assert_allclose(collection.get_paths()[0].vertices, expected)
            seen.add(verdict)
    assert {"correlation-trap", "under-trained", "none"} <= seen


# --- the HTML report in a browser ---------------------------------------------------------------


def run_in_chromium(page: Path, script: str, workdir: Path, width: int = 1400) -> str:
    """The DOM after the page's own script and then ``script`` ran (its result in data-probe)."""
    probe = page.with_name("probe-" + page.name)
    probe.write_text(
        page.read_text(encoding="utf-8").replace("</body>", f"<script>{script}</script></body>"), encoding="utf-8"
    )
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={workdir / 'profile'}",
            f"--window-size={width},900",
            "--dump-dom",
            probe.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return re.search(r'data-probe="([^"]*)"', done.stdout).group(1)


@needs_chromium
def test_html_filters_by_verdict_and_kind_and_fits_1400_pixels(tmp_path):
    from weightscope.render.html import write_html_report

    report = llama_report(blocks=4)
    page = tmp_path / "report.html"
    write_html_report(report, page)
    script = """
      function pick(key, value) { var s = document.querySelector('select[data-filter="' + key + '"]');
        s.value = value; s.dispatchEvent(new Event('change')); }
      pick('verdict', 'correlation-trap'); pick('kind', 'q');
      var shown = Array.prototype.filter.call(document.querySelectorAll('#layers tbody tr'),
        function (r) { return !r.classList.contains('hidden'); }).map(function (r) { return r.cells[1].title; });
      document.body.setAttribute('data-probe', document.documentElement.scrollWidth + '|'
        + Math.round(document.getElementById('layers').getBoundingClientRect().width) + '|'
        + document.getElementById('filter-count').textContent + '|' + shown.join(','));
    """
    page_width, table_width, count, shown = run_in_chromium(page, script, tmp_path).split("|")
    expected = [layer.name for layer in report.layers if layer.kind == "q" and layer.verdict == "correlation-trap"]
    assert (
        sorted(shown.split(",")) == sorted(expected)
        and count == f"{len(expected)} of {len(report.layers)} layers shown"
    )
    assert int(page_width) <= 1400 and int(table_width) <= 1400 - 2 * 24


@needs_chromium
def test_compare_page_fits_1400_pixels(tmp_path):
    pytest.importorskip("matplotlib")
    from weightscope.commands.compare import compare_reports
    from weightscope.render.html_compare import write_compare_html

    page = tmp_path / "compare.html"
    write_compare_html(compare_reports(llama_report(seed=1), llama_report(seed=2)), page)
    script = (
        "document.body.setAttribute('data-probe', document.documentElement.scrollWidth + '|'"
        " + Math.round(document.getElementById('layers').getBoundingClientRect().width));"
    )
    page_width, table_width = map(int, run_in_chromium(page, script, tmp_path).split("|"))
    assert page_width <= 1400 and table_width <= 1400 - 2 * 24
