"""Pictures: valid PNGs that draw the report's numbers, against closed forms and planted data."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.png_checks import assert_picture

pytest.importorskip("matplotlib")

from weightscope.errors import WeightscopeError
from weightscope.render.esd_data import aspect_ratio, mp_density, mp_edges
from weightscope.render.plot_esd import esd_figure
from weightscope.render.plot_summary import depth_axis, summary_figure
from weightscope.render.plots import (
    KIND_COLORS,
    png_bytes,
    png_file_name,
    require_matplotlib,
)
from weightscope.report import DragonKings, FitTrust, LayerResult, MPBulk, Report
from weightscope.summary import summarize

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_python(script: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter (so imports start clean) on this checkout, with no display."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
    )


def by_gid(axes, gid):
    return [artist for artist in axes.get_children() if artist.get_gid() == gid]


def bar_heights_and_widths(axes, gid):
    bars = by_gid(axes, gid)
    return np.array([b.get_height() for b in bars]), np.array([b.get_width() for b in bars]), bars


def gram_evals(w: np.ndarray) -> np.ndarray:
    """ESD of W by plain numpy (independent of weightscope.linalg.spectrum)."""
    n = max(w.shape)
    small = w if w.shape[0] >= w.shape[1] else w.T
    return np.linalg.eigvalsh(small.T @ small / n)


def planted_tail_layer(alpha=2.7, xmin=1.5, n_bulk=300, n_tail=150, seed=0, **extra):
    """A spectrum whose top n_tail eigenvalues are exact Pareto(alpha) draws above xmin."""
    rng = np.random.default_rng(seed)
    tail = xmin * (1.0 - rng.random(n_tail)) ** (-1.0 / (alpha - 1.0))
    bulk = rng.uniform(0.05, xmin, n_bulk)
    evals = np.sort(np.concatenate([bulk, tail]))
    result = LayerResult(
        "model.layers.4.mlp.down_proj.weight",
        "down",
        4,
        (1024, evals.size),
        "BF16",
        "ok",
        num_evals=evals.size,
        alpha=alpha,
        xmin=xmin,
        xmax=float(evals[-1]),
        D=0.031,
        sigma=0.14,
        num_tail=n_tail,
        lambda_max=float(evals[-1]),
        verdict="healthy",
        **extra,
    )
    return result, evals


# --- ESD figure ------------------------------------------------------------------------------


def test_fitted_line_has_slope_minus_alpha_and_spans_the_tail():
    result, evals = planted_tail_layer(alpha=2.7)
    loglog = esd_figure(result, evals).axes[0]
    (line,) = by_gid(loglog, "powerlaw-fit")
    x, y = line.get_xdata(), line.get_ydata()
    slopes = np.diff(np.log(y)) / np.diff(np.log(x))
    np.testing.assert_allclose(slopes, -result.alpha, rtol=0, atol=1e-9)
    assert x[0] == pytest.approx(result.xmin) and x[-1] == pytest.approx(result.xmax)
    (xmin_line,) = by_gid(loglog, "xmin")
    (lmax_line,) = by_gid(loglog, "lambda-max")
    assert xmin_line.get_xdata()[0] == result.xmin and lmax_line.get_xdata()[0] == result.lambda_max
    assert loglog.get_xscale() == "log" and loglog.get_yscale() == "log"
    title = loglog.get_title(loc="left")
    assert "α = 2.70" in title and "D = 0.031" in title and "verdict: healthy" in title


def test_fitted_line_sits_on_the_planted_tail_histogram():
    # The tail is exact Pareto(alpha) data, so where bins hold many points the density
    # histogram must follow the drawn line: this checks the line's scale, not only its slope.
    result, evals = planted_tail_layer(alpha=2.5, n_tail=4000, n_bulk=2000, seed=3)
    loglog = esd_figure(result, evals).axes[0]
    heights, widths, bars = bar_heights_and_widths(loglog, "esd-loglog")
    lefts = np.array([b.get_x() for b in bars])
    centres = np.sqrt(lefts * (lefts + widths))
    share = result.num_tail / evals.size
    expected = share * (result.alpha - 1) / result.xmin * (centres / result.xmin) ** -result.alpha
    counts = heights * widths * evals.size
    well_filled = (lefts > result.xmin * 1.05) & (counts > 100)
    assert well_filled.sum() >= 5
    np.testing.assert_allclose(heights[well_filled], expected[well_filled], rtol=0.2)


def test_histograms_count_every_eigenvalue():
    result, evals = planted_tail_layer()
    figure = esd_figure(result, evals)
    heights, widths, bars = bar_heights_and_widths(figure.axes[0], "esd-loglog")
    assert np.sum(heights * widths) == pytest.approx(1.0)  # a density over all positive eigenvalues
    edges = np.append([b.get_x() for b in bars], bars[-1].get_x() + widths[-1])
    np.testing.assert_allclose(heights * widths * evals.size, np.histogram(evals, edges)[0], atol=1e-6)
    heights, widths, _ = bar_heights_and_widths(figure.axes[1], "esd-linear")
    assert np.sum(heights * widths) * evals.size == pytest.approx(evals.size)  # no MP: the full range is shown


def test_marchenko_pastur_density_is_the_closed_form_and_fits_a_gaussian_matrix():
    rng = np.random.default_rng(5)
    sigma2, n, m = 2.0, 2000, 500
    evals = gram_evals(rng.normal(0.0, np.sqrt(sigma2), (n, m)))
    q = n / m
    lo, hi = mp_edges(sigma2, q)
    assert (lo, hi) == pytest.approx((sigma2 * 0.25, sigma2 * 2.25))
    grid = np.linspace(lo, hi, 200_001)
    assert np.trapezoid(mp_density(grid, sigma2, q), grid) == pytest.approx(1.0, abs=1e-4)
    result = LayerResult(
        "h.0.attn.c_attn.weight",
        "qkv",
        0,
        (n, m),
        "F32",
        "ok",
        num_evals=m,
        lambda_max=float(evals[-1]),
        mp=MPBulk(sigma2, lo, hi, 0, 0.5),
    )
    linear = esd_figure(result, evals).axes[1]
    (curve,) = by_gid(linear, "mp-density")
    np.testing.assert_allclose(curve.get_ydata(), mp_density(curve.get_xdata(), sigma2, q))
    heights, widths, bars = bar_heights_and_widths(linear, "esd-linear")
    centres = np.array([b.get_x() for b in bars]) + widths / 2
    inside = (centres > lo + 0.1) & (centres < hi - 0.1)
    # planted ground truth: a Gaussian matrix's ESD follows MP up to sampling noise
    assert np.mean(np.abs(heights[inside] - mp_density(centres[inside], sigma2, q))) < 0.05 * heights.max()
    assert by_gid(linear, "bulk-edge")[0].get_xdata()[0] == hi
    assert not by_gid(linear, "spikes")


def test_spikes_randomised_esd_and_dragon_kings_are_marked():
    rng = np.random.default_rng(7)
    n, m = 1200, 300
    w = rng.standard_normal((n, m))
    u = np.linalg.qr(rng.standard_normal((n, 3)))[0]
    v = np.linalg.qr(rng.standard_normal((m, 3)))[0]
    w += u @ np.diag([1.3, 2.0, 12.0]) @ v.T * np.sqrt(n)  # three planted spikes, one huge
    evals = gram_evals(w)
    rand_evals = gram_evals(rng.permutation(w.ravel()).reshape(n, m))
    lo, hi = mp_edges(1.0, n / m)
    planted = evals[evals > hi * 1.02]
    assert planted.size == 3
    result = LayerResult(
        "blocks.2.fc2.weight",
        "down",
        2,
        (n, m),
        "F32",
        "ok",
        num_evals=m,
        alpha=3.0,
        xmin=float(planted[0]),
        xmax=float(evals[-1]),
        D=0.1,
        num_tail=3,
        lambda_max=float(evals[-1]),
        mp=MPBulk(1.0, lo, hi * 1.02, 3, 0.2),
        dragon_kings=DragonKings(1, 3.4),
    )
    figure = esd_figure(result, evals, rand_evals)
    (kings,) = by_gid(figure.axes[0], "dragon-kings")
    np.testing.assert_array_equal(kings.get_xdata(), evals[-1:])
    linear = figure.axes[1]
    (spikes,) = by_gid(linear, "spikes")
    x_high = linear.get_xlim()[1]
    np.testing.assert_array_equal(spikes.get_xdata(), planted[planted <= x_high])
    assert (planted > x_high).sum() == 1 and "3 spikes, 1 beyond the axis" in spikes.get_label()
    (outline,) = by_gid(linear, "randomised")
    assert outline.get_label().startswith("randomised W")
    assert_picture(png_bytes(figure), min_size=(1000, 400))


def test_what_was_not_computed_is_not_drawn():
    result, evals = planted_tail_layer()
    figure = esd_figure(result, evals)
    for gid in ("mp-density", "bulk-edge", "spikes", "randomised", "dragon-kings"):
        assert not by_gid(figure.axes[0], gid) and not by_gid(figure.axes[1], gid)
    failed = LayerResult(
        "x",
        "o",
        0,
        (256, 128),
        "F32",
        "failed",
        reason="power-law fit failed: tail too short",
        lambda_max=float(evals[-1]),
    )
    figure = esd_figure(failed, evals)
    assert not by_gid(figure.axes[0], "powerlaw-fit")
    assert "tail too short" in figure.axes[0].get_title(loc="left")
    degenerate = LayerResult("eye", "o", 0, (64, 64), "F32", "ok", mp=MPBulk(0.0, 0.0, 0.0, 0, 0.0))
    for flat in (np.ones(64), np.r_[np.zeros(10), 1e-14, np.linspace(1.0, 2.0, 53)]):
        figure = esd_figure(degenerate, flat)  # one repeated value; zeros and a tiny round-off value
        assert not by_gid(figure.axes[1], "mp-density")
        assert_picture(png_bytes(figure), min_size=(1000, 400))
    with pytest.raises(WeightscopeError, match="no spectrum"):
        esd_figure(failed, None)
    with pytest.raises(WeightscopeError, match="no spectrum"):
        esd_figure(failed, np.zeros(10))


def test_untrusted_fit_is_said_in_the_title_and_the_png_is_a_real_picture():
    trust = FitTrust(False, True, False, 0.9, None, None, False)
    result, evals = planted_tail_layer(fit_trust=trust, flags=["small-tail", "unstable-alpha"])
    figure = esd_figure(result, evals)
    assert "untrusted: tail too small, alpha unstable in xmin" in figure.axes[0].get_title(loc="left")
    assert "⚠ power-law fit not trusted: tail too small" in figure.get_suptitle()
    assert figure.canvas.__class__.__name__ == "FigureCanvasAgg"
    assert_picture(png_bytes(figure), min_size=(1000, 400))


def test_mp_helpers():
    assert aspect_ratio((768, 3072)) == 4.0 and aspect_ratio((64, 32, 3, 3)) == 2.0
    assert mp_density(np.array([-1.0, 0.0, 100.0]), 1.0, 4.0).tolist() == [0.0, 0.0, 0.0]
    odd = "model.layers.0.self_attn/q proj.weight"
    digest = hashlib.sha256(odd.encode()).hexdigest()[:12]
    assert png_file_name(odd, ".esd.png") == f"model.layers.0.self_attn_q_proj.weight-{digest}.esd.png"
    assert (
        png_file_name("model.layers.0.q.weight", ".esd.png") == "model.layers.0.q.weight.esd.png"
    )  # safe names unchanged
    assert png_file_name("a/b.weight", "") != png_file_name("a_b.weight", "")
    assert len(png_file_name("x" * 300, ".esd.png")) < 160


# --- summary figure --------------------------------------------------------------------------


def synthetic_report(blocks=6, seed=2):
    rng = np.random.default_rng(seed)
    layers = [LayerResult("model.embed_tokens.weight", "embedding", None, (1000, 128), "F32", "ok", alpha=4.5)]
    for block in range(blocks):
        for kind in ("q", "k", "v", "o", "up", "down"):
            trusted = bool(rng.random() > 0.25)
            layers.append(
                LayerResult(
                    f"model.layers.{block}.{kind}.weight",
                    kind,
                    block,
                    (128, 128),
                    "F32",
                    "ok",
                    alpha=float(rng.uniform(1.5, 9.0)),
                    fit_trust=FitTrust(True, trusted, True, 0.1, None, None, trusted),
                )
            )
    layers.append(LayerResult("lm_head.weight", "lm_head", None, (1000, 128), "F32", "ok", alpha=7.5))
    layers.append(LayerResult("model.layers.1.bad.weight", "other", 1, (128, 128), "F32", "failed", reason="NaN"))
    return Report("run/model.safetensors", "safetensors", "0.1.0", {}, layers, [], summarize(layers, []))


def test_summary_figure_plots_every_fitted_alpha_by_depth_and_kind():
    report = synthetic_report()
    figure = summary_figure(report)
    by_depth, histogram = figure.axes[:2]
    fitted = [layer for layer in report.layers if layer.ok]
    points = []
    for collection in by_depth.collections:
        gid = collection.get_gid() or ""
        if not gid.startswith("alpha:"):
            continue
        _, kind, trust, _verdict = gid.split(":")
        faces = collection.get_facecolors()
        assert (len(faces) == 0 or faces[:, 3].max() == 0) == (trust == "untrusted")  # hollow = untrusted
        edge = collection.get_edgecolors()[0]
        assert np.allclose(edge[:3], np.array([int(KIND_COLORS[kind][i : i + 2], 16) for i in (1, 3, 5)]) / 255)
        points += [(kind, trust, x, y) for x, y in collection.get_offsets()]
    assert sorted(y for *_, y in points) == pytest.approx(sorted(layer.alpha for layer in fitted))
    expected_trust = {
        (layer.kind, round(layer.alpha, 9)): "untrusted"
        if layer.fit_trust and not layer.fit_trust.trusted
        else "trusted"
        for layer in fitted
    }
    assert all(expected_trust[(kind, round(y, 9))] == trust for kind, trust, _, y in points)
    xs = {kind: x for kind, _, x, _ in points}
    assert xs["embedding"] < -0.5 and xs["lm_head"] > 5.5  # blockless layers at the ends
    _, widths, _ = bar_heights_and_widths(histogram, "alpha-histogram")
    assert widths.sum() == len(fitted)  # horizontal bars: their widths are the counts
    assert by_gid(by_depth, "median")[0].get_ydata()[0] == report.summary.alpha_median
    assert "1 without a fit not shown" in figure._suptitle.get_text()
    assert_picture(png_bytes(figure), min_size=(1000, 400))


def test_depth_axis_spreads_kinds_within_a_block_and_falls_back_to_storage_order():
    report = synthetic_report(blocks=3)
    fitted = [layer for layer in report.layers if layer.ok]
    axis = depth_axis([layer.kind for layer in fitted], [layer.block for layer in fitted])
    for layer, x in zip(fitted, axis.positions):
        if layer.block is not None:
            assert abs(x - layer.block) < 0.4
    assert len({x for layer, x in zip(fitted, axis.positions) if layer.block == 1}) == 6
    assert axis.tick_labels[0] == "embed" and axis.tick_labels[-1] == "head/other"
    assert depth_axis(["other"] * 4, [None] * 4).positions == [0.0, 1.0, 2.0, 3.0]


# --- optional dependency ---------------------------------------------------------------------


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(WeightscopeError, match=r"pip install 'weightscope-esd\[plot\]'"):
        require_matplotlib()


@pytest.fixture(scope="module")
def plot_without_matplotlib(tmp_path_factory):
    """`weightscope plot … --summary` in an interpreter where `import matplotlib` fails."""
    path = tmp_path_factory.mktemp("nompl") / "model.safetensors"
    script = textwrap.dedent(f"""
        import sys
        sys.modules["matplotlib"] = None
        from weightscope.cli import app
        sys.argv = ["weightscope", "plot", {str(path)!r}, "--summary"]
        app()
    """)
    return run_python(script)


@pytest.mark.slow
def test_cli_without_matplotlib_exits_2_with_the_install_line(plot_without_matplotlib):
    done = plot_without_matplotlib
    assert done.returncode == 2, done.stderr
    assert "pictures need matplotlib" in done.stderr and "pip install 'weightscope-esd[plot]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_cli_prints_the_install_line_verbatim(plot_without_matplotlib):
    assert "pip install 'weightscope-esd[plot]'" in plot_without_matplotlib.stderr


@pytest.mark.slow
def test_cli_never_imports_matplotlib_and_pictures_never_import_pyplot():
    script = textwrap.dedent("""
        import sys
        import weightscope.cli
        assert "matplotlib" not in sys.modules, "the CLI must import matplotlib lazily"
        from weightscope.render.plot_summary import summary_figure
        from weightscope.report import LayerResult, Report
        from weightscope.summary import summarize
        layers = [LayerResult("h.0.attn.c_attn.weight", "qkv", 0, (64, 64), "F32", "ok", alpha=3.0)]
        figure = summary_figure(Report("m", "safetensors", "0", {}, layers, [], summarize(layers, [])))
        figure.savefig(__import__("io").BytesIO(), format="png")
        assert "matplotlib.pyplot" not in sys.modules, "pyplot would pick a GUI backend"
        print("ok")
    """)
    done = run_python(script)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


# --- the command line ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small Llama-named checkpoint: heavy-tailed attention, Gaussian MLP, an embedding."""
    from weightscope.checkpoint import write_safetensors

    rng = np.random.default_rng(0)
    tensors = {"model.embed_tokens.weight": rng.standard_normal((300, 128)).astype(np.float32)}
    for block in range(2):
        tensors[f"model.layers.{block}.self_attn.q_proj.weight"] = (rng.standard_t(3, (256, 128)) * 0.02).astype(
            np.float32
        )
        tensors[f"model.layers.{block}.mlp.down_proj.weight"] = (rng.standard_normal((128, 256)) * 0.02).astype(
            np.float32
        )
        tensors[f"model.layers.{block}.input_layernorm.weight"] = np.ones(128, np.float32)
    return write_safetensors(
        tmp_path_factory.mktemp("ckpt") / "model.safetensors", tensors, dtypes=dict.fromkeys(tensors, "BF16")
    )


