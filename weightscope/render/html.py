"""Self-contained HTML reports: one file that opens in any browser, offline, forever.

Everything a page needs is inside it: the pictures (inline SVG for the report of one
checkpoint — no matplotlib needed —, base64 PNG data URIs for compare and trend), the CSS, and a small script that makes tables sortable (click
a header; the order is kept in the URL fragment, ``#sort=TABLE.COLUMN.asc|desc``, so a
link or a reload shows the same order) and filters rows by verdict and kind.
There is no external reference at all — no fonts, no CDN, no http(s) URL — so a report
mailed around or archived with a checkpoint still renders years later.

The building blocks (`page`, `sortable_table`, `figure_html`) are shared by the reports
of `analyze`, `compare` and `trend`; `report_html` is the page of one analysed checkpoint.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from weightscope import vocabulary
from weightscope._version import __version__
from weightscope.errors import one_line
from weightscope.io import write_text_atomic
from weightscope.render.cells import Cell, Column, text_cell
from weightscope.render.columns import HTML, layer_columns, layer_rows
from weightscope.render.esd_data import esd_picture
from weightscope.render.measures_views import lines_html, measures_lines
from weightscope.render.plots import png_bytes
from weightscope.render.rows import ordered_layers, short_names
from weightscope.render.style import (
    alpha_band,
    band_text,
    fmt,
    number,
)
from weightscope.render.svg_esd import SVG_CSS, esd_svg
from weightscope.render.svg_summary import alpha_by_depth_svg, depth_legend
from weightscope.report import LayerResult, Report

if TYPE_CHECKING:
    from collections.abc import Callable

    from matplotlib.figure import Figure

    from weightscope.analysis.layer import LayerAnalysis

_CSS = """
:root { --ok: #1b7f3b; --low: #c0392b; --high: #a67c00; --muted: #6b7280; --line: #e5e7eb; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111827;
       margin: 0 auto; padding: 1.5rem 1.5rem 3rem; max-width: 1400px; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .6rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; }
