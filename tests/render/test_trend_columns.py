"""The one column spec of a trend's layers table: every view (terminal, markdown, HTML,
CSV) draws it, a per-checkpoint entry once per checkpoint, and a new entry reaches every
view that has a cell for it."""

from __future__ import annotations

import csv
import io

from rich.text import Text

from tests.render.test_html import dom_column
from tests.render.test_plots import synthetic_trend
from weightscope.render import trend_columns
from weightscope.render.cells import Cell
from weightscope.render.html_trend import trend_html
from weightscope.render.trend_columns import SERIES_COLUMNS, SeriesColumn
from weightscope.render.trend_views import layers_table, ordered_series, to_csv, to_markdown

STEPS = (0, 100, 300, 1000, 3000, 10000)


def _markdown_header(trend) -> list[str]:
    lines = to_markdown(trend).splitlines()
    header = next(line for line in lines if line.startswith("| layer |"))
    return [cell.strip() for cell in header.strip("|").split("|")]


def _html_headers(page: str) -> list[str]:
    head = page[page.index('<table id="layers"') :].split("</thead>")[0]
    return [part.split('"')[1] for part in head.split("data-key=")[1:]]


def test_each_view_has_one_alpha_column_per_checkpoint():
    trend = synthetic_trend(STEPS)
    assert next(csv.reader(io.StringIO(to_csv(trend)))) == [
        "name",
        "kind",
        *(f"alpha@{step}" for step in STEPS),
        *(f"dist_init@{step}" for step in STEPS),
        "flags",
    ]
    assert _markdown_header(trend) == ["layer", "kind", *(f"α@{step}" for step in STEPS), "flags"]
    assert [str(c.header) for c in layers_table(trend).columns] == ["blk", "layer", *map(str, STEPS), "flags"]
    assert _html_headers(trend_html(trend)) == ["layer", "kind", *(f"at{i}" for i in range(len(STEPS))), "flags"]


def test_a_new_entry_reaches_every_view(monkeypatch):
    """One entry, per checkpoint, with a cell for each view: it shows in all four, after
    the flags, with the cell of that layer at that checkpoint."""

    def text(row, i):
        return f"{row.series.kind}#{i}"

    planted = SeriesColumn(
        "probe@{label}",
        "probe@{label}",
        short="p{label}",
        key="probe{i}",
        each_checkpoint=True,
        table=lambda row, i: Text(text(row, i)),
        markdown=text,
        html=lambda row, i: Cell(text(row, i)),
        csv=text,
    )
    monkeypatch.setattr(trend_columns, "SERIES_COLUMNS", (*SERIES_COLUMNS, planted))
    trend = synthetic_trend(STEPS)
    first = ordered_series(trend)[0]

    rows = list(csv.DictReader(io.StringIO(to_csv(trend))))
    assert list(rows[0])[-len(STEPS) :] == [f"probe@{step}" for step in STEPS]
    assert {row["name"]: row["probe@300"] for row in rows} == {s.name: f"{s.kind}#2" for s in trend.layers}

    assert _markdown_header(trend)[-len(STEPS) :] == [f"probe@{step}" for step in STEPS]
    markdown_rows = [line for line in to_markdown(trend).splitlines() if line.startswith(f"| `{first.name}`")]
    assert markdown_rows[0].endswith(" | ".join(f"{first.kind}#{i}" for i in range(len(STEPS))) + " |")

    table = layers_table(trend)
    assert [str(c.header) for c in table.columns][-len(STEPS) :] == [f"p{step}" for step in STEPS]
    assert str(next(iter(table.columns[-1].cells))) == f"{first.kind}#{len(STEPS) - 1}"

    page = trend_html(trend)
    assert _html_headers(page)[-len(STEPS) :] == [f"probe{i}" for i in range(len(STEPS))]
    last = 2 + 2 * len(STEPS)  # layer, kind, alphas, flags, then the probe columns
    assert dom_column(page, "layers", last)[0] == f"{first.kind}#{len(STEPS) - 1}"
