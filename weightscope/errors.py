"""Errors that mean "the input is bad", as opposed to bugs.

The CLI turns a `WeightscopeError` into one line on stderr and exit code 2; anything else
is a bug and keeps its traceback (shown with `--debug`).
"""


class WeightscopeError(Exception):
    """Bad input or usage: the message is one line a user can act on."""


class CheckpointError(WeightscopeError):
    """A path that is not a readable checkpoint, or a tensor that cannot be decoded."""
