"""Layer names that line up across the wrappers a fine-tune puts around its base model.

The same weight is saved under different names by the most common fine-tuning layouts:
a base ``BertModel`` writes ``encoder.layer.0.attention.self.query.weight``, the
``BertForSequenceClassification`` fine-tuned from it writes
``bert.encoder.layer.0.attention.self.query.weight`` (task heads wrap the base under
``bert.``, ``roberta.``, ``model.``, ``transformer.``…), and a PEFT model holds
``base_model.model.<name>`` with ``.base_layer`` inside each adapted module. Matching
names literally pairs nothing, and a comparison or a baseline gate that pairs nothing
says nothing. `align_names` pairs layers without options:

1. user prefixes (``--strip-prefix``) are removed;
2. with and without PEFT's wrappers (`weightscope.checkpoint.lora.canonical_name`), it
   tries the names as they are and with one leading name path (one or two dotted
   components, e.g. ``bert.``) removed from one side, the candidates being the leading
   paths at least half of that side's names share; it keeps the trial that pairs the
   most layers, and among equals the one that changes the names least. Only one side's
   prefix is ever removed: stripping ``encoder.`` from one side and ``decoder.`` from
   the other would pair different weights.

`Alignment.check` refuses an alignment that leaves more than half of either side
unpaired, naming examples and the ``--strip-prefix`` hint: a comparison of unrelated
layer sets is a wrong answer, not a small one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from weightscope.checkpoint.lora import canonical_name
from weightscope.errors import WeightscopeError

#: Turns a (prefix-stripped) layer name into the key it is matched by.
NameKey = Callable[[str], str]

#: Least share of a side's names that must start with a leading path for it to be tried
#: as that side's wrapper prefix (a task head adds a few names of its own, e.g. a
#: classifier, so not all names need carry it).
_PREFIX_SHARE = 0.5

#: Leading dotted components a wrapper prefix may have (``bert.``, ``model.decoder.``).
_PREFIX_DEPTH = 2

#: Unmatched names shown as examples when an alignment is refused.
_EXAMPLES = 3


def strip_name(name: str, prefixes: Iterable[str]) -> str:
    """``name`` without the longest of ``prefixes`` it starts with."""
    for prefix in sorted(prefixes, key=len, reverse=True):
        if prefix and name.startswith(prefix):
            return name[len(prefix) :]
    return name


@dataclass(frozen=True)
class Alignment:
    """Layer names paired across two models: (matched name, name in A, name in B), in
    A's order, the unpaired names of each side, and what was removed to pair them."""

    pairs: list[tuple[str, str, str]]
    only_a: list[str]
    only_b: list[str]
    #: the leading path removed from A's or B's names by the automatic search ("" none)
    prefix_a: str = ""
    prefix_b: str = ""
    #: whether PEFT's ``base_model.model.``/``.base_layer`` wrappers were removed
    peft: bool = False
    #: prefixes the user asked to remove
    strip_prefix: tuple[str, ...] = field(default_factory=tuple)

    @property
    def notes(self) -> list[str]:
        """What was removed from the names to pair them, one sentence each."""
        notes = []
        if self.peft:
            notes.append("removed PEFT's 'base_model.model.' and '.base_layer' from layer names")
        for side, prefix in (("A", self.prefix_a), ("B", self.prefix_b)):
            if prefix:
                notes.append(f"removed the prefix {prefix!r} from {side}'s layer names")
        return notes

    def check(self, *, side_a: bool = True, side_b: bool = True) -> None:
        """Raise when half or more of a checked side's layers found no partner.

        ``side_a`` is off when A's unpaired layers are expected (an adapter touches a few
        of its base's modules).
        """
        matched = len(self.pairs)
        sides = [("A", self.only_a, side_a), ("B", self.only_b, side_b)]
        for side, unmatched, checked in sides:
            total = matched + len(unmatched)
            if checked and total and matched * 2 < total:
                raise WeightscopeError(_mismatch_message(matched, self.only_a, self.only_b, side, total))


