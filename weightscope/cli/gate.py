"""`weightscope gate PATH`: exit 0 pass, 1 a rule violated, 2 bad input or config.

The rule flags are generated from `GateRules`' fields (name, type, help in the field's
metadata), so a rule is declared once and the config key, the flag and its help cannot
drift apart.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

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
from weightscope.commands.gate import RULE_HINTS, GateRules, load_settings
from weightscope.commands.gate import gate as run_gate
from weightscope.errors import one_line
from weightscope.render.gate_views import GATE_FORMATS, verdict_line


class GateFormat(str, Enum):
    text = "text"
    json = "json"
    github = "github"
    junit = "junit"


_SUFFIX_FORMATS = {".json": GateFormat.json, ".xml": GateFormat.junit}



def _rule_parameter(rule: dataclasses.Field[Any]) -> inspect.Parameter:
    """One flag for one rule: ``--min-alpha``, or ``--fail-on-traps/--allow-traps`` for a switch."""
    args = typing.get_args(RULE_HINTS[rule.name])
    base = next((a for a in args if a is not type(None)), RULE_HINTS[rule.name])
    default = "off" if rule.default is None else str(rule.default).lower()
    flag = rule.metadata.get("flag") or "--" + rule.name.replace("_", "-")
    help = f"{rule.metadata['help']} (default: {default}; overrides the config file)"
    option = typer.Option(flag, help=help, rich_help_panel="Rules", show_default=False)
    return inspect.Parameter(rule.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[base], option])


def _with_rule_options(command: Callable[..., None]) -> Callable[..., None]:
    """Append one flag per `GateRules` field to ``command``; it receives them as ``rules``
    (kebab-case key → value or None when not given)."""
    signature = inspect.signature(command, eval_str=True)
    names = [rule.name for rule in dataclasses.fields(GateRules)]
    own = [p for p in signature.parameters.values() if p.name != "rules"]
    parameters = sorted(own + [_rule_parameter(rule) for rule in dataclasses.fields(GateRules)],
                        key=lambda p: p.name == "debug")

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        rules = {name.replace("_", "-"): kwargs.pop(name) for name in names}
        command(**kwargs, rules=rules)

    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]  # Typer reads the flags from it
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__
    return wrapper


@app.command()
@analysis_options(randomize=True, measures=False)  # the rules and pictures read no model-level measure
@_with_rule_options
def gate(
    path: Annotated[
        Path,
        typer.Argument(help="A checkpoint, or a saved report (.json) to gate without recomputing.", show_default=False, metavar="PATH", readable=False),
    ],
    *,
    analysis: AnalysisArgs,
    rules: dict[str, Any],
    baseline: Annotated[
        Optional[Path], typer.Option("--baseline", readable=False, help="Report (or checkpoint) to measure |Δalpha| against.")
    ] = None,
    strip_prefix: Annotated[
        Optional[list[str]], typer.Option("--strip-prefix", metavar="PREFIX", help="Prefix removed from layer names when matching the baseline.")
    ] = None,
    ignore: Annotated[
        Optional[list[str]],
        typer.Option("--ignore", metavar="REGEX", help="Layers the rules skip (repeatable; adds to the config's exclude). "
                     "Unlike --exclude, the layer is still analysed and reported."),
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

    Rules come from \\[tool.weightscope.gate] in ./pyproject.toml (or --config), and flags
    override them. Every violation is one line: rule, layer, value, limit. A rule that
    could not be checked fails under --strict (the default).

    Examples:

      weightscope gate model.safetensors --format github

      weightscope analyze model/ --randomize -o report.json && weightscope gate report.json --baseline base.json --max-delta-alpha 1
    """
    with user_errors(debug):
        overrides = {
            **rules,
            "baseline": str(baseline) if baseline is not None else None,
            "strip-prefix": list(strip_prefix or ()),
            "exclude": list(ignore or ()),
        }
        check_paths([output], [path, baseline, analysis.config])
        settings = load_settings(overrides, config=analysis.explicit_config)
        chosen = format or (_SUFFIX_FORMATS.get(output.suffix.lower()) if output is not None else None) or GateFormat.text
        result = run_gate(path, settings, execution=analysis.execution(), **analysis.kwargs())
        emit(GATE_FORMATS[chosen.value](result), output)
        if output is not None:
            say(one_line(verdict_line(result)))
    if not result.passed:
        raise typer.Exit(1)
