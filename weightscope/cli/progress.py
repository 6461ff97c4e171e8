"""A progress bar on stderr, shown only on a terminal so pipes and CI logs stay clean."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from weightscope.cli.common import is_quiet, say, stderr
from weightscope.errors import one_line

if TYPE_CHECKING:  # numpy and the pipeline: not at the CLI's start-up
    from weightscope.analysis.pipeline import ProgressHook
    from weightscope.checkpoint.layers import LayerSpec


@contextmanager
def layer_progress() -> Iterator[ProgressHook | None]:
    """Yield a pipeline hook that drives a bytes-and-ETA bar (None when stderr is no tty, or with --quiet)."""
    if not stderr.is_terminal or is_quiet():
        yield None
        return
    with ExitStack() as stack:
        bar: Progress | None = None
        task = TaskID(0)

        def hook(done: int, layers: list[LayerSpec]) -> None:
            nonlocal bar, task
            if bar is None:
                bar = stack.enter_context(
                    Progress(
                        TextColumn("analysing"),
                        BarColumn(),
                        DownloadColumn(),
                        TimeRemainingColumn(),
                        TextColumn("{task.fields[layer]}", style="dim", markup=False),
                        console=stderr,
                        transient=True,
                    )
                )
                task = bar.add_task("analysing", total=sum(s.info.nbytes for s in layers), layer="")
            if done:
                finished = layers[done - 1]
                bar.update(task, advance=finished.info.nbytes, layer=one_line(finished.name))

        yield hook


@contextmanager
def step_progress(label: str, total: int) -> Iterator[Callable[[str], None]]:
    """Yield ``tick(name)``, called once per step done: a bar on a terminal; elsewhere one
    line saying what is being done (a CI log shows why it waits); nothing with --quiet."""
    if is_quiet() or total == 0:
        yield lambda name: None
        return
    if not stderr.is_terminal:
        say(f"{label}: {total} …")
        yield lambda name: None
        return
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[item]}", style="dim", markup=False),
        console=stderr,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total, item="")
        yield lambda name: bar.update(task, advance=1, item=one_line(name))
