"""`weightscope watch RUN_DIR`: exit 0, 1 when a --fail-on flag was raised, 2 bad input."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from weightscope.checkpoint.runs import run_inputs
from weightscope.cli.app import app
from weightscope.cli.common import (
    DebugOption,
    QuietOption,
    VerboseOption,
    check_paths,
    say,
    stdout,
    user_errors,
)
from weightscope.cli.options import AnalysisArgs, analysis_options
from weightscope.cli.pictures import HtmlOption, need_pictures
from weightscope.commands.monitor import ALERT_FLAGS
from weightscope.commands.watch import (
    DEFAULT_INTERVAL,
    DEFAULT_SETTLE,
    CheckpointEvent,
    RunWatcher,
    follow,
    watch_once,
)
from weightscope.errors import WeightscopeError
from weightscope.io import write_text_atomic
from weightscope.render.formats import json_text

if TYPE_CHECKING:
    from weightscope.commands.trend import Trend


@app.command()
@analysis_options()
def watch(
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="The run's directory: its checkpoint files and directories, as they appear.",
            show_default=False,
            metavar="RUN_DIR",
            readable=False,
        ),
    ],
    *,
    analysis: AnalysisArgs,
    once: Annotated[bool, typer.Option("--once", help="Analyse what is complete now, then exit (cron, CI).")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between two looks at the directory.")
    ] = DEFAULT_INTERVAL,
    settle: Annotated[
        float,
        typer.Option(
            "--settle", min=0.0, help="A checkpoint is read once no file of it changed for this many seconds."
        ),
    ] = DEFAULT_SETTLE,
    fail_on: Annotated[
        Optional[list[str]],
        typer.Option(
            "--fail-on", metavar="FLAG", help=f"Exit 1 when this flag is raised ({', '.join(ALERT_FLAGS)}); repeatable."
        ),
    ] = None,
    step_regex: Annotated[
        Optional[str],
        typer.Option(
            "--step-regex", metavar="REGEX", help="Regex whose first group is the step in a checkpoint's name."
        ),
    ] = None,
    json_out: Annotated[
        Optional[Path],
        typer.Option("--json", readable=False, help="Keep the trend report (JSON) current here, written atomically."),
    ] = None,
    html: HtmlOption = None,
    log: Annotated[
        Optional[Path],
        typer.Option(
            "--log", readable=False, help="Append one JSON line per checkpoint (its figures and alerts) here."
        ),
    ] = None,
    tensorboard: Annotated[
        Optional[Path],
        typer.Option(
            "--tensorboard",
            readable=False,
            help="Write the figures and alerts to a TensorBoard event file in this directory.",
        ),
    ] = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Follow a training run: analyse each checkpoint once it is completely written.

    Prints one line per checkpoint with its alerts, keeps the trend report current, and
    exits 1 as soon as a --fail-on flag is raised.

    Examples:

      weightscope watch runs/my-run/ --json runs/my-run/trend.json --html trend.html

      weightscope watch runs/my-run/ --once --fail-on logit-growth --fail-on rank-collapse
    """
    with user_errors(debug):
        unknown = sorted(set(fail_on or []) - set(ALERT_FLAGS))
        if unknown:
            raise WeightscopeError(f"--fail-on {', '.join(unknown)}: not a flag (one of {', '.join(ALERT_FLAGS)})")
        need_pictures(html)
        check_paths([json_out, html, log], [*run_inputs([run_dir], step_regex), analysis.config])
        options = analysis.kwargs()
        thresholds = options["thresholds"]

        def write_reports(result: Trend) -> None:
            if json_out is not None:
                write_text_atomic(json_out, json_text(result))
            if html is not None:
                from weightscope.render.html_trend import write_trend_html

                write_trend_html(result, html, thresholds)

        from weightscope.render.watch_views import (
            TensorBoardEvents,
            append_log,
            event_line,
        )

        board = TensorBoardEvents(tensorboard) if tensorboard is not None else None
        failed: list[str] = []

        def report(events: list[CheckpointEvent]) -> bool:
            for event in events:
                stdout.print(event_line(event), markup=False, highlight=False, soft_wrap=True)
                failed.extend(a.line() for a in event.alerts if a.flag in (fail_on or []))
            if log is not None:
                append_log(log, events)
            if board is not None:
                board.add(events)
            return bool(failed)

        try:
            with RunWatcher(
                run_dir,
                settle=settle,
                step_regex=step_regex,
                execution=analysis.execution(),
                on_update=write_reports,
                **options,
            ) as watcher:
                if once:
                    report(watch_once(watcher))
                else:
                    say(f"watching {run_dir} (every {interval:g} s; Ctrl-C stops)", style="dim")
                    follow(watcher, report, interval=interval)
        finally:
            if board is not None:
                board.close()
        if failed:
            say(f"failing: {failed[0]}", style="red")
            raise typer.Exit(1)
