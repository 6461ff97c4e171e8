"""What counts as a run: which files and directories are checkpoints of one training run,
and in what order (the training step in their names).

Built on the readers' own list of formats (`weightscope.checkpoint.files.CHECKPOINT_SUFFIXES`):
every file `analyze` reads is a step `trend` recognises, safetensors, torch pickles, GGUF
and npz alike.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightscope.checkpoint.files import CHECKPOINT_SUFFIXES, format_family
from weightscope.errors import WeightscopeError
from weightscope.patterns import Pattern, compile_pattern

#: The step in names like step-200, step_2000.safetensors, checkpoint-1000, global_step50,
#: ckpt3, iter_400, epoch3 (the number right after the word).
DEFAULT_STEP_PATTERN = r"(?:global[_-]?step|step|checkpoint|ckpt|iteration|iter|epoch)[-_=]?(\d+)"

#: How sharded checkpoints name their pieces: model-00001-of-00004.safetensors.
_SHARD_NAME = re.compile(r"\d+-of-\d+")


@dataclass(frozen=True)
class RunEntry:
    """One checkpoint (or saved report) of a run and the step its name says."""

    path: Path
    step: int | None


def is_checkpoint_dir(path: Path) -> bool:
    """A directory that holds weight files (or a shard index) directly."""
    return any(
        child.is_file() and (child.suffix in CHECKPOINT_SUFFIXES or child.name.endswith(".index.json"))
        for child in path.iterdir()
    )


def is_run_dir(path: Path, pattern: Pattern) -> bool:
    """A directory of checkpoints rather than one checkpoint.

    It is a run when it holds checkpoint directories (``checkpoint-1000/``), or several
    weight files that each name a step (``step_2000.safetensors``) and no shard index, or
    several weight files of one format not named as shards (then ordered by name).
    Weight files are those of every format a reader opens (`CHECKPOINT_SUFFIXES`).
    A sharded model (``model-00001-of-00004.safetensors`` + index) is one checkpoint.
    """
    children = [c for c in path.iterdir() if not c.name.startswith(".")]
    if any(child.is_dir() and is_checkpoint_dir(child) for child in children):
        return True
    if any(child.name.endswith(".index.json") for child in children):
        return False
    weights = [child for child in children if child.is_file() and child.suffix in CHECKPOINT_SUFFIXES]
    if sum(parse_step(Path(child.name), pattern) is not None for child in weights) >= 2:
        return True
    # Several files of one format, none named as a shard (model-00001-of-00004): separate
    # checkpoints without step numbers (ordered by name), not one model stored in pieces.
    # One safetensors file beside one torch file is one model saved in two formats.
    if any(_SHARD_NAME.search(child.name) for child in weights):
        return False
    families = Counter(format_family(child) for child in weights)
    return max(families.values(), default=0) >= 2


def run_members(directory: Path) -> list[Path]:
    return [
        child
        for child in sorted(directory.iterdir())
        if not child.name.startswith(".")
        and ((child.is_file() and child.suffix in CHECKPOINT_SUFFIXES) or (child.is_dir() and is_checkpoint_dir(child)))
    ]


def expand_run(paths: Iterable[str | os.PathLike[str]], pattern: Pattern) -> list[Path]:
    """Checkpoint paths: a run directory becomes its checkpoints, anything else stays."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise WeightscopeError(f"{path}: no such file or directory")
        if path.is_dir() and is_run_dir(path, pattern):
            found.extend(run_members(path))
        elif path.is_dir() and not is_checkpoint_dir(path):
            raise WeightscopeError(f"{path}: no checkpoints in this directory (files or checkpoint directories)")
        else:
            found.append(path)
    return found


def find_run(paths: Iterable[str | os.PathLike[str]], step_regex: str | None = None) -> list[RunEntry]:
    """A run's checkpoints and saved reports in training order: run directories expanded
    (`expand_run`), ordered by the step in their names (`order_run`, ``step_regex``).
    Without numpy: `weightscope trend` refuses a missing path or a clash of steps before
    it imports the analysis."""
    pattern = compile_step_pattern(step_regex)
    return order_run(expand_run(paths, pattern), pattern)


def run_inputs(paths: Iterable[str | os.PathLike[str]], step_regex: str | None = None) -> list[Path]:
    """Every checkpoint or report a trend over ``paths`` would read (the paths themselves
    when they cannot be expanded: `trend` reports that problem when it runs)."""
    try:
        return [*map(Path, paths), *expand_run(paths, compile_step_pattern(step_regex))]
    except (WeightscopeError, OSError):
        return list(map(Path, paths))


def compile_step_pattern(step_regex: str | None) -> Pattern:
    """The step pattern (``--step-regex``, else the default), on RE2 (`weightscope.patterns`):
    it runs on every file name of a run directory."""
    return compile_pattern(step_regex or DEFAULT_STEP_PATTERN, "--step-regex", ignore_case=True)


def parse_step(path: Path, pattern: Pattern) -> int | None:
    """The step in a checkpoint's name, else in its directory's (step-200/model.safetensors)."""
    for part in reversed(path.parts[-2:]):
        matches = list(pattern.finditer(part))
        if not matches:
            continue
        last = matches[-1]
        text = last.group(1) if pattern.groups else last.group(0)
        try:
            return int(text)
        except (TypeError, ValueError):
            raise WeightscopeError(
                f"step pattern {pattern.pattern!r} matched {text!r} in {part!r}, which is not a whole number"
            ) from None
    return None


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders step-9 before step-10."""
    return tuple(int(piece) if piece.isdigit() else piece.lower() for piece in re.split(r"(\d+)", text))


def order_run(paths: Iterable[Path], pattern: Pattern) -> list[RunEntry]:
    """Checkpoints in training order: by parsed step; those without a step after, by name."""
    entries = [RunEntry(path, parse_step(path, pattern)) for path in paths]
    seen: dict[int, Path] = {}
    for entry in entries:
        if entry.step is None:
            continue
        if entry.step in seen:
            raise WeightscopeError(
                f"step {entry.step} is parsed from both {seen[entry.step]} and {entry.path}; pass --step-regex"
            )
        seen[entry.step] = entry.path
    return sorted(entries, key=lambda e: (e.step is None, e.step or 0, natural_key(str(e.path))))
