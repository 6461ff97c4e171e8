"""`weightscope trend RUN…`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from weightscope.cli.app import app
from weightscope.cli.common import (
    DebugOption,
    OutputFormat,
    OutputOption,
    emit,
    resolve_format,
    stderr,
    stdout,
    user_errors,
)
from weightscope.cli.options import AnalysisArgs, Executor, ExecutorOption, RayAddressOption, analysis_options
from weightscope.cli.pictures import HtmlOption, PlotOption, need_pictures, write_if_asked
from weightscope.commands.trend import RunEntry
from weightscope.commands.trend import trend as run_trend
from weightscope.errors import WeightscopeError
from weightscope.execution.plan import Execution
from weightscope.render.html_trend import write_trend_html
from weightscope.render.plot_trend import trend_figure
from weightscope.render.plots import save_png
from weightscope.render.trend_views import render_trend, to_csv


def _announce(entry: RunEntry, origin: str, position: int, total: int) -> None:
    stderr.print(f"[{position}/{total}] {entry.path}: {origin}", style="dim", soft_wrap=True)


@app.command()
@analysis_options()
def trend(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="A run directory (its checkpoint files and directories), or checkpoints / saved reports listed.",
            show_default=False,
        ),
    ],
    *,
    analysis: AnalysisArgs,
    step_regex: Annotated[
        Optional[str],
        typer.Option(
            "--step-regex",
            help="Regex whose first group is the step in a checkpoint's name (default: step-N, step_N, "
            "checkpoint-N, global_stepN, ckptN, iter_N, epochN).",
        ),
    ] = None,
    cache: Annotated[
        Optional[Path],
        typer.Option("--cache", help="Directory of per-checkpoint reports reused across runs (created if missing)."),
    ] = None,
    jump_k: Annotated[
        float, typer.Option("--jump-k", help="A jump is a change (per log-step) off the layer's median change by > k × their MAD.")
    ] = 5.0,
    min_swing: Annotated[
        float, typer.Option("--min-swing", min=0.0, help="Smallest alpha change that counts as a jump, fall or rise.")
    ] = 0.3,
    format: Annotated[Optional[OutputFormat], typer.Option("--format", "-f", help="table (default), json or csv.")] = None,
    output: OutputOption = None,
    plot: PlotOption = None,
    html: HtmlOption = None,
    executor: ExecutorOption = Executor.local,
    ray_address: RayAddressOption = None,
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
        if chosen is OutputFormat.md:
            raise WeightscopeError("trend has no markdown view: use --format table, json or csv")
        need_pictures(plot, html)
        result = run_trend(
            paths,
            step_regex=step_regex,
            cache=cache,
            jump_k=jump_k,
            min_swing=min_swing,
            on_checkpoint=_announce,
            execution=Execution(executor=executor.value, ray_address=ray_address),
            **analysis.kwargs(),
        )
        write_if_asked(plot, lambda target: save_png(trend_figure(result), target))
        write_if_asked(html, lambda target: write_trend_html(result, target))
        if chosen is OutputFormat.table:
            render_trend(result, stdout)
            return
        text = json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n" if chosen is OutputFormat.json else to_csv(result)
        emit(text, output)
