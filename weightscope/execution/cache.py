"""The one cache of weightscope: computed spectra and per-checkpoint reports.

Why: the eigenvalues are ~all of the cost, and they depend only on the stored tensor and
the precision they were solved in, not on thresholds. Re-running `analyze` with other
``--set`` values, `gate` after `analyze`, `compare` against a base analysed before, or
`trend` over a growing run then costs a read of the weights, not a decomposition; `trend`
also keeps each checkpoint's whole report here, so a rerun over a grown run analyses only
the new checkpoints. Both kinds of entry share one store, one key discipline, one size
cap and one eviction (`CacheStore`).

Keys. An entry is keyed by the identity of the file(s) it was computed from (resolved
path, device, inode, size, mtime and ctime in ns), what was computed, the options that
change its numbers and the weightscope version. The key must change whenever the bytes
can have changed: editing or replacing a file changes its size, mtime or inode, and
``cp -p`` over a same-size file (which keeps the inode and copies the old mtime) still
sets the ctime, which no user call can set back. A file whose mtime or ctime is within
`RACY_SECONDS` of now is not cached at all: a second write within the filesystem's
timestamp granularity could leave every stamp unchanged (git's "racily clean" rule).
A content hash was measured as the alternative: sha256 reads 1.28 GB/s here, +0.07 s on
MiniLM's 91 MB (about 7 % of its analysis) and +11 s on a 14 GB model, for nothing the
stat fields miss, so the key stays stat-based.

Size. The store is capped (`DEFAULT_MAX_BYTES`, or ``$WEIGHTSCOPE_CACHE_MAX`` such as
``500M``); a hit touches its entry's mtime, and a store that takes the store over the cap
removes the least recently used entries down to `LOW_WATER` of it. Several processes may
share a store: entries are written to a temporary file and renamed into place, a reader
never sees half an entry, and an entry removed under a reader is a miss. Each process
counts its own writes against a total scanned once, so concurrent writers can overshoot
the cap by what they wrote since their last scan, until one of them scans again.

Best effort. An unusable cache (its directory is a file, a dangling symlink or a loop,
HOME is unwritable) is one warning line on the ``weightscope`` logger (the CLI prints it
as ``warning: …`` on stderr) and the run goes on uncached; a store that fails (a full disk,
a read-only cache) is the same one line, and the run stores nothing more but still reads
what is there. An unreadable or malformed entry is deleted and rebuilt. Entries are
opened as regular files only, never through a symlink (``O_NOFOLLOW``) and never a FIFO
(``O_NONBLOCK``, then ``fstat``): anyone who can write the cache directory could
otherwise point an entry at another model's spectrum or hang the run. An unusable
``$WEIGHTSCOPE_CACHE_MAX`` is one warning and the default cap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from weightscope._version import __version__
from weightscope.checkpoint.base import TensorInfo
from weightscope.errors import WeightscopeError
from weightscope.io import RACY_SECONDS  # files modified more recently are not cached
from weightscope.options import AnalysisOptions
from weightscope.report import SCHEMA, Report

#: Overrides the default location (which follows XDG: $XDG_CACHE_HOME/weightscope).
CACHE_DIR_ENV = "WEIGHTSCOPE_CACHE_DIR"
#: Overrides the size cap, e.g. "2G", "500M", "0" (keep nothing).
CACHE_MAX_ENV = "WEIGHTSCOPE_CACHE_MAX"
#: 2 GB holds the spectra of ~500 7B-model checkpoints (~4 MB each) and their reports.
DEFAULT_MAX_BYTES = 2 * 1000**3
#: Eviction removes entries until the store is this share of the cap (a margin, so the
#: next few stores do not each scan the directory again).
LOW_WATER = 0.9
#: A temporary file this old was left by a killed process: eviction removes it.
STALE_TEMP_SECONDS = 3600.0
#: Entry kinds: sub-directory → file suffix.
KINDS = {"spectra": ".npz", "reports": ".json", "distances": ".json"}

log = logging.getLogger("weightscope.cache")

_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)
_ENTRY_NAME = re.compile(r"^[0-9a-f]{40}\.(npz|json)$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?(?:e\+?\d{1,3})?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}
#: Directories already warned about in this process: one line per run, not per layer.
_warned: set[str] = set()
_warned_lock = threading.Lock()


def default_cache_dir() -> Path:
    """$WEIGHTSCOPE_CACHE_DIR, else $XDG_CACHE_HOME/weightscope, else ~/.cache/weightscope."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "weightscope"


