"""What every command shares: error handling, output writing, how much is said on stderr.

stdout carries results only; stderr carries the chatter (progress, "wrote PATH"), which
``-q/--quiet`` silences and ``-v/--verbose`` extends (thresholds used, timings). Errors
are always one line on stderr. Paths and names are printed without markup and without
wrapping: a CI log must show "wrote PATH" whole, on one line, whatever the width.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from weightscope.errors import WeightscopeError
from weightscope.io import write_text_atomic

#: stdout carries results only (a table, JSON, CSV, markdown); everything else goes to stderr.
#: Piped to a file or a CI log there is no terminal width to honour: use a wide one.
stdout = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
stderr = Console(stderr=True, highlight=False)

DebugOption = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]

#: How much goes to stderr besides errors: 0 quiet, 1 normal, 2 verbose.
_verbosity = 1


def _set_quiet(value: bool) -> None:
    global _verbosity
    if value:
        _verbosity = 0


def _set_verbose(value: bool) -> None:
    global _verbosity
    if value and _verbosity:
        _verbosity = 2


def reset_verbosity() -> None:
    """Back to normal (each command line starts there; tests run many in one process)."""
    global _verbosity
    _verbosity = 1


QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Print only results and errors: no progress, no 'wrote PATH'.",
                 callback=_set_quiet, is_eager=True, expose_value=False),
]
VerboseOption = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="Also print the thresholds used and timings on stderr.",
                 callback=_set_verbose, expose_value=False),
]


def is_quiet() -> bool:
    return _verbosity == 0


def say(message: str, style: str = "") -> None:
    """One line of chatter on stderr (not with --quiet); never markup, never wrapped."""
    if _verbosity >= 1:
        stderr.print(Text(message, style=style), soft_wrap=True)


def detail(message: str) -> None:
    """One line on stderr with --verbose only."""
    if _verbosity >= 2:
        stderr.print(Text(message, style="dim"), soft_wrap=True)


def wrote(path: object) -> None:
    """Say where a file went: ``wrote PATH``, the path whole on one line."""
    say(f"wrote {path}")
OutputOption = Annotated[
    Optional[Path], typer.Option("--output", "-o", help="Write to this file (atomically) instead of stdout; .json/.csv/.md pick the format.")
]


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    md = "md"


_SUFFIX_FORMATS = {".json": OutputFormat.json, ".csv": OutputFormat.csv, ".md": OutputFormat.md}


@contextmanager
def user_errors(debug: bool) -> Iterator[None]:
    """Turn failures into one line on stderr and exit code 2 (traceback only with --debug)."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except WeightscopeError as exc:
        if debug:
            raise
        stderr.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        stderr.print("[bold red]interrupted[/]")
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug, not bad input: still one line unless --debug
        if debug:
            raise
        stderr.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} (rerun with --debug for the traceback)",
            soft_wrap=True,
        )
        raise typer.Exit(2) from None


def resolve_format(fmt: OutputFormat | None, output: Path | None) -> OutputFormat:
    """The explicit --format, else the output file's suffix, else the table."""
    if fmt is not None:
        return fmt
    if output is not None:
        if output.suffix.lower() in _SUFFIX_FORMATS:
            return _SUFFIX_FORMATS[output.suffix.lower()]
        raise WeightscopeError(f"cannot tell the format of {output}: pass --format json|csv|md")
    return OutputFormat.table


def emit(text: str, output: Path | None) -> None:
    """Machine output to a file (atomically) or to stdout, untouched by rich markup."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_text_atomic(output, text)
        wrote(output)
