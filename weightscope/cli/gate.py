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
    locate_inputs,
    say,
    user_errors,
)
from weightscope.cli.options import AnalysisArgs, analysis_options
from weightscope.commands.gate.rules import RULE_HINTS, GateRules, load_settings
from weightscope.errors import WeightscopeError, one_line


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
    return inspect.Parameter(
        rule.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[base], option]
    )


def _with_rule_options(command: Callable[..., None]) -> Callable[..., None]:
    """Append one flag per `GateRules` field to ``command``; it receives them as ``rules``
    (kebab-case key → value or None when not given)."""
    signature = inspect.signature(command, eval_str=True)
    names = [rule.name for rule in dataclasses.fields(GateRules)]
    own = [p for p in signature.parameters.values() if p.name != "rules"]
    parameters = sorted(
        own + [_rule_parameter(rule) for rule in dataclasses.fields(GateRules)], key=lambda p: p.name == "debug"
    )

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
        typer.Argument(
            help="A checkpoint, or a saved report (.json) to gate without recomputing.",
            show_default=False,
            metavar="PATH",
            readable=False,
        ),
    ],
    *,
    analysis: AnalysisArgs,
    rules: dict[str, Any],
    baseline: Annotated[
        Optional[Path],
        typer.Option(
            "--baseline",
            readable=False,
            help="A saved report or checkpoint (e.g. the model before "
            "fine-tuning): fail only on findings new or worse than its own, list the ones it has.",
        ),
    ] = None,
    write_baseline: Annotated[
        Optional[Path],
        typer.Option(
            "--write-baseline",
            metavar="FILE",
            readable=False,
            help="Accept today's findings once: save this run's report to FILE (a baseline for --baseline) and pass.",
        ),
    ] = None,
    adapter: Annotated[
        Optional[Path],
        typer.Option(
            "--adapter",
            metavar="ADAPTER",
            readable=False,
            help="PATH is the base model: judge this "
            "LoRA adapter on it (its updates, and each merged layer against the base layer).",
        ),
    ] = None,
    strip_prefix: Annotated[
        Optional[list[str]],
        typer.Option(
            "--strip-prefix", metavar="PREFIX", help="Prefix removed from layer names when matching the baseline."
        ),
    ] = None,
    ignore: Annotated[
        Optional[list[str]],
        typer.Option(
            "--ignore",
            metavar="REGEX",
            help="Layers the rules skip (repeatable; adds to the config's exclude). "
            "Unlike --exclude, the layer is still analysed and reported.",
        ),
    ] = None,
    format: Annotated[
        Optional[GateFormat],
        typer.Option("--format", "-f", help="text (default), json, github (Actions annotations) or junit (XML)."),
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--output", "-o", readable=False, help="Write to this file (.json/.xml pick the format) instead of stdout."
        ),
    ] = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Fail (exit 1) when a checkpoint breaks the health rules; exit 2 on bad input or config.

    Rules come from \\[tool.weightscope.gate] in ./pyproject.toml (or --config), and flags
    override them. Every violation is one line: layer, rule, finding, limit and fix. A
    rule that could not be checked fails under --strict (the default). With --baseline
    only what is new or worse than the baseline's findings fails; the rest is listed as
    accepted. A LoRA adapter (PATH an adapter directory, or --adapter) is judged by what
    an update can break: its rank, its size against the adapter's median, dominance.

    Examples:

      weightscope gate model/ --write-baseline baseline.json      (once: accept today's findings)

      weightscope gate model/ --baseline baseline.json --format github

      weightscope gate base-model/ --adapter lora-adapter/
    """
    with user_errors(debug):
        overrides = {
            **rules,
            "baseline": str(baseline) if baseline is not None else None,
            "strip-prefix": list(strip_prefix or ()),
            "exclude": list(ignore or ()),
        }
        if write_baseline is not None and adapter is not None:
            raise WeightscopeError(
                "--write-baseline saves a model's report; with --adapter, write one with "
                "weightscope gate ADAPTER_DIR --write-baseline FILE"
            )
        check_paths([output, write_baseline], [path, baseline, adapter, analysis.config])
        settings = load_settings(overrides, config=analysis.explicit_config)
        locate_inputs((path, baseline, adapter))
        # Here, not at the top: `gate --help`, a bad option or path need no numpy (0.2 s).
        from weightscope.commands.gate.command import accept
        from weightscope.commands.gate.command import gate as run_gate
        from weightscope.render.gate_views import GATE_FORMATS, verdict_line
        from weightscope.render.text import REPORT_FORMATS

        chosen = (
            format or (_SUFFIX_FORMATS.get(output.suffix.lower()) if output is not None else None) or GateFormat.text
        )
        if write_baseline is not None:
            report, result = accept(
                path, settings, str(write_baseline), execution=analysis.execution(), **analysis.kwargs()
            )
            emit(REPORT_FORMATS["json"](report), write_baseline)
        else:
            result = run_gate(path, settings, adapter=adapter, execution=analysis.execution(), **analysis.kwargs())
        emit(GATE_FORMATS[chosen.value](result), output)
        if output is not None:
            say(one_line(verdict_line(result)))
    if not result.passed:
        raise typer.Exit(1)
