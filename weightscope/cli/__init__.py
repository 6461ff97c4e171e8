"""The `weightscope` command line: a thin Typer layer over the Python API.

Each command module parses options, calls the API, renders, and sets the exit code:
0 ok, 1 a gate rule violated, 2 bad input or usage.
"""

from __future__ import annotations

from weightscope.cli.app import app  # command modules register on it when first used


def main() -> None:
    app()
