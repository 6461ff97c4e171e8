"""The `weightscope` command line: a thin Typer layer over the Python API.

Each command module parses options, calls the API, renders, and sets the exit code:
0 ok, 1 a gate rule violated, 2 bad input or usage.
"""

from __future__ import annotations

import sys

try:  # Ctrl-C while the CLI loads is an interrupt too, not a traceback
    from weightscope.cli.app import (
        app,  # command modules register on it when first used
    )
except KeyboardInterrupt:
    sys.stderr.write("interrupted\n")
    sys.exit(130)


def main() -> None:
    app()
