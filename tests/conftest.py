"""Test-session settings: the cache (on by default) is never the user's, and each test has
its own, so which tests reach the solver never depends on which ran before."""

import os
import tempfile

import pytest

os.environ.setdefault("WEIGHTSCOPE_CACHE_DIR", tempfile.mkdtemp(prefix="weightscope-test-cache-"))


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh, empty cache directory for every test (subprocesses inherit it)."""
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
