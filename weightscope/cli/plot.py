"""`weightscope plot`: PNG pictures of layer spectra and of the whole checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from weightscope.cli.analyze import PathArg
from weightscope.cli.app import app
from weightscope.cli.common import (
    DebugOption,
    QuietOption,
    VerboseOption,
    check_paths,
    say,
    user_errors,
    wrote,
)
from weightscope.cli.options import AnalysisArgs, analysis_options
from weightscope.cli.progress import layer_progress
from weightscope.errors import WeightscopeError, one_line
from weightscope.execution.request import Execution
from weightscope.options import AnalysisOptions

if TYPE_CHECKING:  # numpy, the pipeline and matplotlib: imported when something is drawn
    from weightscope.analysis.layer import LayerAnalysis


def _output_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightscopeError(f"cannot create output directory {out}: {exc.strerror or exc}") from None
    return out


def draw_layer_spectra(
    path: Path, patterns: list[str], out: Path, options: AnalysisOptions, execution: Execution
) -> list[Path]:
    """One ESD picture per layer matching ``patterns`` (``options.include``); no other
    tensor is read."""
    from weightscope.analysis.pipeline import analyze_with
    from weightscope.render.plot_esd import layer_figure
    from weightscope.render.plots import png_file_name, save_png

    items: list[LayerAnalysis] = []
    with layer_progress() as hook:
        analyze_with(path, options, hook, items.append, execution)
    if not items:
        raise WeightscopeError(
            f"no weight matrix matches --layer {' '.join(map(repr, patterns))} (list them: weightscope inspect {path})"
        )
    written = []
    for item in items:
        if item.evals is None:
            say(one_line(f"no spectrum for {item.result.name}: {item.result.reason}"), style="yellow")
            continue
        written.append(save_png(layer_figure(item), out / png_file_name(item.result.name, ".esd.png")))
    return written


@app.command()
@analysis_options(randomize=True, measures=False)  # the rules and pictures read no model-level measure
def plot(
    path: PathArg,
    *,
    analysis: AnalysisArgs,
    layer: Annotated[
        Optional[list[str]],
        typer.Option(
            "--layer",
            "-l",
            metavar="REGEX",
            help="Draw the spectrum of every layer whose name matches this regex (repeatable). No other tensor is read.",
        ),
    ] = None,
    summary: Annotated[
        bool, typer.Option("--summary", help="Draw alpha of every layer by depth, and the alpha histogram.")
    ] = False,
    out_dir: Annotated[
        Path, typer.Option("--out-dir", "-d", readable=False, help="Directory for the PNG files (created if missing).")
    ] = Path("."),
    out: Annotated[Optional[Path], typer.Option("--out", hidden=True, help="Deprecated spelling of --out-dir.")] = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Draw PNG pictures: per-layer ESD (log-log with the power-law fit, and the MP bulk) and the model summary.

    Needs the plot extra: pip install 'weightscope-esd\\[plot]'.

    Examples:

      weightscope plot model.safetensors --layer 'layers\\.3\\..*q_proj' --out-dir plots/

      weightscope plot model.safetensors --summary
    """
    with user_errors(debug):
        if not layer and not summary:
            raise WeightscopeError("nothing to draw: pass --layer REGEX (a spectrum per layer) and/or --summary")
        # The pipeline and matplotlib import numpy: inside the command, so that its --help does not.
        from weightscope.analysis.pipeline import analyze as run_analysis
        from weightscope.render.plot_summary import summary_figure
        from weightscope.render.plots import require_matplotlib, save_png

        require_matplotlib()
        if out is not None:
            say("--out is deprecated: use --out-dir (-d); -o names a file in every other command", style="yellow")
        directory = _output_dir(out if out is not None else out_dir)
        check_paths([directory / "summary.png" if summary else None], [path, analysis.config])
        written = []
        if summary:
            with layer_progress() as hook:
                report = run_analysis(path, progress=hook, execution=analysis.execution(), **analysis.kwargs())
            written.append(save_png(summary_figure(report), directory / "summary.png"))
        if layer:
            options = AnalysisOptions.from_kwargs(**{**analysis.kwargs(), "include": tuple(layer)})
            written += draw_layer_spectra(path, layer, directory, options, analysis.execution())
        for file in written:
            wrote(file)
