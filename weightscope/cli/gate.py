"""`weightscope gate PATH`: exit 0 pass, 1 a rule violated, 2 bad input or config."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from weightscope.cli.app import app
from weightscope.cli.common import (
    DebugOption,
    QuietOption,
    VerboseOption,
    check_paths,
    emit,
    say,
    user_errors,
)
from weightscope.cli.options import AnalysisArgs, analysis_options
from weightscope.commands.gate import gate as run_gate
from weightscope.commands.gate import load_settings
from weightscope.render.gate_views import to_github, to_junit, to_text, verdict_line


class GateFormat(str, Enum):
    text = "text"
    json = "json"
    github = "github"
    junit = "junit"


_SUFFIX_FORMATS = {".json": GateFormat.json, ".xml": GateFormat.junit}

_RENDERERS = {
    GateFormat.text: to_text,
    GateFormat.json: lambda result: json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n",
    GateFormat.github: to_github,
    GateFormat.junit: to_junit,
}


def _limit(flag: str, help: str) -> object:
    return typer.Option(flag, help=help + " Overrides the config file.", rich_help_panel="Rules")


@app.command()
@analysis_options(randomize=True, measures=False)  # the rules and pictures read no model-level measure
def gate(
    path: Annotated[
        Path,
        typer.Argument(help="A checkpoint, or a saved report (.json) to gate without recomputing.", show_default=False, metavar="PATH", readable=False),
    ],
    *,
    analysis: AnalysisArgs,
    baseline: Annotated[
        Optional[Path], typer.Option("--baseline", readable=False, help="Report (or checkpoint) to measure |Δalpha| against.")
    ] = None,
    strip_prefix: Annotated[
        Optional[list[str]], typer.Option("--strip-prefix", metavar="PREFIX", help="Prefix removed from layer names when matching the baseline.")
    ] = None,
    min_alpha: Annotated[Optional[float], _limit("--min-alpha", "Lower end of the healthy alpha range (default 2).")] = None,
    max_alpha: Annotated[Optional[float], _limit("--max-alpha", "Upper end of the healthy alpha range (default 6).")] = None,
    random_alpha: Annotated[
        Optional[float], _limit("--random-alpha", "Alpha above this is a random-like layer, never tolerated (default 8; inf: off).")
    ] = None,
    max_out_of_range_share: Annotated[
        Optional[float], _limit("--max-out-of-range-share", "Share of layers allowed outside the alpha range (default 0.1).")
    ] = None,
    max_out_of_range_count: Annotated[
        Optional[int], _limit("--max-out-of-range-count", "Number of layers allowed outside the alpha range (default: no count limit).")
    ] = None,
    no_traps: Annotated[
        Optional[bool], _limit("--no-traps/--allow-traps", "Fail layers with correlation traps (default: fail).")
    ] = None,
    no_rank_collapse: Annotated[
        Optional[bool], _limit("--no-rank-collapse/--allow-rank-collapse", "Fail layers whose rank collapsed (default: fail).")
    ] = None,
    min_trusted_share: Annotated[
        Optional[float], _limit("--min-trusted-share", "Least share of layers whose power-law fit is trusted (default 0.5; 0: off).")
    ] = None,
    max_failed: Annotated[
        Optional[int], _limit("--max-failed", "Layers allowed to fail analysis, e.g. NaN weights (default 0).")
    ] = None,
    max_delta_alpha: Annotated[
        Optional[float], _limit("--max-delta-alpha", "Largest |Δalpha| of a layer against --baseline.")
    ] = None,
    max_delta_median: Annotated[
        Optional[float], _limit("--max-delta-median", "Largest |Δ median alpha| against --baseline.")
    ] = None,
    format: Annotated[
        Optional[GateFormat],
        typer.Option("--format", "-f", help="text (default), json, github (Actions annotations) or junit (XML)."),
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", readable=False, help="Write to this file (.json/.xml pick the format) instead of stdout.")
    ] = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Fail (exit 1) when a checkpoint breaks the health rules; exit 2 on bad input or config.

    Rules come from [tool.weightscope.gate] in ./pyproject.toml (or --config), and flags
    override them. Every violation is one line: rule, layer, value, limit.

    Examples:

      weightscope gate model.safetensors --format github

      weightscope analyze model/ -o report.json && weightscope gate report.json --baseline base.json --max-delta-alpha 1
    """
    with user_errors(debug):
        overrides = {
            "min-alpha": min_alpha,
            "max-alpha": max_alpha,
            "random-alpha": random_alpha,
            "max-out-of-range-share": max_out_of_range_share,
            "max-out-of-range-count": max_out_of_range_count,
            "no-traps": no_traps,
            "no-rank-collapse": no_rank_collapse,
            "min-trusted-share": min_trusted_share,
            "max-failed": max_failed,
            "max-delta-alpha": max_delta_alpha,
            "max-delta-median": max_delta_median,
            "baseline": str(baseline) if baseline is not None else None,
            "strip-prefix": list(strip_prefix or ()),
        }
        check_paths([output], [path, baseline, analysis.config])
        settings = load_settings(overrides, config=analysis.explicit_config)
        chosen = format or (_SUFFIX_FORMATS.get(output.suffix.lower()) if output is not None else None) or GateFormat.text
        result = run_gate(path, settings, **analysis.kwargs())
        emit(_RENDERERS[chosen](result), output)
        if output is not None:
            say(verdict_line(result))
    if not result.passed:
        raise typer.Exit(1)
