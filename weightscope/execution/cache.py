"""A cache of computed spectra, so re-analysing a checkpoint skips the eigensolver.

Why: the eigenvalues are ~all of the cost, and they depend only on the stored tensor and
the precision they were solved in, not on thresholds. Re-running `analyze` with other
``--set`` values, `gate` after `analyze`, `compare` against a base analysed before, or
`trend` over a growing run then costs a read of the weights, not a decomposition.

An entry is keyed by the file's identity (resolved path, size, mtime in ns, inode), the
tensor (name, dtype, shape), what was computed (plain or randomised ESD), the options
that change its numbers (precision, seed) and the weightscope version. Editing or
replacing the file changes its size, mtime or inode and misses the cache. A file
modified within `RACY_SECONDS` of being read is not cached at all: a second write
within the filesystem's timestamp granularity could leave size and mtime unchanged
(git's "racily clean" rule). Entries are small ``.npz`` files (4096 float32 eigenvalues
are 16 kB, a whole 7B model ~4 MB), written atomically (temporary file, then rename);
an unreadable or malformed entry is ignored, deleted and rebuilt. The cache is a
best effort: a failure to write never fails an analysis.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from weightscope._version import __version__
from weightscope.checkpoint.base import TensorInfo
from weightscope.errors import WeightscopeError

#: Overrides the default location (which follows XDG: $XDG_CACHE_HOME/weightscope).
CACHE_DIR_ENV = "WEIGHTSCOPE_CACHE_DIR"
#: Files modified more recently than this are not cached (see the module docstring).
RACY_SECONDS = 2.0

_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def default_cache_dir() -> Path:
    """$WEIGHTSCOPE_CACHE_DIR, else $XDG_CACHE_HOME/weightscope, else ~/.cache/weightscope."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "weightscope"


class SpectrumCache:
    """Spectra of stored tensors under ``directory/spectra``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory) / "spectra"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WeightscopeError(f"cannot create cache directory {self.directory}: {exc.strerror or exc}") from None

    def key(self, info: TensorInfo, what: str, **params: object) -> str | None:
        """The entry name for ``what`` ("esd", "randomized") of a tensor, or None when the
        tensor's file cannot be identified or changed too recently to be trusted."""
        try:
            path = Path(info.file).resolve()
            stat = path.stat()
        except OSError:
            return None
        if time.time() - stat.st_mtime < RACY_SECONDS:
            return None
        identity = [
            __version__,
            str(path),
            stat.st_size,
            stat.st_mtime_ns,
            stat.st_ino,
            info.name,
            info.dtype,
            list(info.shape),
            what,
            sorted(params.items()),
        ]
        return hashlib.sha256(json.dumps(identity, default=str).encode()).hexdigest()[:40]

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None (missing, or unreadable and now removed)."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {name: stored[name] for name in stored.files}
        except _UNREADABLE:
            self.discard(key)
            return None

    def discard(self, key: str) -> None:
        """Remove an entry (a corrupt or malformed one), ignoring failures."""
        try:
            self._path(key).unlink()
        except OSError:
            pass

    def store(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Write an entry atomically; failures (disk full, read-only cache) are ignored."""
        path = self._path(key)
        temporary = None
        try:
            path.parent.mkdir(exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(handle, "wb") as sink:
                np.savez(sink, **arrays)
            os.replace(temporary, path)
            temporary = None
        except OSError:
            pass
        finally:
            if temporary is not None:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass
