"""The one column spec of a report's layers: every view reads it, and the CSV carries
every field it names."""

from __future__ import annotations

import csv
import io

from tests.render.test_views import llama_report
from weightscope.render.columns import HTML, MARKDOWN, TABLE, layer_columns
from weightscope.render.html import report_html
from weightscope.render.table import report_table
from weightscope.render.text import to_csv, to_markdown


def test_each_view_shows_the_columns_the_spec_gives_it_in_order():
    report = llama_report(blocks=2)
    table = report_table(report)
    assert [str(c.header) for c in table.columns] == [c.title for c in layer_columns(TABLE)]
    header = to_markdown(report).splitlines()[4]
    assert header == "| " + " | ".join(c.field for c in layer_columns(MARKDOWN)) + " |"
    page = report_html(report)
    keys = [c.key or c.field for c in layer_columns(HTML)]
    head = page[page.index('<table id="layers"') :].split("</thead>")[0]
    assert [part.split('"')[1] for part in head.split("data-key=")[1:]] == keys


def test_the_csv_has_every_field_the_columns_name():
    report = llama_report(blocks=2)
    header = next(csv.reader(io.StringIO(to_csv(report))))
    # "why" is the reasons joined into one cell; the CSV has them as `reasons`
    fields = {c.field for c in layer_columns(TABLE) + layer_columns(MARKDOWN) + layer_columns(HTML)} - {"why"}
    assert fields <= set(header), fields - set(header)