.meta { color: var(--muted); margin: 0 0 1rem; }
.cards { display: flex; flex-wrap: wrap; gap: .75rem; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: .5rem .9rem; min-width: 8rem; }
.card b { display: block; font-size: 1.3rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: .9rem; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { padding: .3rem .45rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
thead th { position: sticky; top: 0; background: #f9fafb; }
table.sortable thead th { cursor: pointer; user-select: none; white-space: nowrap; }
table.sortable thead th::after { content: " \\2195"; color: #c4c8cf; }
table.sortable thead th[aria-sort="ascending"]::after { content: " \\2191"; color: #111827; }
table.sortable thead th[aria-sort="descending"]::after { content: " \\2193"; color: #111827; }
tbody tr:nth-child(even) { background: #fafafa; }
.low { color: var(--low); font-weight: 600; } .ok { color: var(--ok); } .high { color: var(--high); font-weight: 600; }
.failed { color: var(--low); } .muted { color: var(--muted); }
.sev-ok { color: var(--ok); } .sev-note { color: var(--muted); } .sev-warning { color: var(--high); font-weight: 600; }
.sev-failure { color: var(--low); font-weight: 700; }
details summary { cursor: pointer; color: var(--muted); }
.tablewrap { max-width: 100%; overflow-x: auto; }
td.name { white-space: nowrap; } td.name a { color: inherit; }
td.why { min-width: 13rem; color: #374151; } td.verdict { white-space: nowrap; }
table.options { width: auto; font-size: 13px; } table.options th { background: none; position: static; }
.filters { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; margin: .4rem 0 .6rem; }
.filters select { font: inherit; padding: .1rem .3rem; }
.hidden { display: none; }
ol.toc { columns: 3 20rem; font-size: 13px; padding-left: 1.6rem; } ol.toc li { break-inside: avoid; }
figure.spectrum { border-top: 1px solid var(--line); padding-top: .6rem; margin: 1.2rem 0; }
figure.spectrum figcaption { color: #111827; font-size: .95rem; margin-bottom: .3rem; }
.warn { color: #b00020; font-weight: 600; }
.legend span { margin-right: 1.2rem; white-space: nowrap; }
.sw { display: inline-block; width: 1.6rem; height: 0; border-top: 3px solid; vertical-align: middle; margin-right: .3rem; }
"""

# Sorts tables by a clicked header (numbers numerically via data-sort, missing values last
# in both directions), mirrors the order into the URL fragment, and restores it on load.
_SORT_SCRIPT = """
(function () {
  "use strict";
  function value(cell) {
    var v = cell.getAttribute("data-sort");
    return v === null ? cell.textContent.trim() : v;
  }
  function sortBy(table, index, descending) {
    var numeric = table.tHead.rows[0].cells[index].hasAttribute("data-numeric");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a.cells[index]), y = value(b.cells[index]);
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      var order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.setAttribute("aria-sort", i === index ? (descending ? "descending" : "ascending") : "none");
    });
  }
  function columnIndex(table, key) {
    var cells = table.tHead.rows[0].cells;
    for (var i = 0; i < cells.length; i++) { if (cells[i].getAttribute("data-key") === key) { return i; } }
    return -1;
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.tabIndex = 0;
      function activate() {
        var descending = th.getAttribute("aria-sort") === "ascending";
        sortBy(table, index, descending);
        var fragment = "#sort=" + table.id + "." + th.getAttribute("data-key") + "." + (descending ? "desc" : "asc");
        try { history.replaceState(null, "", fragment); } catch (e) { /* some browsers refuse on file:// URLs */ }
      }
      th.addEventListener("click", activate);
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); activate(); }
      });
    });
    table.setAttribute("data-sortable", "ready");
  });
  // Filters: <select data-filter="verdict" data-table="layers">; rows, contents entries and
  // spectra carry data-verdict / data-kind; what does not match every filter is hidden.
  var selects = document.querySelectorAll("select[data-filter]");
  function applyFilters() {
    var wanted = {};
    Array.prototype.forEach.call(selects, function (s) { if (s.value) { wanted[s.getAttribute("data-filter")] = s.value; } });
    var shown = 0, total = 0;
    Array.prototype.forEach.call(document.querySelectorAll("[data-verdict]"), function (el) {
      var ok = Object.keys(wanted).every(function (key) { return el.getAttribute("data-" + key) === wanted[key]; });
      el.classList.toggle("hidden", !ok);
      if (el.tagName === "TR") { total += 1; shown += ok ? 1 : 0; }
    });
    var count = document.getElementById("filter-count");
    if (count) { count.textContent = shown + " of " + total + " layers shown"; }
  }
  Array.prototype.forEach.call(selects, function (s) { s.addEventListener("change", applyFilters); });
  if (selects.length) { applyFilters(); document.body.setAttribute("data-filters", "ready"); }
  var wanted = /^#sort=([\\w-]+)\\.([\\w-]+)\\.(asc|desc)$/.exec(location.hash);
  var table = wanted && document.getElementById(wanted[1]);
  if (table && columnIndex(table, wanted[2]) >= 0) { sortBy(table, columnIndex(table, wanted[2]), wanted[3] === "desc"); }
})();
"""


def _cell_html(column: Column, cell: Cell) -> str:
    classes = " ".join(filter(None, ("num" if column.numeric else "", cell.css)))
    sort = "" if cell.sort is None else repr(cell.sort) if isinstance(cell.sort, float) else str(cell.sort)
    text = escape(one_line(cell.text))
    if cell.href is not None:
        text = f'<a href="{escape(cell.href)}">{text}</a>'
    return (
        f'<td data-sort="{escape(sort)}"'
        + (f' class="{classes}"' if classes else "")
        + (f' title="{escape(one_line(cell.title))}"' if cell.title else "")
        + f">{text}</td>"
    )


def sortable_table(
    table_id: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    row_data: Sequence[dict[str, str]] | None = None,
) -> str:
    """An HTML table that the page's script makes sortable by any column; ``row_data``
    gives each row ``data-*`` attributes (what the filters match)."""
    head = "".join(
        f'<th data-key="{escape(c.key)}"'
        + (' data-numeric class="num"' if c.numeric else "")
        + f">{escape(c.title)}</th>"
        for c in columns
    )
    body = []
    for index, row in enumerate(rows):
        data = row_data[index] if row_data is not None else {}
        attributes = "".join(f' data-{key}="{escape(value)}"' for key, value in data.items())
        cells = "".join(_cell_html(column, cell) for column, cell in zip(columns, row, strict=True))
        body.append(f"<tr{attributes}>{cells}</tr>")
    return (
        f'<div class="tablewrap"><table id="{escape(table_id)}" class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def figure_html(figure: Figure, caption: str) -> str:
    """A figure inlined as a base64 PNG data URI, with its caption as alt text."""
    data = base64.b64encode(png_bytes(figure)).decode("ascii")
    width, height = (int(round(v)) for v in figure.get_size_inches() * figure.dpi)
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" alt="{escape(caption)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def cards(items: Sequence[tuple[str, str, str]]) -> str:
    """Headline numbers as cards: (label, value, css class of the value)."""
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card">{escape(label)}<b class="{escape(css)}">{escape(value)}</b></div>'
            for label, value, css in items
        )
        + "</div>"
    )


def page(title: str, subtitle: str, sections: Sequence[str]) -> str:
    """A complete, self-contained HTML document."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}{SVG_CSS}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="meta">{escape(one_line(subtitle))}</p>'
        + "".join(sections)
        + f'<p class="meta">weightscope {escape(__version__)} · a self-contained file: no network needed</p>'
        f"<script>{_SORT_SCRIPT}</script></body></html>\n"
    )


