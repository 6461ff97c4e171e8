"""weightscope.stats.fit against the `powerlaw` package, planted exponents and a direct reference.

How the comparison with powerlaw is made exact:

* powerlaw is called as ``Fit(positive, xmin=(lo, hi), parameter_ranges={"alpha": [1, None]},
  verbose=False)``. The alpha range fix matters: powerlaw 2.x's default range (0, 3)
  silently rejects every candidate with alpha ≥ 3.
* It gets the positive eigenvalues only: it drops non-positive values solely when an
  exact 0 is present, and a negative round-off eigenvalue would otherwise reach its log.
* powerlaw tries the distinct values in [lo, hi) minus the last one. With lo = the smallest
  value and hi = the distinct value two places after the last one whose tail holds
  ``min_tail`` values, that is exactly our candidate set for ``min_tail``. When min_tail
  does not bind, hi is the maximum and the call equals powerlaw's default.
* Then the whole per-candidate table must agree (``xmin_fitting_results``), not only the
  winner, so agreement cannot come from luck in the argmin.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import powerlaw
import pytest

from weightscope.errors import WeightscopeError
from weightscope.stats import fit as fit_module
from weightscope.stats.fit import (
    PowerLawFit,
    XminScan,
    candidate_alphas,
    fit_power_law,
    scan_xmin,
)

MINILM = Path(__file__).parents[1] / "data" / "minilm_evals.npz"
ALPHA_RANGE = {"alpha": [1, None]}


def _esd(weight: np.ndarray) -> np.ndarray:
    return np.linalg.eigvalsh(weight.T @ weight / weight.shape[0])


def _planted(rng: np.random.Generator, alpha: float, m: int = 200) -> np.ndarray:
    """ESD of Q diag(λ) Qᵀ: a uniform bulk plus a Pareto(alpha) tail, with solver round-off."""
    lam = np.concatenate([rng.uniform(0.05, 1.0, m - m // 4), rng.pareto(alpha - 1, m // 4) + 1])
    q, _ = np.linalg.qr(rng.standard_normal((m, m)))
    return np.linalg.eigvalsh((q * lam) @ q.T)


def _spectra() -> list[tuple[str, np.ndarray]]:
    """64 seeded spectra, small enough that powerlaw checks each in a fraction of a second."""
    out: list[tuple[str, np.ndarray]] = []
    for seed in range(4):
        rng = np.random.default_rng([1, seed])
        for q in (1, 2, 4):
            out.append((f"mp-q{q}-s{seed}", _esd(rng.standard_normal((q * 120, 120)))))
        for df in (2.5, 3.0, 5.0):
            out.append((f"student{df}-s{seed}", _esd(rng.standard_t(df, (240, 120)))))
    for seed in range(3):
        rng = np.random.default_rng([2, seed])
        for alpha in (2.0, 3.0, 4.5):
            out.append((f"planted{alpha}-s{seed}", _planted(rng, alpha)))
        for alpha in (1.8, 2.5, 3.5, 6.0):
            out.append((f"pareto{alpha}-s{seed}", rng.pareto(alpha - 1, 250) + 1))
        out.append((f"dup-rounded-s{seed}", np.round(rng.pareto(1.5, 250) + 1, 2)))
        out.append((f"dup-float16-s{seed}", _esd(rng.standard_t(3.0, (300, 150))).astype(np.float16)))
        low_rank = rng.standard_normal((300, 60)) @ rng.standard_normal((60, 150))
        out.append((f"zeros-rank-deficient-s{seed}", _esd(low_rank)))
        out.append((f"zeros-exact-s{seed}", np.concatenate([_esd(rng.standard_t(4.0, (300, 150))), np.zeros(40)])))
        # Spread over ~260 decades: the lowest candidates have alpha < 1.01 and are rejected.
        out.append((f"log-uniform-wide-s{seed}", np.exp(rng.uniform(-300.0, 300.0, 120))))
    with np.load(MINILM) as data:
        out.extend((f"minilm-{name}", data[name]) for name in data.files)
    return out


SPECTRA = _spectra()
IDS = [name for name, _ in SPECTRA]


def _powerlaw_reference(evals: np.ndarray, min_tail: int) -> powerlaw.Fit:
    positive = np.sort(np.asarray(evals, dtype=np.float64))
    positive = positive[positive > 0]
    distinct = np.unique(positive)
    tail_counts = positive.size - np.searchsorted(positive, distinct)
    last = np.flatnonzero(tail_counts[:-2] >= min_tail)[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return powerlaw.Fit(
            positive, xmin=(distinct[0], distinct[last + 2]), parameter_ranges=ALPHA_RANGE, verbose=False
        )


def test_spectra_cover_the_families():
    assert len(SPECTRA) >= 50
    assert any(np.any(evals <= 0) for _, evals in SPECTRA)
    assert any(np.unique(evals).size < evals.size for _, evals in SPECTRA)
    assert any(not scan_xmin(evals).alpha_in_range.all() for _, evals in SPECTRA)


@pytest.mark.parametrize(("name", "evals"), SPECTRA, ids=IDS)
def test_matches_powerlaw_candidate_by_candidate(name, evals):
    reference = _powerlaw_reference(evals, min_tail=10)
    table = reference.xmin_fitting_results
    scan = scan_xmin(evals, min_tail=10)
    np.testing.assert_array_equal(scan.xmins, table["xmins"])
    np.testing.assert_allclose(scan.alphas, table["alphas"], rtol=1e-9)
    np.testing.assert_allclose(scan.Ds, table["distances"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(scan.alpha_in_range, table["valid_fits"])

    fit = fit_power_law(evals, min_tail=10)
    assert fit.status == "ok"
    assert fit.xmin == reference.xmin
    assert fit.alpha == pytest.approx(reference.alpha, rel=1e-9)
    assert fit.D == pytest.approx(reference.D, abs=1e-9)
    assert fit.sigma == pytest.approx(reference.sigma, rel=1e-9)
    assert fit.num_tail == reference.n_tail
    assert fit.xmax == np.max(evals)


@pytest.mark.parametrize(("name", "evals"), SPECTRA[::8], ids=IDS[::8])
def test_unrestricted_candidate_set_is_powerlaws_default(name, evals):
    """min_tail=1 never binds (every candidate keeps ≥ 3 values): compare with plain Fit()."""
    positive = evals[evals > 0].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = powerlaw.Fit(positive, parameter_ranges=ALPHA_RANGE, verbose=False)
    table = reference.xmin_fitting_results
    scan = scan_xmin(evals, min_tail=1)
    np.testing.assert_array_equal(scan.xmins, table["xmins"])
    np.testing.assert_allclose(scan.alphas, table["alphas"], rtol=1e-9)
    np.testing.assert_allclose(scan.Ds, table["distances"], rtol=0, atol=1e-9)
    # powerlaw also rejects tails whose likelihood overflows float64 (alpha in the
    # hundreds on a 3-point tail); we do not, so validity is compared on real tails only.
    real_tails = scan.n_tails >= 10
    np.testing.assert_array_equal(scan.alpha_in_range[real_tails], table["valid_fits"][real_tails])
    fit = fit_power_law(evals, min_tail=1)
    assert (fit.xmin, fit.num_tail) == (reference.xmin, reference.n_tail)
    assert fit.alpha == pytest.approx(reference.alpha, rel=1e-9)


def _direct_scan(evals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The definitions, one candidate at a time: MLE alpha and powerlaw's KS distance."""
    x = np.sort(evals[evals > 0])
    alphas, distances = [], []
    for xmin in np.unique(x)[:-2]:
        tail = x[x >= xmin]
        alpha = 1 + tail.size / np.sum(np.log(tail / xmin))
        points = np.unique(tail)
        empirical = np.searchsorted(tail, points, side="left") / tail.size
        fitted = 1 - (points / xmin) ** (1 - alpha)
        alphas.append(alpha)
        distances.append(np.max(np.abs(fitted - empirical)))
    return np.array(alphas), np.array(distances)


