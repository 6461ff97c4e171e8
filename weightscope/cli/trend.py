"""`weightscope trend RUN…`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from weightscope.checkpoint.runs import RunEntry, find_run, run_inputs
from weightscope.cli.app import app
from weightscope.cli.common import (
    DebugOption,
    OutputFormat,
    OutputOption,
    QuietOption,
    VerboseOption,
    check_paths,
    resolve_format,
    say,
    show,
    stdout,
    user_errors,
)
from weightscope.cli.options import (
    AnalysisArgs,
    analysis_options,
)
from weightscope.cli.pictures import (
    HtmlOption,
    PlotOption,
    need_pictures,
    write_if_asked,
)
from weightscope.errors import one_line


def _announce(entry: RunEntry, origin: str, position: int, total: int) -> None:
    say(one_line(f"[{position}/{total}] {entry.path}: {origin}"), style="dim")


@app.command()
@analysis_options()
def trend(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="A run directory (its checkpoint files and directories), or checkpoints / saved reports listed.",
            show_default=False,
            metavar="PATH...",
            readable=False,
        ),
    ],
    *,
    analysis: AnalysisArgs,
    step_regex: Annotated[
        Optional[str],
        typer.Option(
            "--step-regex",
            metavar="REGEX",
            help="Regex whose first group is the step in a checkpoint's name (default: step-N, step_N, "
            "checkpoint-N, global_stepN, ckptN, iter_N, epochN).",
        ),
    ] = None,
    jump_k: Annotated[
        float,
        typer.Option(
            "--jump-k", help="A jump is a change (per log-step) off the layer's median change by > k × their MAD."
        ),
    ] = 5.0,
    min_swing: Annotated[
        float, typer.Option("--min-swing", min=0.0, help="Smallest alpha change that counts as a jump, fall or rise.")
    ] = 0.3,
    format: Annotated[
        Optional[OutputFormat], typer.Option("--format", "-f", help="table (default), json, csv or md.")
    ] = None,
    output: OutputOption = None,
    plot: PlotOption = None,
    html: HtmlOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Alpha over a training run: order checkpoints by step, follow every layer, flag patterns.

    Flags layers whose alpha falls then rises, jumps between consecutive checkpoints, or
    never leaves the random-like range.

    Examples:

      weightscope trend runs/my-run/ --cache runs/my-run/.weightscope

      weightscope trend ckpt/step_*.safetensors --format json -o trend.json

      weightscope trend runs/my-run/ --plot trend.png --html trend.html
    """
    with user_errors(debug):
        chosen = resolve_format(format, output)
        need_pictures(plot, html)
        check_paths([output, plot, html], [*run_inputs(paths, step_regex), analysis.config])
        options = analysis.kwargs()
        thresholds = options["thresholds"]
        execution = analysis.execution()
        entries = find_run(paths, step_regex)
        # The analysis and the views import numpy: only now, so that --help, a usage error,
        # a bad option or a missing path do not pay for them.
        from weightscope.commands.trend import trend_of_run
        from weightscope.render.html_trend import write_trend_html
        from weightscope.render.plot_trend import trend_figure
        from weightscope.render.plots import save_png
        from weightscope.render.trend_views import TREND_FORMATS, render_trend

        result = trend_of_run(
            entries, jump_k=jump_k, min_swing=min_swing, on_checkpoint=_announce, execution=execution, **options
        )
        write_if_asked(plot, lambda target: save_png(trend_figure(result, thresholds), target))
        write_if_asked(html, lambda target: write_trend_html(result, target, thresholds))
        show(chosen, output, lambda: render_trend(result, stdout, thresholds), result, TREND_FORMATS)
