"""A cache of spectra, so re-analysing a checkpoint skips the eigensolver.

The eigensolve is almost all of an analysis' time, and its result — the eigenvalues of a
tensor — depends only on the tensor's bytes and the solver's precision. So `analyze`
with other thresholds, `gate` after `analyze`, and `trend` over a growing run can reuse
it. An entry is keyed by the file (resolved path, size, modification time in ns), the
tensor's name and the spectrum options; touching the file invalidates it. Entries are
`.npy` files written atomically; an unreadable or inconsistent entry is ignored and
rebuilt. Opt-in (`--cache-dir DIR`): a tool that silently fills a home directory with
hundreds of MB for a 70B model should be asked first.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from . import __version__
from .checkpoint.base import TensorInfo
from .spectrum import SpectrumOptions


class SpectrumCache:
    """Eigenvalues by (file identity, tensor name, spectrum options) under one directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, info: TensorInfo, options: SpectrumOptions) -> Path:
        stat = os.stat(info.file)
        identity = [str(Path(info.file).resolve()), stat.st_size, stat.st_mtime_ns, info.name, options.dtype, __version__]
        digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
        return self.directory / digest[:2] / f"{digest}.npy"

    def load(self, info: TensorInfo, options: SpectrumOptions, expected_size: int) -> np.ndarray | None:
        """The cached ascending eigenvalues, or None (missing, unreadable or inconsistent)."""
        path = self._path(info, options)
        try:
            evals = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        ok = evals.ndim == 1 and evals.size == expected_size and np.all(np.isfinite(evals)) and np.all(np.diff(evals) >= 0)
        return evals if ok else None

    def store(self, info: TensorInfo, options: SpectrumOptions, evals: np.ndarray) -> None:
        path = self._path(info, options)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, np.asarray(evals), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
