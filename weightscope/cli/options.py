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
from weightscope.execution.request import EXECUTORS, Execution
from weightscope.options import AnalysisOptions

#: The API's defaults, which every flag's default is read from (never restated here).
DEFAULT_OPTIONS = AnalysisOptions()
DEFAULT_EXECUTION = Execution()

IncludeOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--include",
        "-i",
        metavar="REGEX",
        help="Only tensors whose name matches this regex (repeatable). No other tensor is read.",
    ),
]
ExcludeOption = Annotated[
    Optional[list[str]],
    typer.Option("--exclude", "-x", metavar="REGEX", help="Skip tensors whose name matches this regex (repeatable)."),
]
CacheDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--cache-dir",
        "--cache",
        readable=False,
        help="The cache directory, for computed spectra and trend's reports (default: $WEIGHTSCOPE_CACHE_DIR, "
        "$XDG_CACHE_HOME/weightscope, ~/.cache/weightscope; see `weightscope cache info`).",
    ),
]
MinEvalsOption = Annotated[
    int, typer.Option("--min-evals", min=1, help="Skip matrices whose smaller side is below this (eigenvalue count).")
]

# How to run (never what is computed): every command that analyses checkpoints takes these.
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        metavar="auto|cpu|cuda",
        help="auto (CUDA when torch sees a GPU and the checkpoint is big enough to repay its start), cpu, or cuda.",
    ),
]
WorkersOption = Annotated[
    int, typer.Option("--workers", min=0, help="Layers analysed at once (threads); 0 = one per core.")
]
NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the spectrum cache.")]


RevisionOption = Annotated[
    Optional[str],
    typer.Option(
        "--revision", metavar="REF", help="For a hub model id or cache directory: branch, tag or commit (default main)."
    ),
]
DownloadOption = Annotated[
    bool,
    typer.Option(
        "--download",
        help="For a hub model id: fetch weights and configs if they are not cached (default: offline only).",
    ),
]


