"""A progress bar on stderr, shown only on a terminal so pipes and CI logs stay clean."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from weightscope.cli.common import stderr
from weightscope.layers import LayerSpec
from weightscope.pipeline import ProgressHook


@contextmanager
def layer_progress() -> Iterator[ProgressHook | None]:
    """Yield a pipeline hook that drives a bytes-and-ETA bar (None when stderr is no tty)."""
    if not stderr.is_terminal:
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
                        TextColumn("{task.fields[layer]}", style="dim"),
                        console=stderr,
                        transient=True,
                    )
                )
                task = bar.add_task("analysing", total=sum(s.info.nbytes for s in layers), layer="")
            if done:
                finished = layers[done - 1]
                bar.update(task, advance=finished.info.nbytes, layer=finished.name)

        yield hook