def invoke(*args):
    from typer.testing import CliRunner

    from weightscope.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_plot_layer_draws_only_the_matching_layers_and_reads_nothing_else(checkpoint, tmp_path, monkeypatch):
    from weightscope.checkpoint.safetensors_reader import SafetensorsReader

    read = []
    original = SafetensorsReader.read
    monkeypatch.setattr(SafetensorsReader, "read", lambda self, info: read.append(info.name) or original(self, info))
    out = tmp_path / "plots"
    done = invoke("plot", checkpoint, "--layer", r"layers\.1\.self_attn", "--out-dir", out)
    assert done.exit_code == 0, done.output
    assert read == ["model.layers.1.self_attn.q_proj.weight"]
    (png,) = out.iterdir()
    assert png.name == "model.layers.1.self_attn.q_proj.weight.esd.png"
    assert_picture(png.read_bytes(), min_size=(1000, 400))


def test_plotted_fit_is_the_analysis_fit_on_a_real_checkpoint(checkpoint):
    from weightscope.analysis.layer import select
    from weightscope.analysis.pipeline import analyze, stream_layers
    from weightscope.checkpoint import open_checkpoint
    from weightscope.options import AnalysisOptions

    report = analyze(checkpoint)
    options = AnalysisOptions(include=(r"q_proj",))
    with open_checkpoint(checkpoint) as reader:
        items = list(stream_layers(reader, select(reader, options), options))
    assert len(items) == 2
    for item in items:
        layer = report.layer(item.result.name)
        assert item.result == layer
        (line,) = by_gid(esd_figure(item.result, item.evals).axes[0], "powerlaw-fit")
        slopes = np.diff(np.log(line.get_ydata())) / np.diff(np.log(line.get_xdata()))
        np.testing.assert_allclose(slopes, -layer.alpha, atol=1e-9, rtol=0)


