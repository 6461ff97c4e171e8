"""`weightscope compare A B`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from weightscope.cli.app import app
from weightscope.cli.common import (
    DebugOption,
    OutputFormat,
    OutputOption,
    QuietOption,
    VerboseOption,
    check_paths,
    locate_inputs,
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
from weightscope.cli.pictures import HtmlOption, need_pictures, write_if_asked
from weightscope.cli.progress import layer_progress

SideArg = Annotated[
    Path,
    typer.Argument(
        help="A checkpoint (any format analyze reads) or a saved report (.json).",
        show_default=False,
        metavar="PATH",
        readable=False,
    ),
]


@app.command()
@analysis_options(measures=False)  # the update measures need no second pass
def compare(
    a: SideArg,
    b: SideArg,
    *,
    analysis: AnalysisArgs,
    strip_prefix: Annotated[
        Optional[list[str]],
        typer.Option(
            "--strip-prefix",
            "-p",
            metavar="PREFIX",
            help="Remove this prefix from layer names on both sides before matching (repeatable); common wrappers "
            "('bert.', 'model.', PEFT's 'base_model.model.') line up without it.",
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="How many layers the summary names as moved most.")] = 5,
    format: Annotated[
        Optional[OutputFormat], typer.Option("--format", "-f", help="table (default), json, csv or md.")
    ] = None,
    output: OutputOption = None,
    html: HtmlOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Compare two checkpoints layer by layer: alpha, norms, verdicts and the update ΔW = B − A.

    With two checkpoints the update of each layer is measured (its size relative to A and
    its rank: a fine-tune's update is usually of tiny rank); with a saved report on either
    side, alpha, norm and verdict changes only.

    Examples:

      weightscope compare base/ finetuned/      (a task head's 'bert.' or PEFT's names line up by themselves)

      weightscope compare base/ lora-adapter/          (a PEFT adapter: W against W + s·B·A)

      weightscope compare hf-model/ model-Q4_K_M.gguf  (quantization damage per layer)

      weightscope compare step-1000.json step-2000.json --format md -o diff.md
    """
    with user_errors(debug):
        chosen = resolve_format(format, output)
        need_pictures(html)
        check_paths([output, html], [a, b, analysis.config])
        options = analysis.kwargs()
        thresholds = options["thresholds"]
        locate_inputs((a, b))
        # The comparison and its views import numpy: only now, so that --help, a usage error
        # and a bad option or path do not pay for them.
        from weightscope.commands.compare import compare as run_comparison
        from weightscope.render.compare_views import COMPARE_FORMATS, render_comparison
        from weightscope.render.html_compare import write_compare_html

        with layer_progress() as hook:
            comparison = run_comparison(
                a,
                b,
                strip_prefix=tuple(strip_prefix or ()),
                top=top,
                progress=hook,
                execution=analysis.execution(),
                **options,
            )
        for note in comparison.aligned:
            say(f"aligned names: {note}")
        write_if_asked(html, lambda target: write_compare_html(comparison, target, thresholds))
        show(chosen, output, lambda: render_comparison(comparison, stdout, thresholds), comparison, COMPARE_FORMATS)
