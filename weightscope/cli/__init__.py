"""The `weightscope` command line: a thin Typer layer over the Python API.

Each command module parses options, calls the API, renders, and sets the exit code:
0 ok, 1 a gate rule violated, 2 bad input or usage.
"""

from __future__ import annotations

import sys

try:  # Ctrl-C while numpy, scipy and torch load is an interrupt too, not a traceback
    from weightscope.cli import analyze as _analyze  # registers the commands on `app`
    from weightscope.cli import compare as _compare
    from weightscope.cli import gate as _gate
    from weightscope.cli import plot as _plot
    from weightscope.cli import trend as _trend
    from weightscope.cli.app import app
except KeyboardInterrupt:
    sys.stderr.write("interrupted\n")
    sys.exit(130)

del _analyze, _compare, _gate, _plot, _trend


def main() -> None:
    app()