def test_plot_summary_and_usage_errors(checkpoint, tmp_path):
    done = invoke("plot", checkpoint, "--summary", "--out-dir", tmp_path)
    assert done.exit_code == 0, done.output
    assert_picture((tmp_path / "summary.png").read_bytes(), min_size=(1000, 400))
    nothing = invoke("plot", checkpoint)
    assert nothing.exit_code == 2 and "pass --layer REGEX" in nothing.output
    unmatched = invoke("plot", checkpoint, "--layer", "no_such_layer", "--out-dir", tmp_path)
    assert unmatched.exit_code == 2 and "no weight matrix matches" in unmatched.output
    bad_regex = invoke("plot", checkpoint, "--layer", "(", "--out-dir", tmp_path)
    assert bad_regex.exit_code == 2 and "not a regular expression" in bad_regex.output


@pytest.mark.slow
def test_analyze_html_writes_the_report(checkpoint, tmp_path):
    page = tmp_path / "report.html"
    done = invoke("analyze", checkpoint, "--html", page)
    assert done.exit_code == 0, done.output
    html = page.read_text(encoding="utf-8")
    assert "model.layers.0.mlp.down_proj.weight" in html and "https:" not in html
    assert 'src="data:image/png;base64,' not in html  # pictures are inline SVG: no matplotlib needed
    assert html.count('<figure class="spectrum"') == 5 and '<svg class="esd depth"' in html


