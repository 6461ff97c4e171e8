"""Test-session settings: keep the spectrum cache (on by default) out of the user's home."""

import os
import tempfile

os.environ.setdefault("WEIGHTSCOPE_CACHE_DIR", tempfile.mkdtemp(prefix="weightscope-test-cache-"))
