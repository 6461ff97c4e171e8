"""`weightscope cache info` and `weightscope cache clear`: see and empty the cache."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from weightscope.cli.app import app
from weightscope.cli.common import DebugOption, emit, stderr, user_errors
from weightscope.cli.options import CacheDirOption
from weightscope.errors import WeightscopeError

cache_app = typer.Typer(
    name="cache",
    help="See or empty the cache of computed spectra and per-checkpoint reports.",
    no_args_is_help=True,
)
app.add_typer(cache_app)


def _store(cache_dir: Path | None):  # returns a CacheStore (imported lazily)
    from weightscope.execution.cache import CacheStore, default_cache_dir

    directory = cache_dir or default_cache_dir()
    if directory.exists() and not directory.is_dir():
        raise WeightscopeError(f"cache directory {directory} is not a directory")
    return CacheStore(directory)


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def _when(stamp: float | None) -> str:
    return "—" if stamp is None else datetime.fromtimestamp(stamp).astimezone().isoformat(timespec="seconds")


@cache_app.command()
def info(
    cache_dir: CacheDirOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object instead of lines.")] = False,
    debug: DebugOption = False,
) -> None:
    """Where the cache is, its entries, size, cap, and its least and most recently used entry."""
    with user_errors(debug):
        about = _store(cache_dir).info()
        if json_output:
            emit(json.dumps(dataclasses.asdict(about), indent=2) + "\n", None)
            return
        lines = [
            ("location", about.directory),
            (
                "entries",
                f"{sum(about.entries.values())} ({', '.join(f'{n} {kind}' for kind, n in about.entries.items())})",
            ),
            ("size", f"{_size(about.size)} of {_size(about.max_bytes)} (least recently used entries go first)"),
            ("oldest use", _when(about.oldest)),
            ("newest use", _when(about.newest)),
        ]
        emit("".join(f"{label:<11} {value}\n" for label, value in lines), None)


@cache_app.command()
def clear(cache_dir: CacheDirOption = None, debug: DebugOption = False) -> None:
    """Remove every cache entry (files that are not entries are left alone)."""
    with user_errors(debug):
        store = _store(cache_dir)
        removed, freed = store.clear()
        stderr.print(f"removed {removed} entries ({_size(freed)}) from {store.directory}", soft_wrap=True, markup=False)