def parse_size(text: str) -> int:
    """Bytes in "2G", "500M", "1.5g", "4096", "1e9" (decimal units; "GiB"/"GB" read as G)."""
    match = _SIZE.match(text)
    if not match:
        raise WeightscopeError(f"cache size {text!r} is not a size such as 2G, 500M, 1e9 or 0")
    number = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not number < 2**63:
        raise WeightscopeError(f"cache size {text!r} is beyond any disk")
    return int(number)


def default_max_bytes() -> int:
    """$WEIGHTSCOPE_CACHE_MAX, else `DEFAULT_MAX_BYTES` (also, with one warning, when the
    variable is not a size: the cache is best effort, a typo in it never fails a run)."""
    explicit = os.environ.get(CACHE_MAX_ENV)
    if not explicit:
        return DEFAULT_MAX_BYTES
    try:
        return parse_size(explicit)
    except WeightscopeError as exc:
        if _first_time(CACHE_MAX_ENV):
            log.warning(
                "$%s: %s; the cache keeps its default cap of %d GB", CACHE_MAX_ENV, exc, DEFAULT_MAX_BYTES // 1000**3
            )
        return DEFAULT_MAX_BYTES


def _first_time(topic: str) -> bool:
    with _warned_lock:
        if topic in _warned:
            return False
        _warned.add(topic)
        return True


def warn_once(directory: Path | str, problem: str) -> None:
    """Say once per process and directory that the cache is unusable and the run goes on."""
    if _first_time(str(directory)):
        log.warning("cache %s is unusable (%s); continuing without it", directory, problem)


