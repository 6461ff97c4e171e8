"""`weightscope analyze` and `weightscope inspect`."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from weightscope.cli.app import app
from weightscope.cli.common import (
    DebugOption,
    OutputFormat,
    OutputOption,
    QuietOption,
    VerboseOption,
    check_paths,
    detail,
    emit,
    resolve_format,
    show,
    stdout,
    user_errors,
)
from weightscope.cli.options import (
    AnalysisArgs,
    DownloadOption,
    ExcludeOption,
    IncludeOption,
    MinEvalsOption,
    RevisionOption,
    analysis_options,
)
from weightscope.cli.pictures import HtmlOption, write_if_asked
from weightscope.cli.progress import layer_progress, step_progress

if TYPE_CHECKING:
    from weightscope.analysis.layer import LayerAnalysis

PathArg = Annotated[
    Path,
    typer.Argument(
        help="A .safetensors, .gguf or .npz file, a (sharded) Hugging Face model directory, a LoRA adapter directory, "
        "a hub cache directory (models--org--name) or model id (org/name), or a torch .bin/.pt/.pth/.ckpt.",
        show_default=False,
        metavar="PATH",
        readable=False,  # an unreadable path is the reader's `error:` line, not click's usage box
    ),
]


class InspectFormat(str, Enum):
    table = "table"
    json = "json"


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
    revision: RevisionOption = None,
    download: DownloadOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Fit the eigenvalue spectrum of every weight matrix and report alpha per layer.

    Examples:

      weightscope analyze model.safetensors

      weightscope analyze Qwen/Qwen2.5-0.5B --revision main     (the hub cache, offline)

      weightscope analyze lora-adapter/     (ΔW = s·B·A per adapted module)

      weightscope analyze hf-model-dir/ --include 'layers\\.1[0-9]\\.' --format json -o report.json
    """
    from weightscope.checkpoint import locate
    from weightscope.checkpoint.hub import resolve_if_asked

    with user_errors(debug):
        chosen = resolve_format(format, output)
        source = resolve_if_asked(path, revision, download)
        check_paths([output, html], [source, analysis.config])
        execution = analysis.execution()
        options = analysis.kwargs()
        locate(source)
        # The pipeline and its views import numpy: only now, so that --help, a usage error
        # and a bad option or path do not pay for them.
        from weightscope.analysis.pipeline import analyze as run_analysis
        from weightscope.render.table import fit_statistics_lines, render_report
        from weightscope.render.text import REPORT_FORMATS

        detail("thresholds: " + ", ".join(f"{k}={v}" for k, v in vars(options["thresholds"]).items()))
        started = time.perf_counter()
        with layer_progress() as hook:
            spectra: list[LayerAnalysis] = []
            report = run_analysis(
                source,
                progress=hook,
                on_layer=spectra.append if html is not None else None,
                execution=execution,
                **options,
            )
        detail(f"analysed {len(report.layers)} layers in {time.perf_counter() - started:.2f} s")
        for line in fit_statistics_lines(report):
            detail(line)
        if html is not None:
            from weightscope.render.html import spectra_worth_drawing, write_html_report  # 0.1 s of imports

            started = time.perf_counter()
            drawn = spectra_worth_drawing(spectra)
            with step_progress("drawing spectra", len(drawn)) as tick:
                write_if_asked(html, lambda target: write_html_report(report, target, drawn, progress=tick))
            detail(f"HTML report with {len(drawn)} spectra in {time.perf_counter() - started:.2f} s")
        show(chosen, output, lambda: render_report(report, stdout), report, REPORT_FORMATS)


@app.command()
def inspect(
    path: PathArg,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    min_evals: MinEvalsOption = 50,
    format: Annotated[
        InspectFormat, typer.Option("--format", "-f", help="table (for people) or json (for scripts).")
    ] = InspectFormat.table,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="Write the JSON to this file (atomically) instead of stdout."),
    ] = None,
    revision: RevisionOption = None,
    download: DownloadOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """List tensors, shapes and dtypes, and which would be analysed (headers only, no math)."""
    from weightscope.checkpoint import locate
    from weightscope.checkpoint.hub import resolve_if_asked

    with user_errors(debug):
        source = resolve_if_asked(path, revision, download)
        locate(source)
        from weightscope.analysis.pipeline import inspect as run_inspection  # numpy: after the path's check
        from weightscope.render.table import render_inspection
        from weightscope.render.text import inspection_json

        inspection = run_inspection(
            source,
            include=tuple(include or ()),
            exclude=tuple(exclude or ()),
            min_evals=min_evals,
        )
        if format is InspectFormat.table and output is None:
            render_inspection(inspection, stdout)
            return
        emit(inspection_json(inspection), output)