@pytest.fixture(scope="module")
def direct_reference() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A larger spectrum with duplicates, and its alphas and Ds from the definitions."""
    rng = np.random.default_rng(7)
    evals = np.concatenate([_esd(rng.standard_t(3.0, (1200, 600))), np.round(rng.pareto(2, 300) + 1, 1)])
    return (evals, *_direct_scan(evals))


@pytest.mark.parametrize("block_elements", [1 << 18, 5000, 1])
def test_blocked_scan_equals_direct_definition(monkeypatch, direct_reference, block_elements):
    """Block sizes from one candidate per block to all candidates in one block."""
    evals, alphas, distances = direct_reference
    monkeypatch.setattr(fit_module, "_BLOCK_ELEMENTS", block_elements)
    scan = scan_xmin(evals, min_tail=1)
    np.testing.assert_allclose(scan.alphas, alphas, rtol=1e-11)
    np.testing.assert_allclose(scan.Ds, distances, rtol=0, atol=1e-12)


@pytest.mark.parametrize("alpha", [2.0, 3.0, 4.0, 5.0])
def test_recovers_planted_pareto_exponent(alpha):
    errors = [
        abs(fit_power_law(np.random.default_rng([3, int(alpha), seed]).pareto(alpha - 1, 2000) + 1).alpha - alpha)
        for seed in range(20)
    ]
    assert np.median(errors) < 0.15


def _large_spectra() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(9)
    # Exact quantiles of a power law: D is nearly flat in xmin, so few bounds prune.
    quantiles = (1 - (np.arange(3000) + 0.5) / 3000) ** (-1 / 1.5)
    return [
        ("pareto-quantiles-3000", quantiles),
        ("pareto-4000", rng.pareto(2.0, 4000) + 1),
        ("student3-1000", _esd(rng.standard_t(3.0, (2000, 1000)))),
        ("mp-1000", _esd(rng.standard_normal((2000, 1000)))),
    ]


LARGE = _large_spectra()


@pytest.mark.parametrize(("name", "evals"), SPECTRA + LARGE, ids=IDS + [name for name, _ in LARGE])
def test_pruned_fit_is_the_full_scans_winner(name, evals):
    """fit_power_law evaluates D exactly only for contenders; it must pick scan_xmin's best."""
    scan = scan_xmin(evals)
    fit = fit_power_law(evals)
    best = scan.best_index
    assert (fit.xmin, fit.alpha, fit.D, fit.num_tail) == (
        scan.xmins[best],
        scan.alphas[best],
        scan.Ds[best],
        scan.n_tails[best],
    )
    assert scan.Ds[best] == scan.Ds[scan.alpha_in_range].min()


