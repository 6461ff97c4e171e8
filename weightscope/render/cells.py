"""What an HTML table is made of: its columns (a sort key, a title, numeric or not) and its
cells (the text shown, the value it sorts by, a CSS class, a link and a tooltip)."""

from __future__ import annotations

from dataclasses import dataclass

from weightscope.render.style import fmt


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
    href: str | None = None
    title: str | None = None


def text_cell(text: str, css: str = "") -> Cell:
    """A cell that sorts by its text (an empty text counts as missing)."""
    return Cell(text, text or None, css)


def number_cell(value: float | None, digits: int = 3) -> Cell:
    return Cell(fmt(value, digits), value)
