"""Self-contained HTML reports: one file that opens in any browser, offline, forever.

Everything a page needs is inside it: the pictures as base64 PNG data URIs, the CSS, and
a small script that makes tables sortable (click a header; the order is kept in the URL
fragment, ``#sort=TABLE.COLUMN.asc|desc``, so a link or a reload shows the same order).
There is no external reference at all — no fonts, no CDN, no http(s) URL — so a report
mailed around or archived with a checkpoint still renders years later.

The building blocks (`page`, `sortable_table`, `figure_html`) are shared by the reports
of `analyze`, `compare` and `trend`; `report_html` is the page of one analysed checkpoint.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from weightscope._version import __version__
from weightscope.io import write_text_atomic
from weightscope.render.plot_esd import layer_figure
from weightscope.render.plot_summary import is_trusted, summary_figure
from weightscope.render.plots import png_bytes, require_matplotlib
from weightscope.render.style import alpha_band, fmt
from weightscope.report import LayerResult, Report

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from weightscope.pipeline import LayerAnalysis

_CSS = """
:root { --ok: #1b7f3b; --low: #c0392b; --high: #a67c00; --muted: #6b7280; --line: #e5e7eb; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111827;
       margin: 0 auto; padding: 1.5rem 2rem 3rem; max-width: 1400px; }
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
th, td { padding: .3rem .55rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
thead th { position: sticky; top: 0; background: #f9fafb; }
table.sortable thead th { cursor: pointer; user-select: none; white-space: nowrap; }
table.sortable thead th::after { content: " \\2195"; color: #c4c8cf; }
table.sortable thead th[aria-sort="ascending"]::after { content: " \\2191"; color: #111827; }
table.sortable thead th[aria-sort="descending"]::after { content: " \\2193"; color: #111827; }
tbody tr:nth-child(even) { background: #fafafa; }
.low { color: var(--low); font-weight: 600; } .ok { color: var(--ok); } .high { color: var(--high); font-weight: 600; }
.failed { color: var(--low); } .muted { color: var(--muted); }
details summary { cursor: pointer; color: var(--muted); }
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
  var wanted = /^#sort=([\\w-]+)\\.([\\w-]+)\\.(asc|desc)$/.exec(location.hash);
  var table = wanted && document.getElementById(wanted[1]);
  if (table && columnIndex(table, wanted[2]) >= 0) { sortBy(table, columnIndex(table, wanted[2]), wanted[3] === "desc"); }
})();
"""


@dataclass(frozen=True)
class Column:
    """A table column: ``key`` names it in ``#sort=`` links; numeric columns sort as numbers."""

    key: str
    title: str
    numeric: bool = False


@dataclass(frozen=True)
class Cell:
    """What a cell shows, the value it sorts by (None: missing, sorted last), its CSS class."""

    text: str
    sort: float | str | None = None
    css: str = ""


def text_cell(text: str, css: str = "") -> Cell:
    """A cell that sorts by its text (an empty text counts as missing)."""
    return Cell(text, text or None, css)


def number_cell(value: float | None, digits: int = 3) -> Cell:
    return Cell(fmt(value, digits), value)


def sortable_table(table_id: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> str:
    """An HTML table that the page's script makes sortable by any column."""
    head = "".join(
        f'<th data-key="{escape(c.key)}"' + (' data-numeric class="num"' if c.numeric else "") + f">{escape(c.title)}</th>"
        for c in columns
    )
    body = []
    for row in rows:
        cells = []
        for column, cell in zip(columns, row, strict=True):
            classes = " ".join(filter(None, ("num" if column.numeric else "", cell.css)))
            sort = "" if cell.sort is None else repr(cell.sort) if isinstance(cell.sort, float) else str(cell.sort)
            cells.append(
                f'<td data-sort="{escape(sort)}"' + (f' class="{classes}"' if classes else "") + f">{escape(cell.text)}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table id="{escape(table_id)}" class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
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
    return '<div class="cards">' + "".join(
        f'<div class="card">{escape(label)}<b class="{escape(css)}">{escape(value)}</b></div>' for label, value, css in items
    ) + "</div>"


def page(title: str, subtitle: str, sections: Sequence[str]) -> str:
    """A complete, self-contained HTML document."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p class=\"meta\">{escape(subtitle)}</p>"
        + "".join(sections)
        + f'<p class="meta">weightscope {escape(__version__)} · a self-contained file: no network needed</p>'
        f"<script>{_SORT_SCRIPT}</script></body></html>\n"
    )


# --- the report of one checkpoint ---------------------------------------------------------

LAYER_COLUMNS = (
    Column("layer", "layer"), Column("kind", "kind"), Column("block", "block", True), Column("shape", "shape"),
    Column("alpha", "alpha", True), Column("D", "D", True), Column("tail", "tail", True),
    Column("lambda_max", "σmax²", True), Column("log_norm", "log‖W‖²", True), Column("stable_rank", "stable rank", True),
    Column("verdict", "verdict"), Column("trust", "fit trusted"), Column("why", "why"),
)


def _verdict_cell(layer: LayerResult) -> Cell:
    if not layer.ok:
        return Cell("failed", "failed", "failed")
    if layer.verdict is None:
        return Cell("—", None, "muted")
    return Cell(layer.verdict, layer.verdict, "ok" if layer.verdict == "healthy" else "low")


def _layer_row(layer: LayerResult) -> list[Cell]:
    alpha = number_cell(layer.alpha)
    if layer.alpha is not None:
        alpha = Cell(alpha.text, alpha.sort, alpha_band(layer.alpha))
    trust = Cell("—", None, "muted") if layer.fit_trust is None else Cell(
        "yes" if is_trusted(layer) else "no", "yes" if is_trusted(layer) else "no", "" if is_trusted(layer) else "low"
    )
    why = layer.reason if not layer.ok else "; ".join(layer.reasons)
    return [
        text_cell(layer.name), text_cell(layer.kind), number_cell(layer.block), text_cell("×".join(map(str, layer.shape))),
        alpha, number_cell(layer.D), number_cell(layer.num_tail), number_cell(layer.lambda_max),
        number_cell(layer.log_norm), number_cell(layer.stable_rank, 1),
        _verdict_cell(layer), trust, text_cell(why or ""),
    ]


def _summary_section(report: Report) -> str:
    s = report.summary
    items = [
        ("layers analysed", str(s.analysed), ""),
        ("median alpha", fmt(s.alpha_median, 2), alpha_band(s.alpha_median) if s.alpha_median is not None else "muted"),
        ("MAD of alpha", fmt(s.alpha_mad, 2), ""),
        ("layers in the median", str(s.robust_layers), ""),
        ("left out: untrusted fit", str(s.excluded_untrusted), "muted"),
        ("left out: alpha > 8", str(s.excluded_above_8), "muted"),
        ("mean alpha (not robust)", fmt(s.alpha_mean, 2), "muted"),
        ("alpha < 2", str(s.below_2), "low" if s.below_2 else ""),
        ("alpha 2–6", str(s.in_2_6), "ok"),
        ("alpha > 6", str(s.above_6), "high" if s.above_6 else ""),
        ("failed", str(s.failed), "failed" if s.failed else ""),
        ("tensors skipped", str(s.skipped), "muted"),
    ]
    items += [(f"verdict: {v}", str(n), "ok" if v == "healthy" else "low") for v, n in sorted(s.verdicts.items())]
    return "<h2>Summary</h2>" + cards(items)


def _skipped_section(report: Report) -> str:
    if not report.skipped:
        return ""
    columns = (Column("tensor", "tensor"), Column("shape", "shape"), Column("dtype", "dtype"), Column("reason", "reason"))
    rows = [
        [text_cell(t.name), text_cell("×".join(map(str, t.shape)) or "scalar"), text_cell(t.dtype), text_cell(t.reason)]
        for t in report.skipped
    ]
    return (
        f"<h2>Skipped tensors</h2><details><summary>{len(rows)} tensors were not analysed (click to list)</summary>"
        + sortable_table("skipped", columns, rows) + "</details>"
    )


def report_html(report: Report, spectra: Sequence[LayerAnalysis] = ()) -> str:
    """The page of one analysed checkpoint; ``spectra`` adds an ESD figure per given layer."""
    require_matplotlib()
    sections = [_summary_section(report)]
    if any(layer.ok and layer.alpha is not None for layer in report.layers):
        sections.append("<h2>Alpha by depth</h2>" + figure_html(summary_figure(report), "alpha of every layer by depth"))
    sections.append(
        "<h2>Layers</h2><p class=\"meta\">Click a column header to sort. Alpha reads: 2–6 well trained, "
        "&gt; 6 under-trained or random-like, &lt; 2 possibly over-fit.</p>"
        + sortable_table("layers", LAYER_COLUMNS, [_layer_row(layer) for layer in report.layers])
    )
    drawable = [item for item in spectra if item.evals is not None]
    if drawable:
        sections.append("<h2>Spectra</h2>" + "".join(
            figure_html(layer_figure(item), f"ESD of {item.result.name}") for item in drawable
        ))
    sections.append(_skipped_section(report))
    options = ", ".join(f"{k} = {v}" for k, v in report.options.items())
    subtitle = " · ".join(filter(None, (report.source, report.format, options)))
    return page("weightscope report", subtitle, sections)


#: Most ESD figures one page carries (each is ~60 KB inlined).
MAX_SPECTRA = 48


def spectra_worth_drawing(analyses: Sequence[LayerAnalysis], limit: int = MAX_SPECTRA) -> list[LayerAnalysis]:
    """Every layer when there are few; else the non-healthy ones first, in storage order."""
    drawable = [item for item in analyses if item.evals is not None]
    if len(drawable) <= limit:
        return drawable
    flagged = [item for item in drawable if item.result.verdict not in (None, "healthy")]
    chosen = {id(item) for item in (flagged + drawable)[:limit]}
    return [item for item in drawable if id(item) in chosen]


def write_html_report(report: Report, path: str | os.PathLike[str], spectra: Sequence[LayerAnalysis] = ()) -> None:
    """Write `report_html` to ``path`` atomically (a reader never sees half a report)."""
    write_text_atomic(path, report_html(report, spectra))
