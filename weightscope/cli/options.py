"""The analysis options every analysing command takes, declared once.

`analyze`, `compare`, `trend`, `gate` and `plot` all run the same pipeline, so they take
the same options. Typer reads a command's options from its signature; the decorator
`analysis_options` appends the shared ones to that signature and hands the command one
`AnalysisArgs` instead, so a new option is added here and nowhere else.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from weightscope.config import load_thresholds
from weightscope.errors import WeightscopeError
from weightscope.execution.plan import EXECUTORS

IncludeOption = Annotated[
    Optional[list[str]],
    typer.Option("--include", "-i", metavar="REGEX", help="Only tensors whose name matches this regex (repeatable). No other tensor is read."),
]
ExcludeOption = Annotated[
    Optional[list[str]],
    typer.Option("--exclude", "-x", metavar="REGEX", help="Skip tensors whose name matches this regex (repeatable)."),
]
MinEvalsOption = Annotated[
    int, typer.Option("--min-evals", min=1, help="Skip matrices whose smaller side is below this (eigenvalue count).")
]


#: --executor's choices, as Typer wants them (an enum), from the one list of executors.
Executor = Enum("Executor", {name: name for name in EXECUTORS}, type=str)  # type: ignore[misc]


ExecutorOption = Annotated[
    Executor,
    typer.Option(
        "--executor",
        help="local (threads of this process) or ray (one task per layer on a Ray cluster; the checkpoints must "
        "be on storage every node sees). Same report either way.",
    ),
]
RayAddressOption = Annotated[
    Optional[str],
    typer.Option(
        "--ray-address",
        metavar="HOST:PORT",
        help="The Ray cluster for --executor ray (default: $RAY_ADDRESS, else the cluster started here with "
        "`ray start`, else a new local Ray instance).",
    ),
]

_SHARED: list[tuple[str, Any, Any]] = [
    ("include", IncludeOption, None),
    ("exclude", ExcludeOption, None),
    ("min_evals", MinEvalsOption, 50),
    ("min_tail", Annotated[int, typer.Option("--min-tail", min=2, help="Fewest eigenvalues a power-law tail may have.")], 10),
    (
        "eig_dtype",
        Annotated[
            str,
            typer.Option(
                "--eig-dtype",
                help="Eigensolver precision: auto (default: float32, and float64 for a layer where float32 could "
                "change its rank verdict), float32, or float64 (about 2× slower).",
            ),
        ],
        "auto",
    ),
    (
        "randomize",
        Annotated[
            bool,
            typer.Option(
                "--randomize/--no-randomize",
                help="Also shuffle each layer and re-solve: correlation traps (with the weights that cause them) "
                "and the distance from random. About 2× the time.",
            ),
        ],
        False,
    ),
    ("seed", Annotated[int, typer.Option("--seed", help="Seed of the randomisation (results are deterministic).")], 0),
    (
        "vectors",
        Annotated[bool, typer.Option("--vectors", help="Also measure eigenvector localisation (a full eigh per layer).")],
        False,
    ),
    (
        "config",
        Annotated[
            Optional[Path],
            typer.Option(
                "--config", help="A TOML file whose \\[tool.weightscope] sets thresholds (default: ./pyproject.toml if present)."
            ),
        ],
        None,
    ),
    (
        "set_",
        Annotated[
            Optional[list[str]],
            typer.Option("--set", metavar="KEY=VALUE", help="Override one threshold, e.g. --set alpha_high=7 (repeatable; see the README)."),
        ],
        None,
    ),
]


@dataclass(frozen=True)
class AnalysisArgs:
    """The shared options as parsed; `kwargs()` turns them into the API's options."""

    values: dict[str, Any]

    @property
    def explicit_config(self) -> Path | None:
        """The --config file as given (None when the option was not used)."""
        return self.values["config"]

    @property
    def config(self) -> Path | None:
        """The TOML file of team policy: --config, else ./pyproject.toml if there is one."""
        if self.explicit_config is not None:
            return self.explicit_config
        return Path("pyproject.toml") if Path("pyproject.toml").is_file() else None

    def kwargs(self) -> dict[str, Any]:
        """Options for `weightscope.analyze` and friends; bad thresholds raise WeightscopeError."""
        values = dict(self.values)
        del values["config"]
        assignments = values.pop("set_") or []
        overrides = {}
        for assignment in assignments:
            key, sep, value = assignment.partition("=")
            if not sep:
                raise WeightscopeError(f"--set needs KEY=VALUE, got {assignment!r}")
            overrides[key.strip()] = value
        values["include"] = tuple(values["include"] or ())
        values["exclude"] = tuple(values["exclude"] or ())
        values["thresholds"] = load_thresholds(self.config, overrides)
        return values


def analysis_options(**defaults: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the shared analysis options (``defaults`` overrides some defaults,
    e.g. ``randomize=True`` for the gate); it receives them as ``analysis``."""
    return functools.partial(_with_analysis_options, defaults=defaults)


def _with_analysis_options(command: Callable[..., None], defaults: dict[str, Any]) -> Callable[..., None]:
    signature = inspect.signature(command, eval_str=True)
    keyword = inspect.Parameter.KEYWORD_ONLY
    own = [p.replace(kind=keyword) for p in signature.parameters.values() if p.name != "analysis"]
    shared = [
        inspect.Parameter(name, keyword, default=defaults.get(name, default), annotation=annotation)
        for name, annotation, default in _SHARED
    ]
    parameters = sorted(own + shared, key=lambda p: p.name == "debug")  # --debug last in --help

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        values = {name: kwargs.pop(name) for name, _, _ in _SHARED}
        command(**kwargs, analysis=AnalysisArgs(values))

    # Typer reads the signature and the type hints: both must show the shared options.
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__
    return wrapper