def _mismatch_message(matched: int, only_a: list[str], only_b: list[str], side: str, total: int) -> str:
    def examples(names: list[str]) -> str:
        return ", ".join(names[:_EXAMPLES]) + (", …" if len(names) > _EXAMPLES else "") if names else "none"

    hint = _hint(only_a, only_b)
    return (
        f"layer names do not line up: only {matched} of {side}'s {total} layers matched a layer of the other side. "
        f"Unmatched in A: {examples(only_a)}; unmatched in B: {examples(only_b)}. "
        f"If the names differ by a prefix, remove it with --strip-prefix PREFIX (strip_prefix= in Python){hint}"
    )


def _hint(only_a: list[str], only_b: list[str]) -> str:
    """An example prefix: the leading component of the first unmatched name of the side
    whose names are longer."""
    names = only_b if only_b and (not only_a or len(only_b[0]) > len(only_a[0])) else only_a
    if not names or "." not in names[0]:
        return ""
    return f", e.g. --strip-prefix {names[0].split('.', 1)[0] + '.'!r}"


def _keyed(names: list[str], prefixes: tuple[str, ...], side: str, key_of: NameKey) -> dict[str, str]:
    keyed: dict[str, str] = {}
    for name in names:
        key = key_of(strip_name(name, prefixes))
        if key in keyed:
            raise WeightscopeError(
                f"after stripping prefixes, {side} has two layers named {key!r} ({keyed[key]!r} and {name!r})"
            )
        keyed[key] = name
    return keyed


def _peft_key(key_of: NameKey) -> NameKey:
    return lambda name: key_of(canonical_name(name))


def _pair(keyed_a: dict[str, str], keyed_b: dict[str, str]) -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
    pairs = [(key, name, keyed_b[key]) for key, name in keyed_a.items() if key in keyed_b]
    only_a = [name for key, name in keyed_a.items() if key not in keyed_b]
    only_b = [name for key, name in keyed_b.items() if key not in keyed_a]
    return pairs, only_a, only_b


def _leading_paths(keys: Iterable[str]) -> list[str]:
    """Leading dotted paths (with their dot) that at least `_PREFIX_SHARE` of ``keys`` share."""
    keys = list(keys)
    counts: Counter[str] = Counter()
    for key in keys:
        parts = key.split(".")
        for depth in range(1, min(_PREFIX_DEPTH, len(parts) - 1) + 1):
            counts[".".join(parts[:depth]) + "."] += 1
    return sorted(p for p, n in counts.items() if n >= _PREFIX_SHARE * len(keys))


def _without(keyed: dict[str, str], prefix: str) -> dict[str, str] | None:
    """``keyed`` with ``prefix`` removed from its keys; None when that makes two keys one."""
    out: dict[str, str] = {}
    for key, name in keyed.items():
        stripped = key.removeprefix(prefix)
        if stripped in out:
            return None
        out[stripped] = name
    return out


def align_names(
    names_a: list[str],
    names_b: list[str],
    strip_prefix: Iterable[str] = (),
    key_a: NameKey = str,
    key_b: NameKey = str,
) -> Alignment:
    """Pair layers by name (see the module doc); ``key_a``/``key_b`` map each side's
    names to a common key first (e.g. Hugging Face names to GGUF's)."""
    prefixes = tuple(strip_prefix)
    best: tuple[tuple[int, int], Alignment] | None = None
    wrappers = [False, True] if any(canonical_name(name) != name for name in [*names_a, *names_b]) else [False]
    for peft in wrappers:
        try:
            keyed_a = _keyed(names_a, prefixes, "A", _peft_key(key_a) if peft else key_a)
            keyed_b = _keyed(names_b, prefixes, "B", _peft_key(key_b) if peft else key_b)
        except WeightscopeError:
            if peft:
                continue  # a PEFT original and its replacement are two layers: keep the names
            raise
        trials = [("", "")] + [(p, "") for p in _leading_paths(keyed_a)] + [("", p) for p in _leading_paths(keyed_b)]
        for prefix_a, prefix_b in trials:
            side_a, side_b = _without(keyed_a, prefix_a), _without(keyed_b, prefix_b)
            if side_a is None or side_b is None:
                continue
            alignment = Alignment(*_pair(side_a, side_b), prefix_a, prefix_b, peft, prefixes)
            # the most pairs; among equals, the fewest changes to the names
            score = (len(alignment.pairs), -(peft + bool(prefix_a or prefix_b)))
            if best is None or score > best[0]:
                best = (score, alignment)
            if not alignment.only_a and not alignment.only_b:
                break
    assert best is not None
    return best[1]