# --- the report of one checkpoint ---------------------------------------------------------


def _verdict_of(layer: LayerResult) -> str:
    return "failed" if not layer.ok else layer.verdict or "none"


def _summary_section(report: Report) -> str:
    s = report.summary
    t = report.thresholds
    low, high = number(t.alpha_low), number(t.alpha_high)
    items = [
        ("layers analysed", str(s.analysed), ""),
        (
            "median alpha",
            fmt(s.alpha_median, 2),
            alpha_band(s.alpha_median, t) if s.alpha_median is not None else "muted",
        ),
        ("MAD of alpha", fmt(s.alpha_mad, 2), ""),
        ("layers in the median", str(s.robust_layers), ""),
        ("left out: no reading of alpha", str(s.excluded_no_reading), "muted"),
        (f"left out: alpha > {number(t.alpha_random)}", str(s.excluded_above_8), "muted"),
        ("mean alpha (not robust)", fmt(s.alpha_mean, 2), "muted"),
        (f"alpha < {low}", str(s.below_2), "low" if s.below_2 else ""),
        (f"alpha {band_text(t)}", str(s.in_2_6), "ok"),
        (f"alpha > {high}", str(s.above_6), "high" if s.above_6 else ""),
        ("failed", str(s.failed), "failed" if s.failed else ""),
        ("tensors skipped", str(s.skipped), "muted"),
    ]
    items += [
        (f"verdict: {v}", str(n), vocabulary.css_class(v))
        for v, n in sorted(s.verdicts.items(), key=lambda kv: vocabulary.look_at_order(kv[0]))
    ]
    return "<h2>Summary</h2>" + cards(items)


def _look_at_section(report: Report) -> str:
    """Every verdict but healthy, most severe first, coloured by severity: how many layers,
    what it means, what to do (the same words as the terminal's "what to look at")."""
    counts = {verdict: n for verdict, n in report.summary.verdicts.items() if verdict != "healthy"}
    if not counts:
        return ""
    items = []
    for verdict in sorted(counts, key=vocabulary.look_at_order):
        record = vocabulary.finding(verdict)
        text = f"<b>{escape(record.meaning)}</b> {escape(record.advice)}" if record else ""
        items.append(
            f'<li><span class="{vocabulary.css_class(verdict)}">{escape(verdict)}</span> '
            f"({counts[verdict]} layer{'s' if counts[verdict] > 1 else ''}): {text}</li>"
        )
    return "<h2>What to look at</h2><ul>" + "".join(items) + "</ul>"


