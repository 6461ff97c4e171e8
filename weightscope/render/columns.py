"""The columns of a report's layer tables, once: for the terminal table, markdown and HTML.

Each `LayerColumn` says what it shows (``value``), how a number is formatted (``digits``:
one format for the whole column, `style.column_texts`), where it goes (``views``), its
header in each view and how it is aligned. A view draws the columns it is listed in, in
this order; a column that reads differently in one view (the alpha's colour in the
terminal, its band in markdown, the sortable cell of HTML) says so in the same entry. So a
new layer column is one entry here, and tests/test_architecture.py fails on a second list.

CSV is not a selection: it carries every field of the JSON (`render.text.to_csv`), under
the names that ``field`` uses here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich import box
from rich.table import Table
from rich.text import Text

from weightscope import vocabulary
from weightscope.config import Thresholds
from weightscope.errors import one_line
from weightscope.render.cells import Cell, Column, text_cell
from weightscope.render.style import alpha_band, alpha_style, column_texts, fmt, verdict_style
from weightscope.report import LayerResult
from weightscope.stats.update import UpdateStats

View = Literal["table", "markdown", "html", "updates"]
TABLE: View = "table"
MARKDOWN: View = "markdown"
HTML: View = "html"
#: The terminal table of a LoRA adapter's report: the update ΔW = s·B·A of each module.
UPDATES: View = "updates"


@dataclass(frozen=True)
class LayerRow:
    """What a cell may need beyond its layer: the short name the tables show, the numbers
    as formatted for their whole column, the report's thresholds, the spectrum anchor."""

    layer: LayerResult
    short: str
    numbers: dict[str, str]
    thresholds: Thresholds
    anchor: str | None = None


@dataclass(frozen=True)
class LayerColumn:
    """One column of the layer tables.

    ``field``: the markdown header (and the result's field name: the CSV and JSON key);
    ``title``: the terminal and HTML header; ``key``: the HTML sort key (``#sort=`` links);
    ``value``: what the cell shows and HTML sorts by (default: the field of the layer);
    ``digits``: a number formatted alike down the column; ``numeric``: sorted as a number and
    right-aligned; ``justify``: the terminal alignment when it is not that; the per-view
    functions replace the plain text where a view shows more (colour, band, link).
    """

    field: str
    title: str
    views: frozenset[View]
    key: str = ""
    value: Callable[[LayerResult], Any] | None = None
    digits: int | None = None
    numeric: bool = False
    justify: Literal["left", "right"] | None = None
    table: Callable[[LayerRow], str | Text] | None = None
    markdown: Callable[[LayerRow], str] | None = None
    html: Callable[[LayerRow], Cell] | None = None

    def raw(self, layer: LayerResult) -> Any:
        """The value: ``value(layer)``, else the field (dotted: a field of a field, None
        where a part is missing)."""
        if self.value is not None:
            return self.value(layer)
        found: Any = layer
        for part in self.field.split("."):
            found = getattr(found, part) if found is not None else None
        return found

    def text(self, row: LayerRow) -> str:
        """The plain text: the column-formatted number, else the value as `fmt` writes it."""
        if self.digits is not None:
            return row.numbers[self.field]
        return fmt(self.raw(row.layer))

    def table_cell(self, row: LayerRow) -> str | Text:
        return self.table(row) if self.table is not None else self.text(row)

    def markdown_cell(self, row: LayerRow) -> str:
        return self.markdown(row) if self.markdown is not None else self.text(row)

    def html_cell(self, row: LayerRow) -> Cell:
        if self.html is not None:
            return self.html(row)
        text = self.text(row)
        return Cell(text, self.raw(row.layer)) if self.numeric else text_cell(text)

    @property
    def html_column(self) -> Column:
        return Column(self.key or self.field, self.title, self.numeric)

    @property
    def table_justify(self) -> Literal["left", "right"]:
        return self.justify or ("right" if self.numeric else "left")


def _shape(layer: LayerResult) -> str:
    return "×".join(map(str, layer.shape))


def cell_text(value: str, style: str = "") -> Text:
    """A terminal cell from a string of the checkpoint: never markup, never a control character."""
    return Text(one_line(value), style=style)


