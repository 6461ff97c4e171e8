"""The HTML report: one self-contained file, checked as text and in a real headless browser."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html import escape
from pathlib import Path

import numpy as np
import pytest

from tests.png_checks import assert_picture

pytest.importorskip("matplotlib")

from weightscope.analysis.layer import LayerAnalysis
from weightscope.checkpoint.base import TensorInfo
from weightscope.checkpoint.layers import LayerSpec
from weightscope.render.html import report_html, write_html_report
from weightscope.report import FitTrust, LayerResult, Report, SkippedTensor
from weightscope.summary import summarize

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_chromium_present = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (CI: apt-get install -y chromium)"
)


def needs_chromium(test):
    """A test that opens a page in headless chromium: marked `browser`, skipped without it."""
    return pytest.mark.browser(_chromium_present(test))


def make_report() -> Report:
    rng = np.random.default_rng(11)
    layers = []
    for block in range(4):
        for kind in ("q", "k", "v", "o"):
            trusted = bool(rng.random() > 0.3)
            alpha = float(rng.uniform(1.5, 8.5))
            layers.append(
                LayerResult(
                    f"model.layers.{block}.self_attn.{kind}_proj.weight",
                    kind,
                    block,
                    (256, 256),
                    "BF16",
                    "ok",
                    num_evals=256,
                    alpha=alpha,
                    xmin=1.0,
                    xmax=9.0,
                    D=float(rng.uniform(0.02, 0.1)),
                    num_tail=40,
                    lambda_max=9.0,
                    log_norm=float(rng.uniform(-1.5, 1.5)),
                    stable_rank=12.0,
                    fit_trust=FitTrust(True, trusted, True, 0.1, None, None),
                    confidence="solid" if trusted else None,
                    verdict="healthy"
                    if 2 <= alpha <= 6 and trusted
                    else "no-reading"
                    if not trusted
                    else "over-trained",
                )
            )
    layers.append(
        LayerResult(
            "model.layers.1.mlp.<script>alert(1)</script>",
            "other",
            1,
            (256, 128),
            "F32",
            "failed",
            reason="weights contain 3 NaN and 0 Inf values",
        )
    )
    skipped = [SkippedTensor("model.norm.weight", (256,), "F32", "1-D tensor (bias or norm)")]
    return Report(
        "runs/tiny/model.safetensors",
        "safetensors",
        "0.1.0",
        {"min_evals": 50},
        layers,
        skipped,
        summarize(layers, skipped),
    )


def data_uri_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_is_self_contained_and_lists_every_layer():
    report = make_report()
    html = report_html(report)
    assert not re.search(r"(?i)https?:|ftp:|//[a-z0-9.-]+\.[a-z]{2,}", html), "the page must not reference the network"
    for attribute in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attribute.startswith(("data:", "#")), attribute
    assert "<link" not in html and "@import" not in html and "url(" not in html
    for layer in report.layers:
        assert escape(layer.name) in html
    assert "<script>alert(1)</script>" not in html  # names are escaped, never markup
    rows = re.search(r'<table id="layers".*?<tbody>(.*?)</tbody>', html, re.DOTALL).group(1)
    assert rows.count("<tr ") == len(report.layers)
    for verdict in ("healthy", "no-reading", "failed"):
        assert f">{verdict}</td>" in rows
    assert "model.norm.weight" in html  # the skipped list
    assert data_uri_pngs(html) == []  # the page of one checkpoint draws SVG only
    fitted = [layer for layer in report.layers if layer.alpha is not None]
    assert html.count('data-role="alpha-point"') == len(fitted)


def test_spectra_are_drawn_into_the_page(tmp_path):
    report = make_report()
    evals = np.sort(np.random.default_rng(4).pareto(2.0, 256) + 0.1)
    picked = report.layers[:2]
    spectra = [
        LayerAnalysis(LayerSpec(TensorInfo(r.name, r.shape, r.dtype, "m.safetensors", 0), r.kind, r.block), r, evals)
        for r in picked
    ]
    failed = report.layers[-1]
    spectra.append(LayerAnalysis(LayerSpec(TensorInfo(failed.name, failed.shape, "F32", "m", 0), "other", 1), failed))
    path = tmp_path / "report.html"
    write_html_report(report, path, spectra)
    html = path.read_text(encoding="utf-8")
    figures = re.findall(r'<figure class="spectrum" id="(spectrum-\d+)".*?</figure>', html, re.DOTALL)
    assert len(figures) == len(picked)  # one spectrum per layer that has one
    for layer, anchor in zip(picked, figures):
        assert anchor == f"spectrum-{report.layers.index(layer)}"
        assert f'<a href="#{anchor}">' in html  # its table row and its contents entry link to it
        assert html.count(f'href="#{anchor}"') >= 2


# --- a real browser ------------------------------------------------------------------------


def open_in_chromium(page: Path, fragment: str, workdir: Path) -> tuple[str, list[str], bytes]:
    """Load a page headless and offline: (DOM after scripts ran, console messages, screenshot)."""
    shot = workdir / "shot.png"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={workdir / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1400",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--dump-dom",
            page.resolve().as_uri() + fragment,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return done.stdout, console, shot.read_bytes()


def dom_column(dom: str, table_id: str, column: int) -> list[str]:
    """The cells of a column, as text (links unwrapped)."""
    body = re.search(rf'<table id="{table_id}".*?<tbody>(.*?)</tbody>', dom, re.DOTALL).group(1)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row)[column] for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body)]
    return [re.sub(r"<[^>]+>", "", cell) for cell in cells]


def dom_sort_keys(dom: str, table_id: str, column: int) -> list[str]:
    """The data-sort values of a column (the full layer name where the cell shows a short one)."""
    body = re.search(rf'<table id="{table_id}".*?<tbody>(.*?)</tbody>', dom, re.DOTALL).group(1)
    return [re.findall(r'<td data-sort="([^"]*)"', row)[column] for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body)]


@needs_chromium
def test_the_browser_harness_sees_console_errors(tmp_path):
    # The control for the test below: a page whose script throws must be caught.
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>notDefined();</script></body></html>")
    _, console, _ = open_in_chromium(page, "", tmp_path)
    assert any("Uncaught ReferenceError" in line for line in console), console


@needs_chromium
def test_report_opens_in_a_headless_browser_without_errors_and_sorts(tmp_path):
    report = make_report()
    page = tmp_path / "report.html"
    write_html_report(report, page)
    dom, console, screenshot = open_in_chromium(page, "#sort=layers.log_norm.desc", tmp_path)
    assert console == []
    assert dom.count('data-sortable="ready"') == 2  # the script ran over both tables
    # The script applied the order from the URL: log_norm (it has negative values) numerically
    # descending, the failed layer without a value last.
    names = dom_sort_keys(dom, "layers", 1)
    fitted = sorted((r for r in report.layers if r.log_norm is not None), key=lambda r: -r.log_norm)
    assert min(r.log_norm for r in fitted) < 0 < max(r.log_norm for r in fitted)
    assert names == [escape(r.name) for r in fitted] + [escape(report.layers[-1].name)]
    assert 'aria-sort="descending"' in dom
    pixels = assert_picture(screenshot, min_size=(1280, 1000), max_size=(1280, 1400))
    assert (pixels[..., :3].std(axis=2) > 0.1).mean() > 0.002  # coloured pixels: the SVG chart rendered


# --- trend and compare pages ---------------------------------------------------------------


def assert_self_contained(html: str) -> None:
    assert not re.search(r"(?i)https?:|ftp:|//[a-z0-9.-]+\.[a-z]{2,}", html)
    for attribute in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attribute.startswith(("data:", "#")), attribute
    for png in data_uri_pngs(html):
        assert_picture(png, min_size=(1000, 400))


def test_trend_page(tmp_path):
    from tests.render.test_plots import synthetic_trend
    from weightscope.render.html_trend import write_trend_html

    trend = synthetic_trend()
    path = tmp_path / "trend.html"
    write_trend_html(trend, path)
    html = path.read_text(encoding="utf-8")
    assert_self_contained(html)
    assert len(data_uri_pngs(html)) == 1
    assert dom_column(html, "checkpoints", 0) == [str(p.step) for p in trend.checkpoints]
    from weightscope.render.trend_views import ordered_series

    assert dom_column(html, "layers", 0) == [s.name for s in ordered_series(trend)]
    from weightscope.render.trend_columns import flag_text

    flags = dict(zip(dom_column(html, "layers", 0), dom_column(html, "layers", 2 + len(trend.checkpoints))))
    assert flags == {s.name: escape(flag_text(s, trend)) for s in trend.layers}
    assert flags["model.layers.1.mlp.down_proj.weight"].startswith("fall-then-rise")  # the planted rise at step 3000


def test_compare_page():
    from weightscope.commands.compare import compare_reports
    from weightscope.render.html_compare import compare_html

    a = make_report()
    b = Report("b.safetensors", "safetensors", "0.1.0", {}, a.layers[::-1][:10], [], summarize(a.layers[:10], []))
    comparison = compare_reports(a, b)
    html = compare_html(comparison)
    assert_self_contained(html)
    assert len(data_uri_pngs(html)) == 1
    assert sorted(dom_sort_keys(html, "layers", 1)) == sorted(escape(c.name) for c in comparison.layers)
    assert f"only in A ({len(comparison.only_a)})" in html


@needs_chromium
def test_trend_page_opens_in_a_headless_browser_and_sorts_by_a_step(tmp_path):
    from tests.render.test_plots import synthetic_trend
    from weightscope.render.html_trend import write_trend_html

    trend = synthetic_trend()
    page = tmp_path / "trend.html"
    write_trend_html(trend, page)
    last = len(trend.checkpoints) - 1
    dom, console, screenshot = open_in_chromium(page, f"#sort=layers.at{last}.asc", tmp_path)
    assert console == []
    expected = sorted(trend.layers, key=lambda s: s.alphas[last])
    assert dom_column(dom, "layers", 0) == [s.name for s in expected]
    assert_picture(screenshot, min_size=(1280, 1000), max_size=(1280, 1400))
