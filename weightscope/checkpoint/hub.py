"""The Hugging Face hub cache: a ``models--org--name`` directory, or a model id ``org/name``.

The cache layout (``refs/<revision>`` → commit, ``snapshots/<commit>/`` with the files) is
`huggingface_hub`'s business, so resolving goes through it (`snapshot_download` with
``local_files_only=True``) rather than through a hand-written copy of its rules; the
default location is the library's (``HF_HUB_CACHE``, else ``HF_HOME``/hub, else
``~/.cache/huggingface/hub``). Nothing is downloaded unless the caller asks
(``download=True``, the CLI's ``--download``), and then only weights and configs.

Two guards of our own: a ref (``refs/main``) is a file anyone can write, and the library
joins its text to ``snapshots/`` as given, so a snapshot that does not lie directly in the
entry's ``snapshots/`` directory is refused; and `cached_files` lists every file of a
resolved entry (its snapshot's links and the blobs behind them), which the commands count
as inputs, so that no output ever lands on a cached checkpoint.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from weightscope.checkpoint.base import require
from weightscope.errors import CheckpointError

#: What ``--download`` fetches: weights, shard indexes, configs (not tokenizers, not pickles).
DOWNLOAD_PATTERNS = ["*.safetensors", "*.safetensors.index.json", "config.json", "adapter_config.json", "*.gguf"]
_CACHE_DIR_NAME = re.compile(r"^models--(?P<org>[^/]+?)--(?P<name>[^/]+)$")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_cache_dir(path: Path) -> bool:
    """Whether ``path`` is a hub cache entry, ``…/models--org--name``."""
    return path.is_dir() and _CACHE_DIR_NAME.match(path.name) is not None


def looks_like_model_id(text: str) -> bool:
    """``org/name`` that is not a path on disk."""
    return _MODEL_ID.match(text) is not None and not Path(text).exists()


def resolve(source: str | Path, revision: str | None = None, download: bool = False) -> Path:
    """The snapshot directory for a cache entry or a model id (``revision``: branch, tag or
    commit; default ``main``). Offline unless ``download``."""
    path = Path(source)
    if is_cache_dir(path):
        match = _CACHE_DIR_NAME.match(path.name)
        assert match is not None
        return _snapshot(f"{match['org']}/{match['name']}", revision, str(path.parent), download, shown=f"{path}:")
    return _snapshot(str(source), revision, None, download, shown=f"{source}: no such file or directory, and")


def _snapshot(repo_id: str, revision: str | None, cache_dir: str | None, download: bool, shown: str) -> Path:
    hub = require("huggingface_hub", "hub", f"{shown} resolving a hub model")
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        folder = hub.snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=not download,
            allow_patterns=DOWNLOAD_PATTERNS if download else None,
        )
    except LocalEntryNotFoundError:
        at = f" at revision {revision!r}" if revision else ""
        raise CheckpointError(
            f"{shown} {repo_id}{at} is not in the Hugging Face cache (pass --download to fetch it)"
        ) from None
    except HFValidationError as exc:
        raise CheckpointError(f"{shown} not a model id ({str(exc).splitlines()[0]})") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{shown} {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    snapshots = os.path.realpath(_entry(repo_id, cache_dir) / "snapshots")
    if os.path.dirname(os.path.realpath(folder)) != snapshots:
        raise CheckpointError(
            f"{shown} the revision of {repo_id} resolves to {folder}, outside the cache entry's snapshots; refusing it"
        )
    return Path(folder)


def _entry(repo_id: str, cache_dir: str | None) -> Path:
    """The cache entry ``models--org--name`` of ``repo_id`` under ``cache_dir`` (default:
    the library's cache)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    root = cache_dir if cache_dir is not None else constants.HF_HUB_CACHE
    return Path(root) / repo_folder_name(repo_id=repo_id, repo_type="model")


def cached_files(source: str | Path) -> list[Path]:
    """Every file of the cache entry a model id or ``models--org--name`` directory resolves
    to (offline): the resolved snapshot's files and the entry's blobs; [] when it does not
    resolve (opening it will say why)."""
    try:
        snapshot = resolve(source)
    except CheckpointError:
        return []
    entry = snapshot.parent.parent
    found: list[Path] = []
    for folder in (snapshot, entry / "blobs"):
        for root, _, names in os.walk(folder):
            found.extend(Path(root) / name for name in names)
    return found


def resolve_if_asked(source: Path, revision: str | None, download: bool) -> Path:
    """``source``, or its snapshot when a revision or a download is asked for (the CLI's
    ``--revision``/``--download``; without them `open_checkpoint` resolves ``main`` offline)."""
    if revision is None and not download:
        return source
    if not (is_cache_dir(source) or looks_like_model_id(str(source))):
        raise CheckpointError(
            f"{source}: --revision and --download apply to a hub model id (org/name) or a models--org--name directory"
        )
    return resolve(source, revision, download)