def test_fit_fields_follow_their_definitions():
    evals = LARGE[2][1]
    fit = fit_power_law(evals)
    scan = scan_xmin(evals)
    assert isinstance(scan, XminScan)
    assert np.all(np.diff(scan.xmins) > 0) and np.all(scan.n_tails >= 10)
    assert fit.sigma == pytest.approx((fit.alpha - 1) / np.sqrt(fit.num_tail))
    assert fit.num_tail == np.count_nonzero(evals >= fit.xmin)
    assert fit.xmax == evals.max()
    tail = evals[evals >= fit.xmin]
    assert fit.alpha == pytest.approx(1 + tail.size / np.sum(np.log(tail / fit.xmin)), rel=1e-12)


def test_order_and_dtype_do_not_matter():
    evals = _esd(np.random.default_rng(4).standard_t(3.0, (400, 200))).astype(np.float32)
    shuffled = np.random.default_rng(5).permutation(evals)
    assert fit_power_law(shuffled) == fit_power_law(np.sort(evals).astype(np.float64))


def test_non_positive_values_are_dropped():
    evals = SPECTRA[0][1]
    positive = evals[evals > 0]
    padded = np.concatenate([positive, np.zeros(25), -np.abs(np.random.default_rng(6).normal(0, 1e-16, 25))])
    assert fit_power_law(padded) == fit_power_law(positive)


def test_numerical_zero_cluster_does_not_capture_the_fit():
    """Half the spectrum at ~1e-17 (rank collapse) leaves the tail fit unchanged."""
    rng = np.random.default_rng(8)
    evals = _esd(rng.standard_t(3.0, (400, 200)))
    collapsed = np.concatenate([evals, np.abs(rng.normal(0, 1e-17, 200))])
    assert fit_power_law(collapsed) == fit_power_law(evals)


@pytest.mark.parametrize(
    ("evals", "min_tail", "reason_part"),
    [
        (np.array([]), 10, "distinct positive"),
        (np.full(50, 2.0), 10, "distinct positive"),
        (np.array([1.0, 2.0, 3.0, -1.0, 0.0]), 1, "distinct positive"),
        (np.array([1.0, 2.0, np.nan, 4.0, 5.0]), 1, "NaN or infinite"),
        (np.array([1.0, 2.0, np.inf, 4.0, 5.0]), 1, "NaN or infinite"),
        (np.arange(1.0, 30.0), 29, "xmin candidate"),
        (np.exp([-690.0, -345.0, 0.0, 345.0, 690.0]), 1, "lower bound"),
    ],
    ids=["empty", "all-equal", "three-distinct", "nan", "inf", "tail-too-short", "alpha-at-bound"],
)
def test_unfittable_spectra_fail_without_numbers(evals, min_tail, reason_part):
    fit = fit_power_law(evals, min_tail=min_tail)
    assert fit == PowerLawFit(status="failed", reason=fit.reason)
    assert reason_part in fit.reason


@pytest.mark.parametrize(
    ("evals", "min_tail"),
    [
        (np.ones((4, 4)), 10),
        (np.array([1 + 1j, 2.0, 3.0, 4.0]), 1),
        (np.array(["1", "2", "3", "4"]), 1),
        (np.arange(1.0, 30.0), 0),
        (np.arange(1.0, 30.0), 2.5),
        (np.arange(1.0, 30.0), True),
    ],
    ids=["2-d", "complex", "strings", "min-tail-0", "min-tail-float", "min-tail-bool"],
)
def test_malformed_input_raises_weightscope_error(evals, min_tail):
    with pytest.raises(WeightscopeError):
        fit_power_law(evals, min_tail=min_tail)


@pytest.mark.parametrize("seed", range(3))
def test_candidate_alphas_are_the_scans_without_the_ks_distances(seed):
    """`checks.tail.alpha_spread` reads these instead of running the whole KS scan."""
    rng = np.random.default_rng(seed)
    evals = np.concatenate([(1.0 - rng.random(300)) ** (-1.0 / 1.5), rng.random(200)])
    scan = scan_xmin(evals, min_tail=1)
    xmins, alphas = candidate_alphas(evals, min_tail=1)
    np.testing.assert_array_equal(xmins, scan.xmins)
    np.testing.assert_array_equal(alphas, scan.alphas)