def _option_text(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) if value else "—"
    if value is None:
        return "—"
    return str(value)


def options_table(options: dict[str, object]) -> str:
    """The options a report was made with as a two-column table (thresholds folded away)."""
    rows = []
    for key, value in options.items():
        if isinstance(value, dict):
            inner = "".join(
                f"<tr><th>{escape(str(k))}</th><td>{escape(one_line(_option_text(v)))}</td></tr>"
                for k, v in value.items()
            )
            rows.append(
                f"<tr><th>{escape(key)}</th><td><details><summary>{len(value)} values</summary>"
                f'<table class="options">{inner}</table></details></td></tr>'
            )
        else:
            rows.append(f"<tr><th>{escape(key)}</th><td>{escape(one_line(_option_text(value)))}</td></tr>")
    return (
        '<details class="meta"><summary>options of this analysis</summary><table class="options">'
        + "".join(rows)
        + "</table></details>"
    )


def _filters(layers: Sequence[LayerResult]) -> str:
    """The verdict and kind selectors (only values present in the report are offered)."""

    def select(key: str, values: set[str]) -> str:
        options = "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in sorted(values))
        return f'<label>{key} <select data-filter="{key}"><option value="">all</option>{options}</select></label>'

    return (
        '<div class="filters">'
        + select("verdict", {_verdict_of(layer) for layer in layers})
        + select("kind", {layer.kind for layer in layers})
        + '<span id="filter-count" class="meta"></span></div>'
    )


def _skipped_section(report: Report) -> str:
    if not report.skipped:
        return ""
    columns = (
        Column("tensor", "tensor"),
        Column("shape", "shape"),
        Column("dtype", "dtype"),
        Column("reason", "reason"),
    )
    rows = [
        [text_cell(t.name), text_cell("×".join(map(str, t.shape)) or "scalar"), text_cell(t.dtype), text_cell(t.reason)]
        for t in report.skipped
    ]
    return (
        f"<h2>Skipped tensors</h2><details><summary>{len(rows)} tensors were not analysed (click to list)</summary>"
        + sortable_table("skipped", columns, rows)
        + "</details>"
    )


_LEGEND = (
    '<p class="legend meta"><span><i class="sw" style="border-color:#4c72b0"></i>ESD</span>'
    '<span><i class="sw" style="border-color:#d62728"></i>fitted power law (from xmin, dashed)</span>'
    '<span><i class="sw" style="border-color:#2ca02c"></i>Marchenko–Pastur bulk and its fitted edge (dashed)</span>'
    '<span><i class="sw" style="border-color:#ff7f0e"></i>randomised W and its own MP edge (dash-dot): '
    "correlation traps are eigenvalues of the randomised W above that edge</span>"
    "<span>red ticks: spikes above the bulk edge</span></p>"
)


def _spectrum_html(item: LayerAnalysis, anchor: str) -> str:
    result = item.result
    picture = esd_picture(result, item.evals, item.rand_evals)  # type: ignore[arg-type]  # a drawn layer kept its evals
    warnings = "".join(f'<div class="warn">⚠ {escape(one_line(w))}</div>' for w in picture.warnings)
    return (
        f'<figure class="spectrum" id="{anchor}" data-verdict="{escape(_verdict_of(result))}" data-kind="{escape(result.kind)}">'
        f'<figcaption><b>{escape(one_line(result.name))}</b> <span class="meta">({escape(picture.subtitle)})</span><br>'
        f"{escape(picture.title)}{warnings}</figcaption>{esd_svg(picture, anchor)}"
        '<p class="meta"><a href="#layers">back to the table</a></p></figure>'
    )