def _table_alpha(row: LayerRow) -> Text:
    return Text(row.numbers["alpha"], style=alpha_style(row.layer.alpha, row.thresholds))


def _markdown_alpha(row: LayerRow) -> str:
    alpha = row.layer.alpha
    text = row.numbers["alpha"]
    return f"{text} ({alpha_band(alpha, row.thresholds)})" if alpha is not None else text


def _html_alpha(row: LayerRow) -> Cell:
    alpha = row.layer.alpha
    return Cell(row.numbers["alpha"], alpha, alpha_band(alpha, row.thresholds) if alpha is not None else "")


def _table_verdict(row: LayerRow) -> Text:
    layer = row.layer
    verdict = layer.verdict or ("ok" if layer.ok else "failed")
    return Text(verdict, style=verdict_style(verdict) if layer.ok or layer.verdict else "red")


def _markdown_verdict(row: LayerRow) -> str:
    layer = row.layer
    return f"failed: {layer.reason}" if not layer.ok else fmt(layer.verdict)


def _html_verdict(row: LayerRow) -> Cell:
    layer = row.layer
    if not layer.ok:
        return Cell("failed", "failed", "failed verdict")
    if layer.verdict is None:
        return Cell("—", None, "muted")
    return Cell(
        layer.verdict, layer.verdict, vocabulary.css_class(layer.verdict) + " verdict", title=layer.advice or None
    )


#: The confidence of a reading of alpha as the terminal's "fit" column shows it (no reading: empty).
_FIT_TEXT = {"solid": "solid", "approximate": "approx"}


def _html_reading(row: LayerRow) -> Cell:
    layer = row.layer
    reading = (layer.confidence or "not judged" if layer.has_reading else "none") if layer.alpha is not None else "—"
    return Cell(reading, reading if layer.alpha is not None else None, "" if layer.has_reading else "muted")


def _why(layer: LayerResult) -> str:
    """Why the layer reads as it does: its reasons, or why its analysis failed."""
    return (layer.reason if not layer.ok else " ".join(layer.reasons)) or ""


_ALL = frozenset({TABLE, MARKDOWN, HTML})
_TABLES = frozenset({TABLE, HTML})

#: The layer columns of a report, in order. Markdown names the layer in full and puts the
#: block after it; the terminal and HTML tables lead with the block and show the short
#: name (`rows.short_names`). The terminal has no kind column: the short name says it
#: (attention.self.query, mlp.up_proj), and the 10 columns it took keep a 120-column row on
#: one line.
LAYER_COLUMNS: tuple[LayerColumn, ...] = (
    LayerColumn(
        "block",
        "blk",
        _TABLES,
        numeric=True,
        table=lambda row: fmt(row.layer.block) if row.layer.block is not None else "",
    ),
    LayerColumn("name", "name", frozenset({MARKDOWN})),
    LayerColumn(
        "name",
        "layer",
        _TABLES,
        key="layer",
        table=lambda row: cell_text(row.short),
        html=lambda row: Cell(
            row.short, row.layer.name, "name", href=f"#{row.anchor}" if row.anchor else None, title=row.layer.name
        ),
    ),
    LayerColumn("kind", "kind", frozenset({MARKDOWN, HTML})),
    LayerColumn("block", "block", frozenset({MARKDOWN})),
    LayerColumn("shape", "shape", _ALL, value=_shape, justify="right"),
    LayerColumn(
        "alpha", "alpha", _ALL, digits=2, numeric=True, table=_table_alpha, markdown=_markdown_alpha, html=_html_alpha
    ),
    LayerColumn("D", "D", _ALL, digits=3, numeric=True),
    LayerColumn("num_tail", "tail", _ALL, key="tail", numeric=True),
    LayerColumn("lambda_max", "σmax²", _ALL, digits=3, numeric=True),
    LayerColumn("log_norm", "log‖W‖²", _ALL, digits=2, numeric=True),
    LayerColumn("stable_rank", "s.rank", _ALL, digits=1, numeric=True),
    LayerColumn("verdict", "verdict", _ALL, table=_table_verdict, markdown=_markdown_verdict, html=_html_verdict),
    LayerColumn(
        "confidence",
        "fit",
        frozenset({TABLE}),
        table=lambda row: Text(_FIT_TEXT.get(row.layer.confidence or "", ""), style="dim"),
    ),
    LayerColumn("confidence", "reading", frozenset({HTML}), html=_html_reading),
    LayerColumn("why", "why", frozenset({HTML}), value=_why, html=lambda row: text_cell(_why(row.layer), "why")),
)


