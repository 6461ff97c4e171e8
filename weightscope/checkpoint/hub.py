"""The Hugging Face hub cache: a ``models--org--name`` directory, or a model id ``org/name``.

The cache layout (``refs/<revision>`` → commit, ``snapshots/<commit>/`` with the files) is
`huggingface_hub`'s business, so resolving goes through it (`snapshot_download` with
``local_files_only=True``) rather than through a hand-written copy of its rules; the
default location is the library's (``HF_HUB_CACHE``, else ``HF_HOME``/hub, else
``~/.cache/huggingface/hub``). Nothing is downloaded unless the caller asks
(``download=True``, the CLI's ``--download``), and then only weights and configs.
"""

from __future__ import annotations

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
    return Path(folder)


def resolve_if_asked(source: Path, revision: str | None, download: bool) -> Path:
    """``source``, or its snapshot when a revision or a download is asked for (the CLI's
    ``--revision``/``--download``; without them `open_checkpoint` resolves ``main`` offline)."""
    if revision is None and not download:
        return source
    if not (is_cache_dir(source) or looks_like_model_id(str(source))):
        raise CheckpointError(f"{source}: --revision and --download apply to a hub model id (org/name) or a models--org--name directory")
    return resolve(source, revision, download)
