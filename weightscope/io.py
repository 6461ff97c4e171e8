"""Writing output files so that nothing the user had is lost and no reader sees half a file.

One writer for every output (reports, HTML, PNG, safetensors, cache entries), with three
promises:

- **Checked before the work.** `check_outputs` runs before any analysis: an output that
  is an input of the run (the checkpoint, a shard, the index, a baseline, a saved report;
  also through a symlink or a hard link: compared by real path and by (st_dev, st_ino)),
  a directory, a missing or read-only directory, or two outputs that are one file are
  refused then, not after minutes of work.
- **Atomic for regular files.** Bytes go to a temporary file beside the target, which is
  renamed over it only once every byte is written and synced; a full disk, a crash or an
  interrupt leaves the previous file intact and no partial file. A symlink is written
  *through*: its target is replaced atomically and the link stays a link.
- **Streamed to everything else.** ``-``, a character device (``/dev/null``), a FIFO, a
  socket, or the file behind ``/dev/stdout`` is opened and written in place: renaming a
  temporary file over ``/dev/null`` (CI runs as root, who may) would replace the device
  node with a regular file.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightscope.errors import WeightscopeError

#: A file modified this recently may still be written: two writes within the filesystem's
#: timestamp granularity can leave every stamp unchanged (git's "racily clean" rule), so
#: the spectrum cache does not trust its identity yet and `watch` waits this long.
RACY_SECONDS = 2.0

#: The output name meaning standard output.
STDOUT = "-"

Data = str | bytes | bytearray | memoryview | Iterable[bytes | bytearray | memoryview]


@dataclass(frozen=True)
class Destination:
    """Where the bytes of one output go.

    ``target`` is the file written: the real path (symlinks resolved) for a regular file
    or a new one, the path itself for a stream. ``stream`` is True when the output is
    opened and written in place (never renamed over); ``stdout`` when it is this
    process's standard output.
    """

    path: Path
    target: Path
    stream: bool
    stdout: bool = False


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _is_stdout(identity: tuple[int, int] | None) -> bool:
    if identity is None:
        return False
    try:
        st = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return False  # stdout replaced by an object without a descriptor (tests)
    return (st.st_dev, st.st_ino) == identity


def destination(path: str | os.PathLike[str]) -> Destination:
    """Classify an output path without touching it."""
    given = Path(path)
    if str(path) == STDOUT:
        return Destination(given, given, stream=True, stdout=True)
    try:
        st = os.stat(given)  # follows symlinks: what a write would reach
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise WeightscopeError(f"cannot write {given}: {exc.strerror or exc}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise WeightscopeError(f"cannot write {given}: it is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        return Destination(given, given, stream=True)  # device, FIFO, socket
    if st is not None and _is_stdout((st.st_dev, st.st_ino)):
        return Destination(given, given, stream=True, stdout=True)  # /dev/stdout redirected to a file
    if _through_proc(given):
        return Destination(given, given, stream=True)  # /dev/fd/N, /proc/self/fd/N: someone's open file
    return Destination(given, Path(os.path.realpath(given)), stream=False)


def _through_proc(path: Path) -> bool:
    """Whether ``path``, or any symlink on its way, lies in /proc: ``/dev/stdout``,
    ``/dev/fd/1`` or a link to ``/proc/self/fd/1`` name an open file of some process,
    whose "real path" is no place to rename a file onto. (/dev/shm and the like hold
    ordinary files and are replaced atomically like any other.)"""
    current = path.absolute()
    for _ in range(40):  # the kernel's own limit on a symlink chain
        if os.path.realpath(current.parent).startswith("/proc/"):
            return True
        if not current.is_symlink():
            return False
        current = (current.parent / os.readlink(current)).absolute()
    return False


def check_outputs(
    outputs: Iterable[str | os.PathLike[str] | None], inputs: Iterable[str | os.PathLike[str]] = ()
) -> None:
    """Refuse, before any work, outputs that would destroy an input or cannot be written.

    ``inputs`` are every file the run reads (see `weightscope.checkpoint.input_files`).
    A regular output's directory is probed by creating and removing a temporary file in
    it: that is the only test that sees read-only mounts, permissions, ACLs and an
    exhausted inode table alike.
    """
    known: dict[object, Path] = {}
    for item in inputs:
        source = Path(item)
        known[os.path.realpath(source)] = source
        identity = _identity(source)
        if identity is not None:
            known[identity] = source
    seen: dict[object, Path] = {}
    for output in outputs:
        if output is None:
            continue
        where = destination(output)
        keys: list[object] = [] if where.stdout else [os.path.realpath(where.target), _identity(where.target)]
        for key in keys:
            if key is None:
                continue
            if key in known and not where.stream:
                raise WeightscopeError(
                    f"refusing to write {where.path}: it is an input of this run ({known[key]}); choose another output path"
                )
            if key in seen:
                raise WeightscopeError(f"two outputs name one file: {seen[key]} and {where.path}")
        for key in keys:
            if key is not None:
                seen[key] = where.path
        if not where.stream:
            _probe_directory(where)


def _probe_directory(where: Destination) -> None:
    directory = where.target.parent
    if not directory.is_dir():
        raise WeightscopeError(f"cannot write {where.path}: directory {directory} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{where.target.name}.", suffix=".probe", dir=directory)
    except OSError as exc:
        raise WeightscopeError(f"cannot write {where.path}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def _chunks(data: Data) -> Iterable[bytes | bytearray | memoryview]:
    if isinstance(data, str):
        return (data.encode("utf-8"),)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return (data,)
    return data


def _write_all(fd: int, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
    """os.write until every byte is out: a short write (a pipe, a full disk) is not an end."""
    for chunk in chunks:
        view = memoryview(chunk)
        if not view.nbytes:  # nothing to write; an empty array's view (a zero in its shape) cannot be cast
            continue
        view = view.cast("B")
        while view:
            written = os.write(fd, view)
            view = view[written:]


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_atomic(path: str | os.PathLike[str], data: Data) -> Path:
    """Write ``data`` (text, bytes, or an iterable of byte chunks) to ``path``; see the module doc.

    Returns the path written. Any failure raises `WeightscopeError` naming the path, and
    for a regular file leaves whatever was there before untouched.
    """
    where = destination(path)
    try:
        if where.stdout:
            stream: Any = getattr(sys.stdout, "buffer", sys.stdout)  # bytes, or text on a stdout without one
            for chunk in _chunks(data):
                stream.write(chunk if stream is not sys.stdout else bytes(chunk).decode("utf-8"))
            stream.flush()
        elif where.stream:
            fd = os.open(where.target, os.O_WRONLY | os.O_APPEND)  # never creates, never truncates
            try:
                _write_all(fd, _chunks(data))
            finally:
                os.close(fd)
        else:
            _replace(where.target, _chunks(data))
    except OSError as exc:
        kept = "" if where.stream else "; nothing was changed there"
        raise WeightscopeError(f"cannot write {where.path}: {exc.strerror or exc}{kept}") from None
    return where.path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """`write_atomic` for text (UTF-8, newlines untouched)."""
    return write_atomic(path, text)


def _replace(target: Path, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
    directory = target.parent
    if not directory.is_dir():
        raise FileNotFoundError(2, f"directory {directory} does not exist")
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)  # a replaced file keeps its permissions
    except FileNotFoundError:
        mode = 0o666 & ~_umask()  # mkstemp makes 0600; a report is meant to be shared
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        try:
            _write_all(fd, chunks)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
