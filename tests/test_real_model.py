"""A real checkpoint nobody here trained: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384).

`.ci/run` fetches it (scripts/fetch_minilm.py) and points WEIGHTSCOPE_REAL_MODEL at it.
Off CI, without the file, these tests skip; on CI a missing file is a failure.
"""

import os
from pathlib import Path

import pytest

import weightscope
from weightscope.execution.plan import Execution

MODEL = os.environ.get("WEIGHTSCOPE_REAL_MODEL", "")

if not MODEL or not Path(MODEL).is_file():
    if os.environ.get("CI"):
        raise RuntimeError("CI must provide the real model: run scripts/fetch_minilm.py (see .ci/run)")
    pytest.skip("set WEIGHTSCOPE_REAL_MODEL to all-MiniLM-L6-v2's model.safetensors", allow_module_level=True)

pytestmark = pytest.mark.slow  # a real 91 MB checkpoint, analysed with randomisation


@pytest.fixture(scope="module")
def report():
    return weightscope.analyze(MODEL, randomize=True)


def test_every_bert_matrix_is_analysed_and_named(report):
    assert report.summary.analysed == 39 and report.summary.failed == 0
    kinds = {layer.kind for layer in report.layers}
    assert {"embedding", "q", "k", "v", "o", "up", "down"} <= kinds
    assert {layer.block for layer in report.layers if layer.kind == "q"} == set(range(6))
    assert all(s.reason == "1-D tensor (bias or norm)" for s in report.skipped if len(s.shape) == 1)


def test_trained_bert_reads_as_trained(report):
    # A trained sentence encoder: most alphas in the healthy band, median near 3.
    assert 2.5 < report.summary.alpha_median < 4.5
    assert report.summary.in_2_6 >= 30
    assert report.summary.verdicts.get("healthy", 0) >= 10


def test_the_outlier_dimension_is_found_and_located(report):
    """BERT-family models carry a few huge weights in one hidden dimension; here it is 99.

    The correlation-trap check must find it in the FFN output projections and point at
    row 99 of the stored (out, in) matrix — the weights a user would look at.
    """
    trapped = [layer for layer in report.layers if layer.verdict == "correlation-trap"]
    assert len(trapped) >= 4
    for block in range(4):
        layer = report.layer(f"encoder.layer.{block}.output.dense.weight")
        assert layer.verdict == "correlation-trap"
        assert any(entry.row == 99 for entry in layer.traps.entries)


def test_the_untrained_pooler_is_random_like(report):
    """sentence-transformers pools by the mean and never uses BERT's pooler, so its
    fine-tuning never moved it; the pooler must not read as a learned layer."""
    assert report.layer("pooler.dense.weight").verdict == "random-like"


def test_float32_by_default_changes_no_verdict_or_alpha(report):
    """The default precision solves in float32; on a real model it must tell the same story
    as float64: every verdict, flag and trust decision, and alphas to 1e-4 relative."""
    exact = weightscope.analyze(MODEL, randomize=True, eig_dtype="float64", execution=Execution(cache=False))
    for auto, reference in zip(report.layers, exact.layers, strict=True):
        assert (auto.verdict, auto.flags, auto.rank.collapsed) == (reference.verdict, reference.flags, reference.rank.collapsed), auto.name
        assert (auto.fit_trust and auto.fit_trust.trusted) == (reference.fit_trust and reference.fit_trust.trusted), auto.name
        assert auto.alpha == pytest.approx(reference.alpha, rel=1e-4), auto.name
