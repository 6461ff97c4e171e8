"""What every command shares: error handling, output writing, how much is said on stderr.

stdout carries results only; stderr carries the chatter (progress, "wrote PATH"), which
``-q/--quiet`` silences and ``-v/--verbose`` extends (thresholds used, timings). Errors
are always one line on stderr. Paths and names are printed without markup and without
wrapping: a CI log must show "wrote PATH" whole, on one line, whatever the width.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from weightscope.errors import WeightscopeError, one_line
from weightscope.io import STDOUT, check_outputs, write_atomic
from weightscope.render.formats import Formats

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
    typer.Option(
        "--quiet",
        "-q",
        help="Print only results and errors: no progress, no 'wrote PATH'.",
        callback=_set_quiet,
        is_eager=True,
        expose_value=False,
    ),
]
VerboseOption = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Also print the thresholds used and timings on stderr.",
        callback=_set_verbose,
        expose_value=False,
    ),
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
    say(f"wrote {one_line(str(path))}")


OutputOption = Annotated[
    Optional[Path],
    typer.Option(
        "--output",
        "-o",
        readable=False,
        help="Write to this file (atomically) instead of stdout; .json/.csv/.md pick the format.",
    ),
]


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    md = "md"


_SUFFIX_FORMATS = {".json": OutputFormat.json, ".csv": OutputFormat.csv, ".md": OutputFormat.md}


def shown(text: str) -> str:
    """A path, name or message made safe to print in rich markup: one line, no markup."""
    return escape(one_line(text))


@contextmanager
def user_errors(debug: bool) -> Iterator[None]:
    """Turn failures into one line on stderr and exit code 2.

    ``--debug`` adds the traceback (and library warnings) but keeps the exit code, so a
    CI script behaves the same with and without it. Without it, numpy's and torch's
    warnings are silenced: stderr carries weightscope's own lines only. A reader that
    closes the pipe early (``| head``) ends the run quietly, like any Unix filter.
    """
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore")
            yield
    except (typer.Exit, typer.Abort):
        raise
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        raise typer.Exit(141) from None  # 128 + SIGPIPE, what a filter killed by the pipe returns
    except WeightscopeError as exc:
        if debug:
            traceback.print_exc()
        stderr.print(f"[bold red]error:[/] {shown(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except OSError as exc:  # a path the OS refuses (permissions, I/O): the environment, not a bug
        if debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        stderr.print(f"[bold red]error:[/] {shown(where + (exc.strerror or str(exc)))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        stderr.print("[bold red]interrupted[/]")
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - a bug, not bad input: still one line unless --debug
        if debug:
            traceback.print_exc()
        stderr.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {shown(str(exc))} (rerun with --debug for the traceback)",
            soft_wrap=True,
        )
        raise typer.Exit(2) from None


def check_paths(outputs: Iterable[Path | None], inputs: Iterable[Path | None]) -> None:
    """Before any work: refuse outputs that would overwrite an input or cannot be written.

    ``inputs`` are the paths given (checkpoints, reports, baselines, configs); every file
    each one would read (shards, the index) counts.
    """
    from weightscope.checkpoint import (
        input_files,  # numpy and the readers: not at the CLI's start-up
    )

    files = [file for path in inputs if path is not None for file in input_files(path)]
    check_outputs(outputs, files)


def locate_inputs(inputs: Iterable[Path | None]) -> None:
    """Before the command imports numpy: refuse a given checkpoint or saved report that is
    missing, a directory without a checkpoint or a file of no known format
    (`weightscope.checkpoint.locate`; a saved report is JSON, which passes)."""
    from weightscope.checkpoint import locate

    for path in inputs:
        if path is not None:
            locate(path)


def resolve_format(fmt: OutputFormat | None, output: Path | None) -> OutputFormat:
    """The explicit --format, else the output file's suffix, else the table."""
    if fmt is not None:
        return fmt
    if output is not None:
        if output.suffix.lower() in _SUFFIX_FORMATS:
            return _SUFFIX_FORMATS[output.suffix.lower()]
        raise WeightscopeError(f"cannot tell the format of {output}: pass --format json|csv|md")
    return OutputFormat.table


def show(chosen: OutputFormat, output: Path | None, table: Callable[[], None], result: Any, formats: Formats) -> None:
    """A result in the chosen format: the rich ``table`` on the terminal, or its text in
    its type's registry (``formats``, `weightscope.render.formats`) to ``output`` (or stdout)."""
    if chosen is OutputFormat.table:
        table()
    else:
        emit(formats[chosen.value](result), output)


def emit(text: str, output: Path | None) -> None:
    """Machine output to a file (atomically) or to stdout, untouched by rich markup."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomic(output, text)
        if str(output) != STDOUT:
            wrote(output)