def _spectra_section(
    report: Report, drawable: Sequence[LayerAnalysis], anchors: dict[str, str], progress: Callable[[str], None] | None
) -> str:
    order = {layer.name: i for i, layer in enumerate(ordered_layers(report))}
    items = sorted(drawable, key=lambda item: order.get(item.result.name, len(order)))
    toc = "".join(
        f'<li data-verdict="{escape(_verdict_of(item.result))}" data-kind="{escape(item.result.kind)}">'
        f'<a href="#{anchors[item.result.name]}">{escape(one_line(item.result.name))}</a> '
        f'<span class="meta">{escape(_verdict_of(item.result))}</span></li>'
        for item in items
    )
    figures = []
    for item in items:
        figures.append(_spectrum_html(item, anchors[item.result.name]))
        if progress is not None:
            progress(item.result.name)
    return (
        f'<h2 id="spectra">Spectra ({len(items)})</h2><p class="meta">In depth order; the filters above '
        "apply here too. Each panel: (a) the ESD on log-log axes with the fitted power law; (b) the bulk "
        "against Marchenko–Pastur; (c) the CCDF with the fitted power law.</p>"
        + _LEGEND
        + f'<ol class="toc">{toc}</ol>'
        + "".join(figures)
    )


def report_html(
    report: Report, spectra: Sequence[LayerAnalysis] = (), progress: Callable[[str], None] | None = None
) -> str:
    """The page of one analysed checkpoint; ``spectra`` adds the spectrum of each given layer
    (``progress(name)`` is called after each one is drawn)."""
    thresholds = report.thresholds
    layers = ordered_layers(report)
    names = short_names([layer.name for layer in layers])
    drawable = [item for item in spectra if item.evals is not None and bool((item.evals > 0).any())]
    index = {layer.name: i for i, layer in enumerate(report.layers)}
    anchors = {item.result.name: f"spectrum-{index.get(item.result.name, n)}" for n, item in enumerate(drawable)}
    columns = layer_columns(HTML)
    sections = [options_table(report.options), _summary_section(report), _look_at_section(report)]
    if any(layer.ok and layer.alpha is not None for layer in report.layers):
        sections.append("<h2>Alpha by depth</h2>" + alpha_by_depth_svg(report, anchors) + depth_legend(report))
    sections.append(
        '<h2>Layers</h2><p class="meta">In depth order; click a column header to sort, a layer name to see its '
        f"spectrum. Alpha reads: {band_text(thresholds)} well trained, &gt; {number(thresholds.alpha_high)} "
        f"under-trained or random-like, &lt; {number(thresholds.alpha_low)} possibly over-fit.</p>"
        + _filters(layers)
        + sortable_table(
            "layers",
            [column.html_column for column in columns],
            [
                [column.html_cell(row) for column in columns]
                for row in layer_rows(layers, names.names, thresholds, anchors)
            ],
            [{"verdict": _verdict_of(layer), "kind": layer.kind} for layer in layers],
        )
        + (
            f'<p class="meta">Layer {escape(names.dropped)}; hover a name for the full one.</p>'
            if names.dropped
            else ""
        )
    )
    if drawable:
        sections.append(_spectra_section(report, drawable, anchors, progress))
    sections.append(lines_html("Model-level measures", measures_lines(report.measures)))
    sections.append(_skipped_section(report))
    subtitle = " · ".join(
        filter(None, (report.source, report.format, f"made by weightscope {report.weightscope_version}"))
    )
    return page("weightscope report", subtitle, sections)


#: Most spectra one page carries: every layer of a 12-block model (~80 matrices), the
#: flagged ones first beyond that. An SVG spectrum is ~15 KB and ~5 ms to write.
MAX_SPECTRA = 96


def spectra_worth_drawing(analyses: Sequence[LayerAnalysis], limit: int = MAX_SPECTRA) -> list[LayerAnalysis]:
    """Every layer when there are few; else the non-healthy ones first, in storage order."""
    drawable = [item for item in analyses if item.evals is not None]
    if len(drawable) <= limit:
        return drawable
    flagged = [item for item in drawable if item.result.verdict not in (None, "healthy")]
    chosen = {id(item) for item in (flagged + drawable)[:limit]}
    return [item for item in drawable if id(item) in chosen]


def write_html_report(
    report: Report,
    path: str | os.PathLike[str],
    spectra: Sequence[LayerAnalysis] = (),
    progress: Callable[[str], None] | None = None,
) -> None:
    """Write `report_html` to ``path`` atomically (a reader never sees half a report)."""
    write_text_atomic(path, report_html(report, spectra, progress))