def _of_update(text: Callable[[UpdateStats], str]) -> Callable[[LayerRow], str]:
    """A cell of the layer's update; empty for a layer without one (a modules_to_save
    tensor, a failed module: the note column says which)."""
    return lambda row: text(row.layer.update) if row.layer.update is not None else ""


def _update_note(row: LayerRow) -> Text:
    layer = row.layer
    return cell_text(layer.update.note or "" if layer.update is not None else layer.reason or layer.verdict or "")


_UPDATES = frozenset({UPDATES})

#: The columns of a LoRA adapter's updates (an adapter's report in the terminal).
UPDATE_COLUMNS: tuple[LayerColumn, ...] = (
    LayerColumn("name", "layer", _UPDATES, table=lambda row: cell_text(row.layer.name)),
    LayerColumn("kind", "kind", _UPDATES),
    LayerColumn("block", "blk", _UPDATES, numeric=True),
    LayerColumn("shape", "shape", _UPDATES, value=_shape, justify="right"),
    LayerColumn("update.lora_rank", "r", _UPDATES, numeric=True, table=_of_update(lambda u: fmt(u.lora_rank))),
    LayerColumn("update.scale", "scale", _UPDATES, numeric=True, table=_of_update(lambda u: fmt(u.scale))),
    LayerColumn("update.norm", "‖ΔW‖_F", _UPDATES, numeric=True, table=_of_update(lambda u: fmt(u.norm))),
    LayerColumn(
        "update.singular_values",
        "σmax",
        _UPDATES,
        numeric=True,
        table=_of_update(lambda u: fmt(u.singular_values[0] if u.singular_values else None)),
    ),
    LayerColumn(
        "update.effective_rank",
        "eff. rank",
        _UPDATES,
        numeric=True,
        table=_of_update(lambda u: fmt(u.effective_rank, 1)),
    ),
    LayerColumn("update.rank90", "rank90", _UPDATES, numeric=True, table=_of_update(lambda u: fmt(u.rank90))),
    LayerColumn(
        "update.rank_share",
        "r used",
        _UPDATES,
        numeric=True,
        table=_of_update(lambda u: f"{fmt((u.rank_share or 0) * 100, 0)} %"),
    ),
    LayerColumn("update.note", "note", _UPDATES, table=_update_note),
)


def layer_table(title: Text, caption: str) -> Table:
    """The frame of the terminal's layer tables (a report's, a comparison's): a rule under
    the header, no outer box, one space between columns; ``caption`` says what the short
    names leave out (`rows.short_names`)."""
    return Table(
        title=title,
        title_justify="left",
        header_style="bold",
        caption=caption or None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )


def layer_columns(view: View) -> list[LayerColumn]:
    """The columns ``view`` shows, in order."""
    return [column for column in (*LAYER_COLUMNS, *UPDATE_COLUMNS) if view in column.views]


def layer_rows(
    layers: Sequence[LayerResult],
    shorts: Sequence[str],
    thresholds: Thresholds,
    anchors: dict[str, str] | None = None,
) -> list[LayerRow]:
    """One `LayerRow` per layer, with every column's numbers formatted for the whole column."""
    digits = {column.field: column.digits for column in LAYER_COLUMNS if column.digits is not None}
    numbers = {field: column_texts([getattr(layer, field) for layer in layers], d) for field, d in digits.items()}
    return [
        LayerRow(
            layer,
            short,
            {field: texts[i] for field, texts in numbers.items()},
            thresholds,
            (anchors or {}).get(layer.name),
        )
        for i, (layer, short) in enumerate(zip(layers, shorts))
    ]
