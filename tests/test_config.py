"""Thresholds: defaults, pyproject.toml, overrides, and one-line errors for bad input."""

from __future__ import annotations

import dataclasses

import pytest

from weightscope.config import Thresholds, load_thresholds
from weightscope.errors import WeightscopeError


def write(tmp_path, text: str):
    path = tmp_path / "pyproject.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_pyproject():
    assert load_thresholds(None, {}) == Thresholds()
    assert Thresholds().alpha_low == 2.0 and Thresholds().alpha_high == 6.0


def test_thresholds_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Thresholds().alpha_high = 7.0  # type: ignore[misc]


def test_pyproject_then_overrides_take_precedence(tmp_path):
    path = write(
        tmp_path,
        """
[project]
name = "x"

[tool.weightscope]
alpha-high = 7
min_tail = 30
llr_p = 0.05

[tool.weightscope.gate]
max_bad_layers = 3
""",
    )
    loaded = load_thresholds(path, {"trust-min-tail": 40, "alpha_low": None})
    assert loaded.alpha_high == 7.0 and isinstance(loaded.alpha_high, float)
    assert loaded.trust_min_tail == 40  # the override wins over the file (old key min_tail)
    assert loaded.llr_p == 0.05
    assert loaded.alpha_low == Thresholds().alpha_low  # None means "not given"


def test_pyproject_without_section_gives_defaults(tmp_path):
    assert load_thresholds(write(tmp_path, "[project]\nname = 'x'\n"), {}) == Thresholds()


def test_the_trust_floor_and_the_fit_floor_have_distinct_names(tmp_path):
    """``min-tail`` once named both: the fit's floor (--min-tail, 10) and the trust floor
    (20). The trust floor is now ``trust-min-tail``; the old key still sets it, and the
    fit's floor is not a threshold at all."""
    assert load_thresholds(None, {"min-tail": "30"}).trust_min_tail == 30
    assert load_thresholds(write(tmp_path, "[tool.weightscope]\nmin-tail = 25\n")).trust_min_tail == 25
    assert not hasattr(Thresholds(), "min_tail")
    from weightscope.options import AnalysisOptions

    assert AnalysisOptions().min_tail == 10 and Thresholds().trust_min_tail == 20


def test_the_old_rand_distance_max_key_sets_the_shuffle_ks_bound(tmp_path):
    """``rand-distance-max`` bounded the KS distance to the shuffled ESD when that was
    called ``rand_distance``; the name went to WeightWatcher's Jensen–Shannon distance,
    and the old key still sets the same KS bound."""
    assert load_thresholds(write(tmp_path, "[tool.weightscope]\nrand-distance-max = 0.04\n")).shuffle_ks_max == 0.04
    assert not hasattr(Thresholds(), "rand_distance_max")


def test_string_overrides_are_parsed():
    assert load_thresholds(None, {"alpha-high": "6.5", "trap_max_entries": "3"}) == Thresholds(
        alpha_high=6.5, trap_max_entries=3
    )


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("[tool.weightscope]\nalpha_hihg = 7\n", {}, "unknown threshold 'alpha_hihg'"),
        ("", {"bogus": 1}, "unknown threshold 'bogus' in overrides"),
        ("[tool.weightscope]\nmin_tail = 2.5\n", {}, "trust_min_tail"),
        ("[tool.weightscope]\nalpha_high = true\n", {}, "alpha_high"),
        ("[tool.weightscope]\nalpha_high = 'seven'\n", {}, "alpha_high"),
        ("[tool.weightscope\n", {}, "not valid TOML"),
        ("[tool]\nweightscope = 3\n", {}, "must be a table"),
        ("", {"alpha_low": 7.0}, "alpha_low < alpha_high"),
        ("", {"dragon_p": 1.5}, "dragon_p"),
        ("", {"trust_min_tail": 0}, "trust_min_tail"),
        ("", {"tw_margin": -1}, "tw_margin"),
        ("", {"shuffled_tail_ratio": 0.9}, "shuffled_tail_ratio must be at least 1"),
        ("", {"shuffled_above_share": 1.0}, "shuffled_above_share"),
        ("", {"alpha_high": "nan"}, "got NaN"),
        ("[tool.weightscope]\nalpha_high = nan\n", {}, "got NaN"),
        ("", {"tw_margin": "inf"}, "cannot be inf"),
        ('tool = "x"\n', {}, r"\[tool\] in .* must be a table"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, text, overrides, message):
    with pytest.raises(WeightscopeError, match=message) as caught:
        load_thresholds(write(tmp_path, text), overrides)
    assert "\n" not in str(caught.value)


def test_missing_file_is_one_line_error(tmp_path):
    with pytest.raises(WeightscopeError, match="cannot read"):
        load_thresholds(tmp_path / "nope.toml", {})
