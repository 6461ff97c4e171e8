"""How layers are listed in every table: by depth, with names short enough for one line.

Alphabetical order puts ``layers.10`` before ``layers.2`` and ``lm_head`` before the
blocks; a reader follows a network from input to output, so rows go embeddings, blocks
0…N in numeric order (storage order inside a block: q, k, v, o, mlp), then the rest
(head, pooler, unknown names).

Full names of a 12-block BERT are 42 characters ("encoder.layer.11.attention.output.dense
.weight") and take a third of a 120-column terminal; the block stem and the ".weight" all
rows share say nothing. `short_names` drops them (the block is its own column) and says
what it dropped, so a name stays on one line and can still be found in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from weightscope.checkpoint.layers import block_index
from weightscope.report import LayerResult, Report


def depth_key(kind: str, block: int | None) -> tuple[int, int]:
    """Sort key by depth: embeddings, then blocks in numeric order, then everything else."""
    if block is not None:
        return (1, block)
    return (0, 0) if kind == "embedding" else (2, 0)


def depth_order(kinds: Sequence[str], blocks: Sequence[int | None]) -> list[int]:
    """Indices in depth order (stable: storage order within a block)."""
    return sorted(range(len(kinds)), key=lambda i: depth_key(kinds[i], blocks[i]))


def ordered_layers(report: Report) -> list[LayerResult]:
    """The report's layers by depth, not storage order."""
    order = depth_order([layer.kind for layer in report.layers], [layer.block for layer in report.layers])
    return [report.layers[i] for i in order]


@dataclass(frozen=True)
class ShortNames:
    """Display names (same order as given) and a note of what was left out of them."""

    names: list[str]
    dropped: str


def _common_prefix(split: Sequence[list[str]]) -> list[str]:
    prefix: list[str] = []
    for parts in zip(*split):
        if len(set(parts)) != 1:
            break
        prefix.append(parts[0])
    # never the whole of a name: something must remain to show
    shortest = min(len(p) for p in split)
    return prefix[: shortest - 1] if len(prefix) >= shortest else prefix


def _block_stem(parts: list[str], block: int) -> int | None:
    """Index of the block number among the dotted parts of a name."""
    for index, part in enumerate(parts):
        if index and part == str(block):
            return index
    return None


def short_names(names: Sequence[str]) -> ShortNames:
    """Names without what every row shares: the last part (".weight") when all end in it,
    the dotted prefix common to all names, and the block stem ("encoder.layer.N.") when all
    block layers share it (the table shows N in its own column)."""
    if not names:
        return ShortNames([], "")
    split = [name.split(".") for name in names]
    dropped = []
    suffix = ""
    if all(len(p) > 1 for p in split) and len({p[-1] for p in split}) == 1:
        suffix = split[0][-1]
        split = [p[:-1] for p in split]
    prefix = _common_prefix(split) if len(split) > 1 else []
    split = [p[len(prefix) :] for p in split]
    stems: set[str] = set()
    cut: list[int | None] = []
    for parts, name in zip(split, names):
        block = block_index(name)
        at = _block_stem(parts, block) if block is not None else None
        cut.append(at if at is not None and at + 1 < len(parts) else None)
        if cut[-1] is not None:
            stems.add(".".join(parts[: cut[-1]]))
    if len(stems) == 1:
        split = [p[at + 1 :] if at is not None else p for p, at in zip(split, cut)]
        dropped.append(f"'{'.'.join([*prefix, stems.pop()])}.N.' (N = blk)")
    elif prefix:
        dropped.append(f"'{'.'.join(prefix)}.'")
    if suffix:
        dropped.append(f"'.{suffix}'")
    note = "names without " + " and ".join(dropped) if dropped else ""
    return ShortNames([".".join(p) for p in split], note)
