"""The columns of a comparison's layer pairs, once: terminal table, markdown, HTML and CSV.

The pair twin of `render.columns` (a report's layers). Each `PairColumn` names its CSV
key (``field``), its markdown and HTML header (``title``), its terminal header where that
is shorter (``short``), the views it appears in, and the cell each view draws; the
columns of the update ΔW (``weights``) appear in the tables only when weights were
compared, and always in CSV. A view draws its columns in this order, so a new column of a
comparison is one entry here, and tests/test_architecture.py fails on a second list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich.text import Text

from weightscope.checkpoint.layers import block_index
from weightscope.commands.compare import LayerChange
from weightscope.config import Thresholds
from weightscope.errors import one_line
from weightscope.render.cells import Cell, Column, number_cell, text_cell
from weightscope.render.style import alpha_band, alpha_style, column_texts, fmt
from weightscope.stats.update import UpdateStats

PairView = Literal["table", "markdown", "html", "csv"]
TABLE: PairView = "table"
MARKDOWN: PairView = "markdown"
HTML: PairView = "html"
CSV: PairView = "csv"


def signed(value: float | None) -> str:
    return "—" if value is None else ("+" if value > 0 else "") + fmt(value)


def verdict_change(change: LayerChange) -> str:
    if change.verdict_a is None and change.verdict_b is None:
        return "—"
    if change.verdict_a == change.verdict_b:
        return f"= {change.verdict_b}"
    return f"{change.verdict_a or '—'} → {change.verdict_b or '—'}"


@dataclass(frozen=True)
class PairRow:
    """What a cell may need beyond its pair: the short name the tables show, the numbers as
    formatted for their whole terminal column, the thresholds that colour alpha."""

    change: LayerChange
    short: str
    numbers: dict[str, str]
    thresholds: Thresholds


@dataclass(frozen=True)
class PairColumn:
    """One column of a comparison's layer pairs.

    ``field``: the CSV key (a field of `LayerChange`, ``update.*`` one of its update);
    ``title``: the markdown and HTML header; ``short``: the terminal header (default the
    title); ``key``: the HTML sort key (default the field's last part); ``value``: the number
    the terminal formats alike down the column (``digits``, ``signed``); ``numeric``: sorted
    as a number and right-aligned; ``wrap``: the terminal folds a long cell instead of
    cutting it; ``weights``: shown only when weights were compared (CSV always has it).
    """

    field: str
    title: str
    views: frozenset[PairView]
    short: str = ""
    key: str = ""
    value: Callable[[LayerChange], float | int | None] | None = None
    digits: int = 3
    signed: bool = False
    numeric: bool = False
    wrap: bool = False
    weights: bool = False
    table: Callable[[PairRow], Text] | None = None
    markdown: Callable[[LayerChange], str] | None = None
    html: Callable[[PairRow], Cell] | None = None

    @property
    def header(self) -> str:
        return self.short or self.title

    @property
    def html_column(self) -> Column:
        return Column(self.key or self.field.rsplit(".", 1)[-1], self.title, self.numeric)

    def table_cell(self, row: PairRow) -> Text:
        assert self.table is not None, self.field
        return self.table(row)

    def markdown_cell(self, change: LayerChange) -> str:
        assert self.markdown is not None, self.field
        return self.markdown(change)

    def html_cell(self, row: PairRow) -> Cell:
        assert self.html is not None, self.field
        return self.html(row)


def _of_update(
    value: Callable[[UpdateStats], Any],
) -> Callable[[LayerChange], Any]:
    """A value of the pair's update ΔW; None for a pair without one."""
    return lambda change: value(change.update) if change.update is not None else None


def _number(field: str, style: Callable[[PairRow], str] | None = None) -> Callable[[PairRow], Text]:
    """The terminal cell of a column-formatted number."""
    return lambda row: Text(row.numbers[field], style=style(row) if style else "")


def _alpha(field: str, alpha: Callable[[LayerChange], float | None]) -> PairColumn:
    def html(row: PairRow) -> Cell:
        value = alpha(row.change)
        cell = number_cell(value, 2)
        return Cell(cell.text, cell.sort, alpha_band(value, row.thresholds) if value is not None else "muted")

    return PairColumn(
        field,
        f"alpha {field[-1].upper()}",
        _ALL,
        short=f"α {field[-1].upper()}",
        value=alpha,
        digits=2,
        numeric=True,
        table=_number(field, lambda row: alpha_style(alpha(row.change), row.thresholds)),
        markdown=lambda change: fmt(alpha(change)),
        html=html,
    )


def _change(
    field: str, title: str, short: str, digits: int, value: Callable[[LayerChange], float | None]
) -> PairColumn:
    return PairColumn(
        field,
        title,
        _ALL,
        short=short,
        value=value,
        digits=digits,
        signed=True,
        numeric=True,
        table=_number(field),
        markdown=lambda change: signed(value(change)),
        html=lambda row: Cell(signed(value(row.change)), value(row.change)),
    )


def _markdown_verdict(change: LayerChange) -> str:
    text = verdict_change(change)
    return f"**worse:** {text}" if change.worse else text


def _rank90(change: LayerChange) -> str:
    update = change.update
    return f"{update.rank90}/{update.dim}" if update else ""


def _html_rank90(row: PairRow) -> Cell:
    update = row.change.update
    return Cell(f"{update.rank90}/{update.dim}", update.rank90) if update else Cell("—", None, "muted")


_ALL = frozenset({TABLE, MARKDOWN, HTML, CSV})
_TABLES = frozenset({TABLE, HTML})
_CSV = frozenset({CSV})
_relative_norm = _of_update(lambda u: u.relative_norm)
_effective_rank = _of_update(lambda u: u.effective_rank)
_stable_rank = _of_update(lambda u: u.stable_rank)

#: The update's CSV-only fields, in the CSV's order after ``update.rank90`` (the last four: an adapter's).
_CSV_UPDATE = (
    "dim",
    "rank99",
    "random_rank90",
    "concentrated",
    "params90",
    "params",
    "norm",
    "lora_rank",
    "scale",
    "rank_share",
    "note",
)

#: The columns of a comparison's layer pairs, in order. Markdown (and CSV) name the layer in
#: full; the terminal and HTML tables lead with the block and show the short name
#: (`rows.short_names`). The terminal leaves out the kind and the update's stable rank
#: (in the other views) so that a row fits 120 columns.
PAIR_COLUMNS: tuple[PairColumn, ...] = (
    PairColumn(
        "block",
        "blk",
        _TABLES,
        numeric=True,
        table=lambda row: Text("" if (block := block_index(row.change.name)) is None else str(block)),
        html=lambda row: number_cell(block_index(row.change.name)),
    ),
    PairColumn("name", "layer", frozenset({MARKDOWN, CSV}), markdown=lambda change: change.name),
    PairColumn(
        "name",
        "layer",
        _TABLES,
        key="layer",
        table=lambda row: Text(one_line(row.short)),
        html=lambda row: Cell(row.short, row.change.name, "name", title=row.change.name),
    ),
    PairColumn("name_a", "name_a", _CSV),
    PairColumn("name_b", "name_b", _CSV),
    PairColumn(
        "kind",
        "kind",
        frozenset({MARKDOWN, HTML, CSV}),
        markdown=lambda change: change.kind,
        html=lambda row: text_cell(row.change.kind),
    ),
    _alpha("alpha_a", lambda change: change.alpha_a),
    _alpha("alpha_b", lambda change: change.alpha_b),
    _change("delta_alpha", "Δalpha", "Δα", 2, lambda change: change.delta_alpha),
    _change("delta_log_norm", "Δlog‖W‖²", "Δlog‖W‖²", 3, lambda change: change.delta_log_norm),
    _change("delta_log_spectral_norm", "Δlog λmax", "Δlogλmax", 3, lambda change: change.delta_log_spectral_norm),
    PairColumn(
        "verdict",
        "verdict",
        frozenset({TABLE, MARKDOWN, HTML}),
        wrap=True,
        table=lambda row: Text(verdict_change(row.change), style="bold red" if row.change.worse else ""),
        markdown=_markdown_verdict,
        html=lambda row: text_cell(verdict_change(row.change), "low" if row.change.worse else ""),
    ),
    PairColumn("verdict_a", "verdict_a", _CSV),
    PairColumn("verdict_b", "verdict_b", _CSV),
    PairColumn("worse", "worse", _CSV),
    PairColumn(
        "update.relative_norm",
        "‖ΔW‖/‖W‖",
        _ALL,
        value=_relative_norm,
        numeric=True,
        weights=True,
        table=lambda row: Text(
            row.numbers["update.relative_norm"] if row.change.update else one_line(row.change.note or "—")
        ),
        markdown=lambda change: fmt(_relative_norm(change)) if change.update else change.note or "—",
        html=lambda row: number_cell(_relative_norm(row.change)),
    ),
    PairColumn("update.stable_rank", "update.stable_rank", _CSV),
    PairColumn(
        "update.effective_rank",
        "eff. rank",
        _ALL,
        short="eff.rk",
        value=_effective_rank,
        digits=1,
        numeric=True,
        weights=True,
        table=lambda row: Text(row.numbers["update.effective_rank"] if row.change.update else ""),
        markdown=lambda change: fmt(_effective_rank(change), 1) if change.update else "",
        html=lambda row: number_cell(_effective_rank(row.change), 1),
    ),
    PairColumn(
        "update.stable_rank",
        "stable rank",
        frozenset({MARKDOWN, HTML}),
        numeric=True,
        weights=True,
        markdown=lambda change: fmt(_stable_rank(change), 1) if change.update else "",
        html=lambda row: number_cell(_stable_rank(row.change), 1),
    ),
    PairColumn(
        "update.rank90",
        "rank90",
        _ALL,
        numeric=True,
        weights=True,
        table=lambda row: Text(_rank90(row.change)),
        markdown=_rank90,
        html=_html_rank90,
    ),
    *(PairColumn(f"update.{name}", f"update.{name}", _CSV) for name in _CSV_UPDATE),
    PairColumn("lambda_max_change", "lambda_max_change", _CSV),
    PairColumn("stable_rank_change", "stable_rank_change", _CSV),
    PairColumn(
        "note",
        "note",
        frozenset({HTML, CSV}),
        weights=True,
        html=lambda row: text_cell(row.change.note or ""),
    ),
)


def pair_columns(view: PairView, weights: bool = True) -> list[PairColumn]:
    """The columns ``view`` shows, in order; without the update's when no weights were
    compared (CSV keeps them, empty)."""
    return [c for c in PAIR_COLUMNS if view in c.views and (weights or not c.weights or view == CSV)]


def csv_columns() -> list[str]:
    """The CSV header: every pair field (update.* empty when no weights were compared)."""
    return [column.field for column in pair_columns(CSV)]


def pair_rows(changes: Sequence[LayerChange], shorts: Sequence[str], thresholds: Thresholds) -> list[PairRow]:
    """One `PairRow` per pair, with every terminal number formatted for the whole column."""
    numbers = {
        column.field: column_texts([column.value(change) for change in changes], column.digits, signed=column.signed)
        for column in pair_columns(TABLE)
        if column.value is not None
    }
    return [
        PairRow(change, short, {field: texts[i] for field, texts in numbers.items()}, thresholds)
        for i, (change, short) in enumerate(zip(changes, shorts))
    ]
