"""`weightscope analyze` and `weightscope inspect`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from weightscope.cli.app import app
from weightscope.cli.common import DebugOption, OutputFormat, OutputOption, emit, resolve_format, stdout, user_errors
from weightscope.cli.options import (
    AnalysisArgs,
    ExcludeOption,
    Executor,
    ExecutorOption,
    IncludeOption,
    MinEvalsOption,
    RayAddressOption,
    analysis_options,
)
from weightscope.cli.pictures import HtmlOption, need_pictures, write_if_asked
from weightscope.cli.progress import layer_progress
from weightscope.execution.plan import Execution
from weightscope.pipeline import LayerAnalysis
from weightscope.pipeline import analyze as run_analysis
from weightscope.pipeline import inspect as run_inspection
from weightscope.render.html import spectra_worth_drawing, write_html_report
from weightscope.render.table import render_inspection, render_report
from weightscope.render.text import to_csv, to_json, to_markdown

PathArg = Annotated[
    Path,
    typer.Argument(
        help="A .safetensors file, a (sharded) Hugging Face model directory, or a torch .bin/.pt/.pth/.ckpt.",
        show_default=False,
    ),
]
@app.command()
@analysis_options()
def analyze(
    path: PathArg,
    *,
    analysis: AnalysisArgs,
    format: Annotated[
        Optional[OutputFormat],
        typer.Option("--format", "-f", help="table (default, for people), or json / csv / md for machines."),
    ] = None,
    output: OutputOption = None,
    html: HtmlOption = None,
    device: Annotated[
        str,
        typer.Option(
            "--device",
            help="auto (CUDA when torch sees a GPU and the checkpoint is big enough to repay its start), cpu, or cuda.",
        ),
    ] = "auto",
    workers: Annotated[
        int,
        typer.Option("--workers", min=0, help="Layers analysed at once (threads); 0 = one per core."),
    ] = 0,
    cache_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--cache-dir",
            help="Where computed spectra are cached (default: $XDG_CACHE_HOME/weightscope, ~/.cache/weightscope).",
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the spectrum cache.")
    ] = False,
    executor: ExecutorOption = Executor.local,
    ray_address: RayAddressOption = None,
    debug: DebugOption = False,
) -> None:
    """Fit the eigenvalue spectrum of every weight matrix and report alpha per layer.

    Examples:

      weightscope analyze model.safetensors

      weightscope analyze hf-model-dir/ --include 'layers\\.1[0-9]\\.' --format json -o report.json
    """
    with user_errors(debug):
        chosen = resolve_format(format, output)
        need_pictures(html)
        execution = Execution(
            device=device,
            workers=workers,
            cache=not no_cache,
            cache_dir=str(cache_dir) if cache_dir else None,
            executor=executor.value,
            ray_address=ray_address,
        )
        with layer_progress() as hook:
            spectra: list[LayerAnalysis] = []
            report = run_analysis(
                path,
                progress=hook,
                on_layer=spectra.append if html is not None else None,
                execution=execution,
                **analysis.kwargs(),
            )
        write_if_asked(html, lambda target: write_html_report(report, target, spectra_worth_drawing(spectra)))
        if chosen is OutputFormat.table:
            render_report(report, stdout)
            return
        text = {OutputFormat.json: to_json, OutputFormat.csv: to_csv, OutputFormat.md: to_markdown}[chosen](report)
        emit(text, output)


@app.command()
def inspect(
    path: PathArg,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    min_evals: MinEvalsOption = 50,
    debug: DebugOption = False,
) -> None:
    """List tensors, shapes and dtypes, and which would be analysed (headers only, no math)."""
    with user_errors(debug):
        inspection = run_inspection(
            path, include=tuple(include or ()), exclude=tuple(exclude or ()), min_evals=min_evals
        )
        render_inspection(inspection, stdout)
