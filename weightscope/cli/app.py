"""The Typer application object and its root options; every command module registers on it.

Command modules are imported when their command is used (or listed by ``--help``), not
when the CLI starts: `weightscope analyze` never imports what compare, trend, gate, plot
and their views need (measured: about 15 % of the start-up's imports), and
``import weightscope.cli`` costs only Typer and rich.
"""

from __future__ import annotations

import importlib
import logging
from typing import Annotated, Any, Optional

import typer
import typer.core
import typer.main
from rich.markup import escape

from weightscope._version import __version__
from weightscope.cli.common import reset_verbosity, stderr


class _WarningLine(logging.Handler):
    """The library's warnings (e.g. an unusable cache, `weightscope.execution.cache`) as
    one ``warning: …`` line each on stderr; they never change the exit code."""

    def emit(self, record: logging.LogRecord) -> None:
        stderr.print(f"[yellow]warning:[/] {escape(record.getMessage())}", soft_wrap=True)


_library_log = logging.getLogger("weightscope")
if not any(isinstance(handler, _WarningLine) for handler in _library_log.handlers):
    _library_log.addHandler(_WarningLine(logging.WARNING))

#: Each command, the module of `weightscope.cli` that registers it, and the line the root
#: ``--help`` lists it with (the first line of the command's own help; a test keeps the
#: two equal). In --help order.
COMMANDS = {
    "analyze": ("analyze", "Fit the eigenvalue spectrum of every weight matrix and report alpha per layer."),
    "inspect": ("analyze", "List tensors, shapes and dtypes, and which would be analysed (headers only, no math)."),
    "compare": ("compare", "Compare two checkpoints layer by layer: alpha, norms, verdicts and the update ΔW = B − A."),
    "trend": ("trend", "Alpha over a training run: order checkpoints by step, follow every layer, flag patterns."),
    "watch": ("watch", "Follow a training run: analyse each checkpoint once it is completely written."),
    "gate": ("gate", "Fail (exit 1) when a checkpoint breaks the health rules; exit 2 on bad input or config."),
    "plot": (
        "plot",
        "Draw PNG pictures: per-layer ESD (log-log with the power-law fit, and the MP bulk) and the model summary.",
    ),
    "cache": ("cache", "See or empty the cache of computed spectra and per-checkpoint reports."),
}


class _LazyCommands(typer.core.TyperGroup):
    """The root group: a command's module is imported the first time it is run (or its
    own --help is asked for). The root --help lists the commands from `COMMANDS` without
    importing any: their modules bring numpy and the pipeline (0.3 s of imports), which
    listing the commands never needs."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, summary = COMMANDS[cmd_name]
            if self._listing:
                return typer.core.TyperCommand(cmd_name, help=summary)
            importlib.import_module(f"weightscope.cli.{module}")
            built = typer.main.get_command(app).commands  # type: ignore[attr-defined]  # a multi-command app builds a Group
            self.commands.update({name: command for name, command in built.items() if name not in self.commands})
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="weightscope",
    cls=_LazyCommands,
    help=(
        "Weight-spectrum diagnostics for transformer checkpoints.\n\n"
        "Reads a checkpoint (safetensors file, sharded Hugging Face directory, or torch "
        ".bin/.pt), computes the eigenvalue spectrum of every weight matrix and fits a "
        "power-law tail. The tail exponent alpha reads: 2–6 well trained, > 6 under-trained "
        "or random-like, < 2 possibly over-fit.\n\n"
        "Start with:  weightscope analyze path/to/model.safetensors"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"weightscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Weight-spectrum diagnostics for transformer checkpoints."""
    reset_verbosity()  # before the command's own -q/-v are parsed
