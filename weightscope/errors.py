"""Errors that mean "the input is bad", as opposed to bugs.

The CLI turns a `WeightscopeError` into one line on stderr and exit code 2; anything else
is a bug and keeps its traceback (shown with `--debug`).
"""

import re

from weightscope._version import DISTRIBUTION


class WeightscopeError(Exception):
    """Bad input or usage: the message is one line a user can act on."""


class CheckpointError(WeightscopeError):
    """A path that is not a readable checkpoint, or a tensor that cannot be decoded."""


#: A colon followed by another: ``::`` starts a GitHub workflow command.
_COMMAND_COLON = re.compile(r":(?=:)")


def one_line(text: str) -> str:
    """``text`` with every control or unprintable character written as its escape, and
    every ``::`` as ``\x3a:``; the one way any name, path or reason is shown.

    Paths and tensor names come from files and users: a newline or an ANSI escape in one
    must not forge a second line (a fake ``PASS``) or recolour the terminal, and a lone
    surrogate must not stop the output. GitHub's runner executes any output line that
    starts (after blanks) with ``::`` (``::error title=ALL CLEAR::``, ``::add-mask::``,
    ``::stop-commands::``); a table may wrap or fold a long name anywhere, so no ``::``
    is left in it at all.
    """
    shown = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return _COMMAND_COLON.sub(r"\\x3a", shown)


def install_hint(extra: str) -> str:
    """The one command that installs an optional extra, by the distribution's own name."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