def test_analyze_html_needs_no_matplotlib(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    page = tmp_path / "report.html"
    done = invoke("analyze", checkpoint, "--html", page, "-q")
    assert done.exit_code == 0, done.output
    assert "wrote" not in done.output  # -q: no chatter
    assert page.read_text(encoding="utf-8").count('<figure class="spectrum"') == 5


# --- trend and compare pictures --------------------------------------------------------------


def synthetic_trend(steps=(0, 100, 300, 1000, 3000, 10000), seed=9):
    """A run whose layers train from alpha ≈ 10 towards 3.5; one layer jumps at step 3000."""
    from weightscope.checkpoint.runs import RunEntry
    from weightscope.commands.trend import trend_from_reports

    rng = np.random.default_rng(seed)
    names = ["model.embed_tokens.weight", "lm_head.weight"] + [
        f"model.layers.{b}.{part}.weight" for b in range(3) for part in ("self_attn.q_proj", "mlp.down_proj")
    ]
    kinds = {
        name: (
            "embedding" if "embed" in name else "lm_head" if "lm_head" in name else "q" if "q_proj" in name else "down"
        )
        for name in names
    }
    run = []
    for i, step in enumerate(steps):
        layers = []
        for name in names:
            alpha = 3.5 + 6.5 * np.exp(-step / 800) + rng.normal(0, 0.05)
            if name == "model.layers.1.mlp.down_proj.weight" and step >= 3000:
                alpha += 4.0
            failed = name == "model.layers.2.self_attn.q_proj.weight" and step == 300
            layers.append(
                LayerResult(
                    name,
                    kinds[name],
                    block_index_of(name),
                    (256, 128),
                    "BF16",
                    "failed" if failed else "ok",
                    alpha=None if failed else float(alpha),
                    log_norm=float(i),
                )
            )
        report = Report(
            f"run/step-{step}/model.safetensors", "safetensors", "0.1.0", {}, layers, [], summarize(layers, [])
        )
        run.append((RunEntry(Path(f"run/step-{step}/model.safetensors"), step), report, "analysed"))
    return trend_from_reports(run)


def block_index_of(name):
    from weightscope.checkpoint.layers import block_index

    return block_index(name)


def test_trend_figure_draws_the_median_with_its_mad_band_and_the_alpha_heatmap():
    from weightscope.render.plot_trend import depth_order, trend_figure

    trend = synthetic_trend()
    figure = trend_figure(trend)
    line_axes, heat_axes = figure.axes[:2]
    (median,) = by_gid(line_axes, "median-alpha")
    steps = [p.step for p in trend.checkpoints]
    medians = np.array([p.summary.alpha_median for p in trend.checkpoints], dtype=float)  # None → NaN
    mads = [p.summary.alpha_mad for p in trend.checkpoints]
    assert np.isnan(medians[0]) and np.isfinite(medians[-1])  # step 0: every alpha > 8, no robust median
    np.testing.assert_array_equal(median.get_xdata(), steps)
    np.testing.assert_allclose(median.get_ydata(), medians)
    (no_median,) = by_gid(line_axes, "no-median")
    np.testing.assert_array_equal(no_median.get_xdata(), np.array(steps)[np.isnan(medians)])
    (band,) = by_gid(line_axes, "mad-band")
    vertices = np.concatenate([path.vertices for path in band.get_paths()])
    for step, m, d in zip(steps, medians, mads):
        at = vertices[np.isclose(vertices[:, 0], step)][:, 1]
        if np.isnan(m):
            assert at.size == 0
        else:
            assert at.min() == pytest.approx(m - d) and at.max() == pytest.approx(m + d)
    (image,) = by_gid(heat_axes, "alpha-heatmap")
    order = depth_order([s.name for s in trend.layers], [s.kind for s in trend.layers])
    expected = np.array([[np.nan if a is None else a for a in trend.layers[i].alphas] for i in order])
    shown = image.get_array()
    assert shown.shape == (len(trend.layers), len(steps))
    np.testing.assert_array_equal(shown.mask, np.isnan(expected))
    np.testing.assert_allclose(shown.filled(np.nan), expected)
    names = [tick.get_text() for tick in heat_axes.get_yticklabels()]
    assert names[0] == "model.embed_tokens.weight" and names[-1] == "lm_head.weight"  # by depth
    red = {tick.get_text() for tick in heat_axes.get_yticklabels() if tick.get_color() == "#c0392b"}
    assert red == {s.name for s in trend.flagged} and "model.layers.1.mlp.down_proj.weight" in red
    assert_picture(png_bytes(figure), min_size=(1000, 600))


def test_compare_figure_draws_both_sides_and_the_delta_histogram():
    from weightscope.commands.compare import compare_reports
    from weightscope.render.plot_compare import compare_figure

    trend = synthetic_trend()
    a, b = (
        Report(f"step-{i}", "safetensors", "0.1.0", {}, layers, [], summarize(layers, []))
        for i, layers in (
            (
                0,
                [
                    LayerResult(s.name, s.kind, block_index_of(s.name), (256, 128), "F32", "ok", alpha=s.alphas[1])
                    for s in trend.layers
                ],
            ),
            (
                1,
                [
                    LayerResult(s.name, s.kind, block_index_of(s.name), (256, 128), "F32", "ok", alpha=s.alphas[-1])
                    for s in trend.layers
                ],
            ),
        )
    )
    comparison = compare_reports(a, b)
    figure = compare_figure(comparison)
    depth, histogram = figure.axes[:2]
    (side_a,) = by_gid(depth, "alpha-a")
    (side_b,) = by_gid(depth, "alpha-b")
    np.testing.assert_allclose(side_a.get_offsets()[:, 1], [c.alpha_a for c in comparison.layers])
    np.testing.assert_allclose(side_b.get_offsets()[:, 1], [c.alpha_b for c in comparison.layers])
    heights, _, _ = bar_heights_and_widths(histogram, "delta-histogram")
    assert heights.sum() == len(comparison.layers)
    assert by_gid(histogram, "delta-median")[0].get_xdata()[0] == comparison.summary.delta_alpha_median
    assert_picture(png_bytes(figure), min_size=(1000, 400))


def test_trend_plot_and_html_and_compare_html_from_saved_reports(tmp_path):
    from weightscope.render.formats import json_text as to_json

    trend = synthetic_trend()
    saved = []
    for point in trend.checkpoints:  # the same layers again, as reports saved by `analyze -o`
        layers = [
            LayerResult(
                s.name, s.kind, block_index_of(s.name), (256, 128), "BF16", "ok" if a is not None else "failed", alpha=a
            )
            for s, a in ((s, s.alphas[trend.checkpoints.index(point)]) for s in trend.layers)
        ]
        path = tmp_path / f"step-{point.step}.json"
        path.write_text(to_json(Report(str(path), "safetensors", "0.1.0", {}, layers, [], summarize(layers, []))))
        saved.append(path)
    picture, page = tmp_path / "trend.png", tmp_path / "trend.html"
    done = invoke(
        "trend", *saved[::-1], "--plot", picture, "--html", page, "--format", "json", "-o", tmp_path / "t.json"
    )
    assert done.exit_code == 0, done.output
    assert_picture(picture.read_bytes(), min_size=(1000, 600))
    assert "model.layers.1.mlp.down_proj.weight" in page.read_text(encoding="utf-8")
    compared = tmp_path / "compare.html"
    done = invoke("compare", saved[0], saved[-1], "--html", compared)
    assert done.exit_code == 0, done.output
    assert "Δalpha" in compared.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "command", [["trend", "{x}", "{x}", "--plot", "t.png"], ["compare", "{x}", "{x}", "--html", "c.html"]]
)
def test_picture_options_without_matplotlib_exit_2_before_any_work(command, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    missing = tmp_path / "does-not-exist.safetensors"  # never opened: the check comes first
    done = invoke(
        *[str(missing) if part == "{x}" else str(tmp_path / part) if "." in part else part for part in command]
    )
    assert done.exit_code == 2
    assert "pictures need matplotlib" in done.output and "no such file" not in done.output


EXAMPLE_RUN = REPO_ROOT / "examples" / "runs" / "tiny-lm"


@pytest.mark.skipif(not EXAMPLE_RUN.is_dir(), reason="the example run is not in this checkout")
def test_pictures_of_the_example_run(tmp_path):
    steps = sorted(EXAMPLE_RUN.glob("step-*/model.safetensors"))
    done = invoke("plot", steps[-1], "--layer", r"layers\.1\.mlp\.down_proj", "--out-dir", tmp_path)
    assert done.exit_code == 0, done.output
    assert_picture((tmp_path / "model.layers.1.mlp.down_proj.weight.esd.png").read_bytes(), min_size=(1000, 400))
    picture = tmp_path / "trend.png"
    done = invoke(
        "trend", *steps, "--include", r"layers\.1\.mlp", "--plot", picture, "-f", "json", "-o", tmp_path / "t.json"
    )
    assert done.exit_code == 0, done.output
    assert_picture(picture.read_bytes(), min_size=(1000, 600))
