"""Regular expressions that come from users and files, on a linear-time engine.

Every pattern weightscope did not write itself — ``--include``/``--exclude``, plot's
``--layer``, gate's ``--ignore`` and its config's ``exclude``, trend's ``--step-regex``, a
LoRA adapter's ``rank_pattern``/``alpha_pattern`` keys — runs on RE2 (Google's
``google-re2`` bindings, ``import re2``). Python's `re` backtracks: ``(.*\\.)*lm_head$``
against a 40-component dotted name, or ``(a+)+b`` against 34 letters, does not finish in
hours, and a CI gate runs unattended. RE2 matches in time linear in the text, whatever the
pattern, and bounds a compiled pattern's memory (``max_mem``, 8 MB by default).

The price: RE2 has no backreferences (``\\1``) and no lookaround (``(?=…)``, ``(?<!…)``);
such a pattern is refused with one line naming where it came from, never run on `re`.
The wheel adds 1.5 MB and its import ~10 ms (measured on a loaded machine), paid only by
runs that compile a pattern.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, Protocol

from weightscope.errors import WeightscopeError


class Match(Protocol):
    def group(self, index: int = 0) -> str: ...


class Pattern(Protocol):
    """What weightscope uses of a compiled pattern (`re.Pattern` has the same methods)."""

    pattern: str
    groups: int

    def search(self, text: str) -> Match | None: ...

    def finditer(self, text: str) -> Iterator[Match]: ...


class _Linear:
    """An RE2 pattern whose texts may hold lone surrogates (a tensor name from a file, a
    path through ``surrogateescape``): RE2 matches UTF-8, which cannot encode them, so
    they are matched as U+FFFD."""

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled
        self.pattern: str = compiled.pattern
        self.groups: int = compiled.groups

    def search(self, text: str) -> Match | None:
        return self._compiled.search(_encodable(text))

    def finditer(self, text: str) -> Iterator[Match]:
        return self._compiled.finditer(_encodable(text))


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str, where: str, ignore_case: bool = False) -> Pattern:
    """``pattern`` compiled by RE2; a pattern RE2 refuses (bad syntax, a backreference, a
    lookaround, too large) is one `WeightscopeError` naming ``where`` it came from
    (``--include``, ``rank_pattern of adapter_config.json``)."""
    import re2

    options = re2.Options()
    options.log_errors = False  # RE2 would also log the error to stderr
    options.case_sensitive = not ignore_case
    try:
        return _Linear(re2.compile(pattern, options))
    except (re2.error, UnicodeEncodeError, TypeError) as exc:
        problem = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise WeightscopeError(
            f"{where} {pattern!r} is not a regular expression weightscope can run: {problem} "
            "(patterns run on RE2, in linear time: no backreferences or lookarounds)"
        ) from None