def _problem(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def file_identity(path: str | os.PathLike[str]) -> list[object] | None:
    """What identifies a file's bytes (see the module docstring), or None when it cannot
    be read or changed too recently to be trusted."""
    try:
        resolved = Path(path).resolve()
        info = resolved.stat()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop on Python < 3.13
        return None
    if time.time() - max(info.st_mtime, info.st_ctime) < RACY_SECONDS:
        return None
    return [str(resolved), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def checkpoint_identity(path: str | os.PathLike[str]) -> list[object] | None:
    """`file_identity` of a checkpoint file, or of every visible file of a checkpoint
    directory (a shard, an index, a config); None when any of them is unidentifiable."""
    root = Path(path)
    try:
        files = (
            [root]
            if not root.is_dir()
            else sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
        )
    except OSError:
        return None
    identities: list[object] = [file_identity(file) for file in files]
    return None if any(identity is None for identity in identities) else identities


def make_key(*parts: object) -> str:
    """The entry name of ``parts`` (and this weightscope version)."""
    return hashlib.sha256(json.dumps([__version__, *parts], default=str, sort_keys=True).encode()).hexdigest()[:40]


@dataclass(frozen=True)
class CacheEntry:
    """One stored entry: its kind ("spectra", "reports"), bytes and last use (epoch s)."""

    path: Path
    kind: str
    size: int
    last_used: float


@dataclass(frozen=True)
class CacheInfo:
    """What `weightscope cache info` shows."""

    directory: str
    max_bytes: int
    entries: dict[str, int]
    size: int
    oldest: float | None
    newest: float | None


class CacheStore:
    """Entries under ``directory/<kind>/<2 hex>/<key><suffix>``, capped at ``max_bytes``.

    Use `open_store` in a run (it never raises for an unusable directory); the class
    itself is also what `weightscope cache info|clear` reads.
    """

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int | None = None) -> None:
        self.directory = Path(directory)
        self.max_bytes = default_max_bytes() if max_bytes is None else max_bytes
        if self.max_bytes < 0:
            raise WeightscopeError(f"cache size must be ≥ 0, got {self.max_bytes}")
        #: False once a store failed (full disk, read-only): reads go on, writes stop.
        self.writable = True
        self._lock = threading.Lock()
        self._total: int | None = None  # bytes, scanned at the first store

    # --- reading and writing entries ---------------------------------------------------

    def path(self, kind: str, key: str) -> Path:
        return self.directory / kind / key[:2] / f"{key}{KINDS[kind]}"

    def load_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None (missing, or unreadable and now removed)."""
        entry = self._hit("spectra", key)
        if entry is None:
            return None
        try:
            with entry, np.load(entry, allow_pickle=False) as stored:
                return {name: stored[name] for name in stored.files}
        except _UNREADABLE:
            self.discard("spectra", key)
            return None

    def load_text(self, kind: str, key: str) -> str | None:
        """The text stored under ``key``, or None (missing, or unreadable and now removed)."""
        entry = self._hit(kind, key)
        if entry is None:
            return None
        try:
            with entry:
                return entry.read().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            self.discard(kind, key)
            return None

    def store_arrays(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        self._store("spectra", key, lambda sink: np.savez(sink, **arrays))  # type: ignore[arg-type]  # names are layer arrays; the stubs fear allow_pickle

    def store_text(self, kind: str, key: str, text: str) -> None:
        self._store(kind, key, lambda sink: sink.write(text.encode("utf-8")))

    def discard(self, kind: str, key: str) -> None:
        """Remove an entry (a corrupt or malformed one), ignoring failures."""
        with contextlib.suppress(OSError):
            self.path(kind, key).unlink()

    def _hit(self, kind: str, key: str) -> BinaryIO | None:
        """The entry opened for reading, or None: missing, or not a regular file (a
        symlink, a FIFO, a directory: removed). A hit is a use: its mtime is touched,
        so least recently used goes first."""
        path = self.path(kind, key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError:  # ELOOP: a symlink; EACCES, ENXIO (a socket): unusable either way
            self.discard(kind, key)
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self.discard(kind, key)
            return None
        with contextlib.suppress(OSError):  # a read-only store still serves its entries
            os.utime(fd)
        return os.fdopen(fd, "rb")

    def _store(self, kind: str, key: str, write) -> None:
        """Write an entry atomically, then keep the store under its cap. A failure (full
        disk, read-only store) stops this store's writes, with one warning; its entries
        are still read."""
        if not self.writable:
            return
        path = self.path(kind, key)
        temporary = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
            with os.fdopen(handle, "wb") as sink:
                write(sink)
            size = os.stat(temporary).st_size
            os.replace(temporary, path)
            temporary = None
            self._account(size)
        except OSError as exc:
            self.writable = False
            warn_once(self.directory, _problem(exc))
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)

    # --- size cap ------------------------------------------------------------------------

    def _account(self, size: int) -> None:
        with self._lock:
            if self._total is None:
                self._total = sum(entry.size for entry in self.entries())
            else:
                self._total += size
            if self._total > self.max_bytes:
                self._total = self._evict(int(LOW_WATER * self.max_bytes))

    def _evict(self, target: int) -> int:
        """Remove least recently used entries until at most ``target`` bytes remain;
        returns what remains. Entries another process removed first are simply gone."""
        entries = sorted(self.entries(), key=lambda entry: entry.last_used)
        total = sum(entry.size for entry in entries)
        for entry in entries:
            if total <= target:
                break
            with contextlib.suppress(FileNotFoundError):
                entry.path.unlink()
            total -= entry.size
        self._remove_stale_temporaries()
        return total

    def _remove_stale_temporaries(self) -> None:
        now = time.time()
        for kind in KINDS:
            for temporary in (self.directory / kind).glob("*/.*.tmp"):
                try:
                    if now - temporary.stat().st_mtime > STALE_TEMP_SECONDS:
                        temporary.unlink()
                except OSError:
                    pass

    # --- listing and clearing ----------------------------------------------------------

    def entries(self) -> Iterator[CacheEntry]:
        """Every entry of every kind; files that are not entries are never listed."""
        for kind in KINDS:
            for shard in _scandir(self.directory / kind):
                if not shard.is_dir(follow_symlinks=False) or len(shard.name) != 2:
                    continue
                for item in _scandir(Path(shard.path)):
                    if not _ENTRY_NAME.match(item.name) or not item.is_file(follow_symlinks=False):
                        continue
                    try:
                        info = item.stat(follow_symlinks=False)
                    except OSError:
                        continue  # removed meanwhile
                    yield CacheEntry(Path(item.path), kind, info.st_size, info.st_mtime)

    def info(self) -> CacheInfo:
        entries = list(self.entries())
        uses = [entry.last_used for entry in entries]
        return CacheInfo(
            directory=str(self.directory),
            max_bytes=self.max_bytes,
            entries={kind: sum(entry.kind == kind for entry in entries) for kind in KINDS},
            size=sum(entry.size for entry in entries),
            oldest=min(uses, default=None),
            newest=max(uses, default=None),
        )

    def clear(self) -> tuple[int, int]:
        """Remove every entry (and nothing else); returns (entries, bytes) removed."""
        removed = freed = 0
        for entry in list(self.entries()):
            try:
                entry.path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise WeightscopeError(f"cannot remove {entry.path}: {_problem(exc)}") from None
            removed, freed = removed + 1, freed + entry.size
        for kind in KINDS:
            for shard in _scandir(self.directory / kind):
                with contextlib.suppress(OSError):
                    os.rmdir(shard.path)  # only when empty
        with self._lock:
            self._total = 0
        return removed, freed


def _scandir(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as items:
            return list(items)
    except OSError:
        return []


def open_store(directory: str | os.PathLike[str] | None = None, max_bytes: int | None = None) -> CacheStore | None:
    """The store at ``directory`` (default: `default_cache_dir`), created if missing, or
    None with one warning when it cannot be used."""
    store = CacheStore(directory if directory is not None else default_cache_dir(), max_bytes)
    try:  # an existing read-only directory is usable: it serves hits (see `_store`)
        store.directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file, a dangling symlink or a symlink loop
        warn_once(store.directory, "it exists and is not a directory")
        return None
    except (OSError, RuntimeError) as exc:
        warn_once(store.directory, _problem(exc) if isinstance(exc, OSError) else str(exc))
        return None
    return store


class SpectrumCache:
    """Spectra of stored tensors, in a `CacheStore`."""

    def __init__(self, store: CacheStore) -> None:
        self._store = store

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str] | None = None, max_bytes: int | None = None
    ) -> SpectrumCache | None:
        store = open_store(directory, max_bytes)
        return cls(store) if store is not None else None

    def key(self, info: TensorInfo, what: str, **params: object) -> str | None:
        """The entry name for ``what`` ("esd", "randomized") of a tensor, or None when the
        tensor's file cannot be identified or changed too recently to be trusted."""
        identity = file_identity(info.file)
        if identity is None:
            return None
        return make_key("spectrum", identity, info.name, info.dtype, list(info.shape), what, sorted(params.items()))

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        return self._store.load_arrays(key)

    def store(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        self._store.store_arrays(key, arrays)

    def discard(self, key: str) -> None:
        self._store.discard("spectra", key)


def report_key(path: str | os.PathLike[str], options: Sequence[object] | dict[str, object]) -> str | None:
    """The entry name of a checkpoint's report under ``options``, or None (see
    `checkpoint_identity`)."""
    identity = checkpoint_identity(path)
    return None if identity is None else make_key("report", identity, options)


class ReportCache:
    """Per-checkpoint reports in the same store as the spectra (`CacheStore`),
    so a rerun over a grown run only analyses the new checkpoints.

    An entry is keyed by the identity of the checkpoint's files (the store's key
    discipline: path, inode, size, mtime and ctime; none while a file is being written),
    the analysis options and the weightscope version: touching the checkpoint or changing
    an option misses it. Entries are plain report JSON (what `analyze -o` writes); an
    unreadable one is removed and rebuilt, and old ones leave by the store's LRU cap.
    """

    def __init__(self, store: CacheStore, options: AnalysisOptions) -> None:
        self._store = store
        self._options = dataclasses.asdict(options)

    def get(self, path: Path) -> Report | None:
        key = report_key(path, self._options)
        text = self._store.load_text("reports", key) if key is not None else None
        if key is None or text is None:
            return None
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("schema") != SCHEMA:
                raise WeightscopeError("an older schema")  # it would lack what this version computes
            report = Report.from_dict(data)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError, WeightscopeError):
            self._store.discard("reports", key)  # damaged, hand-edited or older: rebuilt
            return None
        return dataclasses.replace(report, source=str(path))  # as this run names it

    def _distances_key(self, path: Path, reference: Path) -> str | None:
        """Distances from init of ``path`` against ``reference``: keyed by both checkpoints'
        identities (and the options/version, as reports are)."""
        identities = [checkpoint_identity(path), checkpoint_identity(reference)]
        return None if None in identities else make_key("distances", *identities, self._options)

    def get_distances(self, path: Path, reference: Path) -> dict[str, float | None] | None:
        key = self._distances_key(path, reference)
        if key is None:
            return None
        text = self._store.load_text("distances", key)
        try:
            data: Any = json.loads(text) if text is not None else None
        except (ValueError, RecursionError):
            data = None
        valid = isinstance(data, dict) and all(
            isinstance(k, str) and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))
            for k, v in data.items()
        )
        if not valid:
            if text is not None:
                self._store.discard("distances", key)  # damaged or hand-edited: rebuilt
            return None
        return {k: None if v is None else float(v) for k, v in data.items()}

    def put_distances(self, path: Path, reference: Path, distances: dict[str, float | None]) -> None:
        key = self._distances_key(path, reference)
        if key is not None:
            self._store.store_text("distances", key, json.dumps(distances, allow_nan=False) + "\n")

    def put(self, path: Path, report: Report) -> None:
        key = report_key(path, self._options)
        if key is not None:
            self._store.store_text("reports", key, json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n")
