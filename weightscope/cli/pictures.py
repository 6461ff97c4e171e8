"""What the commands that can draw share: the --html/--plot options and the early check.

Pictures need the plot extra; `need_pictures` runs before any analysis so a missing
matplotlib costs the user a second, not the time it took to read a whole run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from weightscope.cli.common import wrote

HtmlOption = Annotated[
    Optional[Path],
    typer.Option(
        "--html",
        readable=False,
        help="Also write a self-contained HTML report here (summary, sortable table, pictures; "
        "opens offline). The compare and trend pages need the plot extra.",
    ),
]
PlotOption = Annotated[
    Optional[Path],
    typer.Option("--plot", readable=False, help="Also draw the picture of the run (PNG) here. Needs the plot extra."),
]


def need_pictures(*targets: Path | None) -> None:
    """Fail now, with the install line, if any picture is asked for and matplotlib is missing."""
    if any(target is not None for target in targets):
        from weightscope.render.plots import require_matplotlib  # numpy: not at the CLI's start-up

        require_matplotlib()


def write_if_asked(target: Path | None, write: Callable[[Path], object]) -> None:
    """Run ``write(target)`` when the option was given, and say where the file went."""
    if target is not None:
        write(target)
        wrote(target)