#: --executor's choices, as Typer wants them (an enum), from the one list of executors.
Executor = Enum("Executor", {name: name for name in EXECUTORS}, type=str)  # type: ignore[misc]  # built from EXECUTORS, not spelled twice


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
    ("min_evals", MinEvalsOption, DEFAULT_OPTIONS.min_evals),
    (
        "min_tail",
        Annotated[
            int,
            typer.Option(
                "--min-tail",
                min=2,
                help="Fewest eigenvalues the fit may put in a tail (a trusted fit needs trust-min-tail, 20).",
            ),
        ],
        DEFAULT_OPTIONS.min_tail,
    ),
    (
        "eig_dtype",
        Annotated[
            str,
            typer.Option(
                "--eig-dtype",
                metavar="auto|float32|float64",
                help="Eigensolver precision: auto (default: float32, and float64 for a layer where float32 could "
                "change its rank verdict), float32, or float64 (about 2× slower).",
            ),
        ],
        DEFAULT_OPTIONS.eig_dtype,
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
        DEFAULT_OPTIONS.randomize,
    ),
    (
        "seed",
        Annotated[int, typer.Option("--seed", help="Seed of the randomisation (results are deterministic).")],
        DEFAULT_OPTIONS.seed,
    ),
    (
        "vectors",
        Annotated[
            bool, typer.Option("--vectors", help="Also measure eigenvector localisation (a full eigh per layer).")
        ],
        DEFAULT_OPTIONS.vectors,
    ),
    (
        "split",
        Annotated[
            bool,
            typer.Option(
                "--split/--no-split",
                help="Cut fused tensors (qkv_proj, Wqkv, c_attn, query_key_value, gate_up_proj) into q, k, v / gate, up "
                "and analyse each part (default); --no-split analyses them whole.",
            ),
        ],
        DEFAULT_OPTIONS.split,
    ),
    (
        "measures",
        Annotated[
            bool,
            typer.Option(
                "--measures/--no-measures",
                help="Model-level measures: attention-logit bound per head, embedding anisotropy and intrinsic dimension.",
            ),
        ],
        DEFAULT_OPTIONS.measures,
    ),
    (
        "heads",
        Annotated[
            Optional[int],
            typer.Option(
                "--heads",
                min=1,
                help="Attention (query) heads per block, for the logit bound and for splitting fused qkv (default: config.json or GGUF metadata).",
            ),
        ],
        DEFAULT_OPTIONS.heads,
    ),
    (
        "kv_heads",
        Annotated[
            Optional[int],
            typer.Option(
                "--kv-heads",
                min=1,
                help="Key/value heads per block under grouped-query attention (default: config.json, GGUF metadata, else --heads).",
            ),
        ],
        DEFAULT_OPTIONS.kv_heads,
    ),
    (
        "config",
        Annotated[
            Optional[Path],
            typer.Option(
                "--config",
                readable=False,
                help="A TOML file whose \\[tool.weightscope] sets thresholds (default: ./pyproject.toml if present).",
            ),
        ],
        None,
    ),
    (
        "set_",
        Annotated[
            Optional[list[str]],
            typer.Option(
                "--set",
                metavar="KEY=VALUE",
                help="Override one threshold, e.g. --set alpha_high=7 (repeatable; see the docs: Diagnostics).",
            ),
        ],
        None,
    ),
]
#: How to run (never what is computed): every analysing command takes these too.
_EXECUTION: list[tuple[str, Any, Any]] = [
    ("device", DeviceOption, DEFAULT_EXECUTION.device),
    ("workers", WorkersOption, DEFAULT_EXECUTION.workers),
    ("cache_dir", CacheDirOption, DEFAULT_EXECUTION.cache_dir),
    ("no_cache", NoCacheOption, not DEFAULT_EXECUTION.cache),
    ("executor", ExecutorOption, Executor[DEFAULT_EXECUTION.executor]),
    ("ray_address", RayAddressOption, DEFAULT_EXECUTION.ray_address),
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

    def execution(self) -> Execution:
        """How to run, as the options ask (`Execution`)."""
        v = self.values
        return Execution(
            device=v["device"],
            workers=v["workers"],
            cache=not v["no_cache"],
            cache_dir=str(v["cache_dir"]) if v["cache_dir"] else None,
            executor=v["executor"].value,
            ray_address=v["ray_address"],
        )

    def kwargs(self) -> dict[str, Any]:
        """Options for `weightscope.analyze` and friends; bad thresholds or options raise
        `WeightscopeError` here, before a command imports the pipeline."""
        values = {k: v for k, v in self.values.items() if k not in _EXECUTION_NAMES}
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
        AnalysisOptions.from_kwargs(**values)  # the API's checks (e.g. --eig-dtype), before numpy is imported
        return values


_EXECUTION_NAMES = frozenset(name for name, _, _ in _EXECUTION)


def analysis_options(**defaults: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the shared analysis and execution options (``defaults`` overrides
    some defaults, e.g. ``randomize=True`` for the gate); it receives them as ``analysis``
    (`AnalysisArgs.kwargs()` for the API's options, `AnalysisArgs.execution()` for how)."""
    return functools.partial(_with_analysis_options, defaults=defaults)


def _with_analysis_options(command: Callable[..., None], defaults: dict[str, Any]) -> Callable[..., None]:
    signature = inspect.signature(command, eval_str=True)
    keyword = inspect.Parameter.KEYWORD_ONLY
    own = [p.replace(kind=keyword) for p in signature.parameters.values() if p.name != "analysis"]
    shared = [
        inspect.Parameter(name, keyword, default=defaults.get(name, default), annotation=annotation)
        for name, annotation, default in _SHARED + _EXECUTION
    ]
    parameters = sorted(own + shared, key=lambda p: p.name == "debug")  # --debug last in --help

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        values = {name: kwargs.pop(name) for name, _, _ in _SHARED + _EXECUTION}
        command(**kwargs, analysis=AnalysisArgs(values))

    # Typer reads the signature and the type hints: both must show the shared options.
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]  # Typer reads the flags from it
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__
    return wrapper
