"""Per-layer checks and the verdict, on planted ground truth over many seeds.

Each seeded loop measures a check's false-alarm rate or power on planted truth and
asserts the rate the check promises (docs/method/diagnostics.md). Shapes stay small (≤ 300×150 in the 200-seed loops) to keep the file fast.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from weightscope import vocabulary
from weightscope.checkpoint.layers import layer_matrices
from weightscope.checks import diagnose
from weightscope.checks.rank import rank_info
from weightscope.checks.results import Diagnostics
from weightscope.checks.tail import dragon_kings, ratio_to_shuffled
from weightscope.checks.traps import trap_matters
from weightscope.checks.verdict import decide
from weightscope.config import Thresholds
from weightscope.errors import WeightscopeError
from weightscope.linalg.rank import rounding_noise_levels, zero_tolerance
from weightscope.linalg.spectrum import SpectrumOptions, esd
from weightscope.report import (
    FitTrust,
    LayerResult,
    LikelihoodRatio,
    MPBulk,
    RankInfo,
    TrapEntry,
    Traps,
)
from weightscope.stats.fit import PowerLawFit, fit_power_law
from weightscope.stats.likelihood import (
    exponential_loglik,
    power_law_loglik,
    versus_lognormal,
    vuong,
)
from weightscope.stats.randmat import randomized_esd
from weightscope.stats.vectors import eigenvector_localization

THRESHOLDS = Thresholds()
SMALL_SHAPES = [(300, 150), (150, 150), (300, 100), (200, 100)]


# --- planted ground truth ------------------------------------------------------------------


def gaussian(shape, seed, scale=0.02):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def to_bf16(array):
    """Round float32 to bfloat16 precision (round to nearest even), kept as float32."""
    bits = np.asarray(array, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return rounded.astype(np.uint32).view(np.float32)


def pareto_spectrum(m, alpha, rng):
    """m eigenvalues with density ∝ λ^(−alpha), λ ≥ 1, one uniform draw per 1/m quantile
    stratum (so the sample follows the law closely while still varying with the seed)."""
    u = (np.arange(m) + rng.random(m)) / m
    return np.sort((1.0 - u) ** (-1.0 / (alpha - 1.0)))


def with_spectrum(n, evals, rng):
    """An n×m float32 matrix W = U diag(√(nλ)) Vᵀ (Haar U, V) whose ESD WᵀW/n is evals."""
    m = len(evals)
    u, _ = np.linalg.qr(rng.standard_normal((n, m)))
    v, _ = np.linalg.qr(rng.standard_normal((m, m)))
    return ((u * np.sqrt(n * evals)) @ v.T).astype(np.float32)


def run(matrix, stored_dtype="F32", randomize=True, seed=0, **options):
    evals = esd([matrix])
    fit = fit_power_law(evals)
    randomized = randomized_esd([matrix], seed, SpectrumOptions()) if randomize else None
    return fit, diagnose(
        [matrix], evals, fit, stored_dtype=stored_dtype, thresholds=THRESHOLDS, randomized=randomized, **options
    )


# --- random layers ---------------------------------------------------------------------------


@pytest.mark.slow
def test_gaussian_layers_are_random_like_and_trap_free_over_200_seeds():
    verdicts, traps, kings = {}, 0, 0
    for seed in range(200):
        _, result = run(gaussian(SMALL_SHAPES[seed % 4], seed))
        verdicts[result.verdict] = verdicts.get(result.verdict, 0) + 1
        traps += result.traps.count > 0
        kings += result.dragon_kings is not None and result.dragon_kings.count > 0
    assert set(verdicts) <= {"looks-untrained", "random-like", "under-trained"}, verdicts
    assert traps <= 2  # ≥ 99 % trap-free (measured: 0/200)
    assert kings == 0


def test_gaussian_layer_without_randomisation_is_still_random_like():
    for seed in range(10):
        _, result = run(gaussian((300, 150), seed), randomize=False)
        assert result.traps is None and result.shuffle_ks_distance is None
        assert (
            result.verdict == "looks-untrained" and "random-like" in result.flags and result.mp.spikes_above_edge == 0
        )


def test_an_initial_draw_looks_untrained_and_a_random_spectrum_alone_does_not():
    """ "Looks untrained" needs entries like an initial draw; a random-like spectrum alone
    describes the spectrum (SmolLM2's value projections: random-like, not untrained)."""
    rng = np.random.default_rng(0)
    draws = {
        "normal std 0.02 (initializer_range)": 0.02 * rng.standard_normal((384, 384)),
        "PyTorch default (uniform ±1/√fan_in)": rng.uniform(-1, 1, (512, 256)) / np.sqrt(256),
        "Xavier/Glorot normal": np.sqrt(2 / (300 + 150)) * rng.standard_normal((150, 300)),
    }
    for name, w in draws.items():
        result = run(w.astype(np.float32), randomize=False)[1]
        assert result.verdict == "looks-untrained" and result.init.name == name, name
        assert "looks untrained or reset" in result.reasons[0]
    for w in (0.02 * rng.laplace(size=(384, 384)), 0.02 * rng.standard_t(8, (300, 150))):
        result = run(w.astype(np.float32))[1]  # i.i.d., random spectrum, no initialiser's law
        assert result.verdict == "random-like" and result.init is None
        assert "learned structure can still sit in the singular vectors" in result.reasons[0]


def sparse_iid(i, shapes=((512, 256), (400, 400), (300, 150))):
    """Seeded sparse i.i.d. layer i: Gaussian entries kept with probability 0.5, 1, 2 or 5 %
    (i mod 4), shape i mod 3 of ``shapes``; returns (density, matrix)."""
    rng = np.random.default_rng(40_000 + i)
    density, shape = (0.005, 0.01, 0.02, 0.05)[i % 4], shapes[i % 3]
    return density, (rng.standard_normal(shape) * (rng.random(shape) < density)).astype(np.float32)


def test_sparse_iid_layers_are_random_like_and_never_read():
    """Sparse i.i.d. layers (0.5–5 % density) were never random-like (0/96: an ill-fitting MP
    edge left them spikes); now judged against their shuffled copy (measured over 48
    layers at 0.5–5 %: 21 random-like, 20 at 2–5 %), and none of these 16 gets a reading.
    Before, 3 of the 8 at 0.5–1 % read healthy from tails of 28–32 values, one at 2 % from
    a 19-value tail (`test_sparse_iid_layers_get_no_reading` measures the rates)."""
    verdicts, confidences = [], []
    for i in range(16):
        _, w = sparse_iid(i)
        result = run(w, seed=i)[1]
        verdicts.append(result.verdict)
        confidences.append(result.confidence)
    assert verdicts.count("random-like") >= 5, verdicts
    assert confidences == [None] * 16, (verdicts, confidences)


@pytest.mark.slow
def test_sparse_iid_layers_get_no_reading():
    """96 sparse i.i.d. layers (0.5, 1, 2, 5 % density; 512×256, 400², 300×150) and 24 at
    0.5–1 % of 512², 768×3072, 1024×256: at 0.5–1 % density no reading in ≥ 95 %, and none
    from a tail shorter than `trust_min_tail`. Measured: no reading in all 120. Before the
    shuffled-copy rules: 5 of 96 read from short tails (11–19 values, 0–2 above the copy's
    top); then 27 of the 48 at 0.5–1 % and 6 at 2 % from long tails (20–133 values), which
    sit on the tail their copy has too (`checks.verdict.shuffled_tail`)."""
    sparse_read, short = [], []
    layers = [(*sparse_iid(i), i) for i in range(96)]
    big = ((512, 512), (768, 3072), (1024, 256))
    layers += [(*sparse_iid(i, big), i) for i in range(48) if i % 4 < 2]
    for density, w, i in layers:
        fit, result = run(w, seed=i)
        if result.confidence is None:
            continue
        if density <= 0.01:
            sparse_read.append((i, w.shape, fit.num_tail, result.verdict))
        if fit.num_tail < THRESHOLDS.trust_min_tail:
            short.append((i, fit.num_tail, result.verdict))
    assert len(sparse_read) <= 0.05 * 72, sparse_read
    assert short == [], short


# --- correlation traps ---------------------------------------------------------------------


@pytest.mark.slow
def test_planted_large_entries_are_trapped_and_located_over_200_seeds():
    for seed in range(200):
        rng = np.random.default_rng(1000 + seed)
        shape = SMALL_SHAPES[seed % 4]
        w = gaussian(shape, seed)
        count = 1 + seed % 3
        rows = rng.choice(shape[0], count, replace=False)
        cols = rng.choice(shape[1], count, replace=False)
        w[rows, cols] = 0.02 * 40 * rng.choice([-1.0, 1.0], count)
        fit, result = run(w)
        assert result.traps.count >= 1 and result.traps.max_rand_eval > result.traps.bulk_edge
        located = {(entry.row, entry.col) for entry in result.traps.entries}
        assert set(zip(rows.tolist(), cols.tolist())) <= located, seed
        assert len(result.traps.entries) <= THRESHOLDS.trap_max_entries
        for entry in result.traps.entries:
            assert w[entry.row, entry.col] == pytest.approx(entry.value)
        assert result.traps.entries[0].sigmas > 30
        # A trap is the verdict only where it changes alpha's reading; it is always flagged.
        matters = trap_matters(result.traps, fit, result.mp, result.shuffle_ks_distance, THRESHOLDS)
        assert (result.verdict == "correlation-trap") == matters
        assert ("correlation-trap" if matters else "outsized-entries") in result.flags


def test_iid_entries_with_a_finite_fourth_moment_give_no_trap():
    """Before: Student-t(5) entries trapped in ~9-10 % of layers (the 4-TW margin assumes
    Gaussian fluctuations). Q from 1 to 8."""
    draws = {
        "gaussian": lambda rng, shape: rng.standard_normal(shape),
        "uniform": lambda rng, shape: rng.uniform(-1.0, 1.0, shape),
        "t(5)": lambda rng, shape: rng.standard_t(5, shape),
        "t(6)": lambda rng, shape: rng.standard_t(6, shape),
    }
    shapes = [(128, 128), (256, 128), (512, 128), (1024, 128), (256, 256)]
    for name, draw in draws.items():
        trapped = sum(
            run((0.02 * draw(np.random.default_rng(seed), shapes[seed % 5])).astype(np.float32), seed=seed)[
                1
            ].traps.count
            > 0
            for seed in range(25)
        )
        assert trapped == 0, name


def planted_entry(sigmas, seed, n=512):
    """A Gaussian n² layer with one entry at ``sigmas`` (sign at random), and where."""
    rng = np.random.default_rng(10_000 + seed)
    w = rng.standard_normal((n, n)).astype(np.float32)
    row, col = int(rng.integers(n)), int(rng.integers(n))
    w[row, col] = sigmas * rng.choice([-1.0, 1.0])
    return w, (row, col)


def test_one_thirty_sigma_entry_at_512_squared_is_a_trap_verdict():
    """Before: located 37/40, trap verdict 15/40 (40σ: 12/40) — two fits to the MP
    bulk's edge were compared. Now the entry makes the spike, which is gone without it."""
    for seed in range(4):
        w, where = planted_entry(30, seed)
        _, result = run(w, seed=seed)
        assert (result.traps.entries[0].row, result.traps.entries[0].col) == where
        assert result.verdict == "correlation-trap", seed
        assert result.traps.lambda_max_without <= result.mp.bulk_edge < float(esd([w])[-1])


@pytest.mark.slow
def test_thirty_and_forty_sigma_entries_are_trap_verdicts_in_95_percent():
    """One planted 30σ / 40σ entry in a Gaussian 512² layer, 40 seeds each: trap verdict
    in ≥ 95 % (38/40). Measured: 38/40 (30σ; the other two entries' eigenvalues sit at the
    BBP limit, within 4 Tracy–Widom scales of the fitted edge, and those layers read
    looks-untrained) and 40/40 (40σ). Before outsized entries were judged by the spike
    they make: 15/40 and 12/40, so the test fails on that rule."""
    for sigmas in (30, 40):
        trapped = sum(
            run(planted_entry(sigmas, seed)[0], seed=seed)[1].verdict == "correlation-trap" for seed in range(40)
        )
        assert trapped >= 38, (sigmas, trapped)


def scale_mixture(share, scale, seed, n=512):
    """i.i.d. Gaussian entries, a ``share`` of them (at random) ``scale`` times larger: no structure."""
    rng = np.random.default_rng(20_000 + seed)
    w = rng.standard_normal((n, n))
    w[rng.random((n, n)) < share] *= scale
    return w.astype(np.float32)


def test_iid_scale_mixtures_are_no_trap():
    """Before: 0.1 % and 0.3 % of the entries at 10× were traps in 20/20 layers at 512²
    (a tail exponent < 3 listed the largest entries without a test)."""
    for seed, share in enumerate((0.001, 0.003, 0.001)):
        _, result = run(scale_mixture(share, 10.0, seed), seed=seed)
        assert result.verdict != "correlation-trap" and "outsized-entries" not in result.flags, seed


@pytest.mark.slow
def test_iid_scale_mixtures_give_under_1_percent_false_traps():
    """0.03–1 % of entries at 3, 5, 10×: 240 layers at 512², at most 2 false traps (< 1 %).
    Measured: 0 of 240 (verdicts: 105 looks-untrained, 117 random-like, 11 no-reading,
    7 under-trained). Before the entries' tail was tested: 40 of 240 (0.1 % and 0.3 % at
    10×: 20/20 each), so the test fails on that rule."""
    false = 0
    for share in (0.0003, 0.001, 0.003, 0.01):
        for scale in (3.0, 5.0, 10.0):
            false += sum(
                run(scale_mixture(share, scale, seed), seed=seed)[1].verdict == "correlation-trap" for seed in range(20)
            )
    assert false <= 2


def test_outsized_entries_are_surfaced_with_their_locations_whatever_the_fit():
    """A random layer with an 80σ and a 100σ entry: both located, and a trap verdict (it
    was untrusted-fit with the entries only a flag)."""
    rng = np.random.default_rng(30_000)
    w = rng.standard_normal((512, 512)).astype(np.float32)
    w[3, 7], w[100, 200] = 80.0, -100.0
    _, result = run(w)
    assert [(e.row, e.col) for e in result.traps.entries[:2]] == [(100, 200), (3, 7)]
    assert all(e.dominant for e in result.traps.entries[:2])
    assert result.verdict == "correlation-trap"
    assert "(100, 200)" in result.reasons[0] and "(3, 7)" in result.reasons[0]


def test_few_level_layers_have_no_outsized_entries_and_are_analysed():
    """Ternary (BitNet-style ±s, 0) and 6-level integer layers: the top deviations are all
    one value, so there is no entries' tail and nothing outsized (the Hill estimate divided
    by zero and the layer failed before)."""
    rng = np.random.default_rng(7)
    for w in (
        (0.02 * rng.integers(-1, 2, (512, 256))).astype(np.float32),
        rng.integers(-3, 3, (300, 200)).astype(np.float32),
    ):
        _, result = run(w)
        assert result.traps.entries == [] and result.traps.entry_tail_index is None
        assert result.traps.count == 0 and not result.traps.makes_spike


def test_a_trap_that_does_not_move_alpha_is_reported_not_judged():
    """Three 100σ entries in a trained-like layer (planted α = 3): alpha_without recovers
    the planted alpha, and the trap moves it by < 2 standard errors, so it is no verdict."""
    for seed in range(3):
        rng = np.random.default_rng(seed)
        w = with_spectrum(400, pareto_spectrum(200, 3.0, rng) * 1e-4, rng)
        scale = 1.4826 * np.median(np.abs(w - np.median(w)))
        w[rng.choice(400, 3, replace=False), rng.choice(200, 3, replace=False)] = 100 * scale
        _, result = run(w)
        assert result.traps.count > 0 and len(result.traps.entries) == 3
        assert result.traps.alpha_without == pytest.approx(3.0, abs=0.1)
        assert "outsized-entries" in result.flags and result.verdict != "correlation-trap"


def test_conv_trap_entries_index_the_kernel_reshaped_to_out_by_rest():
    rng = np.random.default_rng(3)
    kernel = (0.02 * rng.standard_normal((160, 80, 3, 3))).astype(np.float32)
    kernel[17, 41, 2, 1] = 2.0
    matrices = layer_matrices(kernel)
    evals = esd(matrices)
    randomized = randomized_esd(matrices, 0, SpectrumOptions())
    result = diagnose(
        matrices, evals, fit_power_law(evals), stored_dtype="F32", thresholds=THRESHOLDS, randomized=randomized
    )
    top = result.traps.entries[0]
    assert (top.row, top.col) == (17, 41 * 9 + 2 * 3 + 1)
    assert kernel.reshape(160, -1)[top.row, top.col] == top.value == 2.0


def test_heavy_tailed_entries_are_a_trap_not_a_trained_layer():
    # i.i.d. Student-t entries: a heavy ESD tail made by a few huge weights, no correlations.
    for seed in range(5):
        w = np.random.default_rng(seed).standard_t(1.5, (300, 150)).astype(np.float32)
        _, result = run(w)
        assert result.verdict == "correlation-trap"


def test_randomisation_is_deterministic_in_the_seed():
    w = gaussian((300, 150), 0)
    w[5, 5] = 0.5
    first = run(w, seed=11)[1]
    assert run(w, seed=11)[1] == first
    assert run(w, seed=12)[1].traps.max_rand_eval != first.traps.max_rand_eval


# --- rank collapse ---------------------------------------------------------------------------


def to_f16(array):
    return np.asarray(array, dtype=np.float32).astype(np.float16).astype(np.float32)


def conditioned(n, m, kappa, rng):
    """A full-rank n×m matrix with log-spaced singular values, condition number kappa."""
    u, _ = np.linalg.qr(rng.standard_normal((n, m)))
    v, _ = np.linalg.qr(rng.standard_normal((m, m)))
    return ((u * (np.logspace(0, -np.log10(kappa), m) * 0.02 * np.sqrt(n))) @ v.T).astype(np.float32)


def rank_of(w, stored, eig_dtype="float64"):
    evals = esd([w], SpectrumOptions(eig_dtype))
    return rank_info([w], evals, stored, eig_dtype, THRESHOLDS)


@pytest.mark.parametrize("stored, round_", [("BF16", to_bf16), ("F16", to_f16), ("F32", np.float32)])
def test_exact_low_rank_product_is_rank_collapsed_with_its_rank(stored, round_):
    """The rounding of a rank-20 product is not rank: numerical rank 20 in every dtype."""
    for seed in range(8):
        rng = np.random.default_rng(seed)
        w = round_(rng.standard_normal((512, 20)) @ rng.standard_normal((20, 256)) / np.sqrt(20)).astype(np.float32)
        _, result = run(w, stored_dtype=stored, randomize=False)
        assert result.verdict == "rank-collapsed"
        assert result.rank.numerical_rank == 20 and result.rank.rank_loss == pytest.approx(1 - 20 / 256)


def test_float32_low_rank_plus_noise_agrees_with_numpy_matrix_rank():
    """numpy's convention for F32 weights: noise 2e-5 of the entry scale is not rank."""
    for seed in range(8):
        rng = np.random.default_rng(seed)
        w = rng.standard_normal((512, 20)) @ rng.standard_normal((20, 256)) / np.sqrt(20)
        w = (w + 2e-5 * rng.standard_normal(w.shape)).astype(np.float32)
        info = rank_of(w, "F32")
        assert info.numerical_rank == np.linalg.matrix_rank(w) == 20 and info.collapsed


@pytest.mark.parametrize("stored, round_, kappa", [("BF16", to_bf16, 1e3), ("F16", to_f16, 1e4)])
def test_full_rank_16_bit_layers_with_steep_spectra_are_not_collapsed(stored, round_, kappa):
    """Measured before: 16/16 (BF16, κ 1e3) and 16/16 (F16, κ 1e4) called collapsed."""
    false = sum(
        rank_of(round_(conditioned(512, 256, kappa, np.random.default_rng(seed))), stored).collapsed
        for seed in range(16)
    )
    assert false == 0


def test_square_gaussian_bf16_with_large_spikes_is_not_collapsed():
    """A tolerance relative to λmax grew with the spikes; the rounding-noise floor does not."""
    rng = np.random.default_rng(3)
    w = (
        gaussian((300, 300), 3)
        + 0.5 * np.outer(rng.standard_normal(300), rng.standard_normal(300)).astype(np.float32) / 300
    )
    w[:, :3] *= 40.0
    info = rank_of(to_bf16(w), "BF16")
    assert not info.collapsed and info.rank_loss < 0.02


@pytest.mark.parametrize("round_, bits", [(to_bf16, 8), (to_f16, 11)])
def test_rounding_noise_level_matches_the_rounding_errors_own(round_, bits):
    """The simulated level against the top eigenvalue of the true error fl(W) − W, on an
    evenly spread (Gaussian) and a strongly heteroscedastic (rank-1) matrix: never under
    it beyond the power iteration's shortfall, at most 1.4× over it (measured: 1.00–1.32×;
    a value rounded up into the next binade is given that binade's ulp)."""
    rng = np.random.default_rng(0)
    for w in (
        (0.02 * rng.standard_normal((400, 300))).astype(np.float32),
        (0.02 * np.outer(rng.standard_normal(400), rng.standard_normal(300))).astype(np.float32),
    ):
        error = round_(w).astype(np.float64) - w
        truth = np.linalg.norm(error, 2) ** 2 / 400
        assert 0.97 * truth <= rounding_noise_levels([round_(w)], bits)[0] <= 1.4 * truth


@pytest.mark.parametrize("stored, round_", [("BF16", to_bf16), ("F16", to_f16)])
def test_16_bit_products_of_rank_1_to_5_read_their_rank(stored, round_):
    """Heteroscedastic rounding noise (ulp follows |w|) of a low-rank product. Before: the
    mean-variance edge read rank 1–5 as 5–23 (8 seeds × 4 shapes)."""
    shapes = [(512, 256), (256, 256), (300, 150), (1024, 256)]
    for rank in (1, 2, 3, 5):
        for seed in range(4):
            rng = np.random.default_rng(100 + seed)
            n, m = shapes[seed]
            w = round_((0.02 * rng.standard_normal((n, rank)) @ rng.standard_normal((rank, m))).astype(np.float32))
            assert rank_of(w, stored).numerical_rank == rank, (rank, seed)


def test_float64_low_rank_plus_tiny_noise_is_judged_at_matrix_ranks_floor():
    """F64 weights: noise 1e-6 on a rank-20 product is rank to numpy's matrix_rank (its
    floor ~1e-26·λmax lies under any Gram solver's). Before: rank 20, collapsed, 33/33."""
    shapes = [(512, 256), (256, 256), (300, 150)]
    for seed in range(6):
        rng = np.random.default_rng(seed)
        n, m = shapes[seed % 3]
        w = rng.standard_normal((n, 20)) @ rng.standard_normal((20, m)) + 1e-6 * rng.standard_normal((n, m))
        for eig_dtype in ("float64", "float32"):
            info = rank_of(w, "F64", eig_dtype)
            assert info.numerical_rank == np.linalg.matrix_rank(w) == m and not info.collapsed
    exact = np.random.default_rng(9).standard_normal((300, 20)) @ np.random.default_rng(10).standard_normal((20, 150))
    assert rank_of(exact, "F64").numerical_rank == np.linalg.matrix_rank(exact) == 20


def diagnosed_kernel(kernel):
    """`diagnose` of a stored float32 conv kernel, solved in float64."""
    matrices = layer_matrices(kernel)
    evals = esd(matrices, SpectrumOptions("float64"))
    return diagnose(
        matrices,
        evals,
        fit_power_law(evals),
        stored_dtype="F32",
        thresholds=THRESHOLDS,
        spectrum=SpectrumOptions("float64"),
    )


def test_dead_channels_are_their_own_finding_and_rank_is_judged_on_the_rest():
    """A trained-like conv whose 16 of 64 input channels and 2 output channels decayed to
    ~1e-6 of the rest (CRAFT's pattern): dead-channels, not rank-collapsed."""
    rng = np.random.default_rng(4)
    kernel = (0.05 * rng.standard_normal((64, 64, 3, 3))).astype(np.float32)
    dead_in, dead_out = sorted(rng.choice(64, 16, replace=False).tolist()), [5, 40]
    kernel[:, dead_in] *= 1e-5
    kernel[dead_out] *= 1e-5
    result = diagnosed_kernel(kernel)
    assert result.rank.dead_cols == dead_in and result.rank.dead_rows == dead_out
    assert result.rank.rank_loss > THRESHOLDS.rank_loss_max  # the dead channels' eigenvalues are zero ...
    assert not result.rank.collapsed and result.rank.rank_loss_live == 0.0  # ... the rest is full rank
    assert result.verdict != "rank-collapsed" and "dead-channels" in result.flags
    reason = result.reasons[result.flags.index("dead-channels")]
    assert "16 input channels" in reason and "2 output channels" in reason
    # a collapsed live rest is still collapsed, with the dead channels beside it
    kernel[:, :, :, :] = np.einsum("oi,ij->oj", kernel.reshape(64, -1)[:, :5], rng.standard_normal((5, 576))).reshape(
        kernel.shape
    )
    kernel[:, dead_in] = 0.0
    result = diagnosed_kernel(kernel)
    assert result.verdict == "rank-collapsed" and result.rank.dead_cols == dead_in


def test_healthy_layers_have_no_dead_channels():
    for seed in range(10):
        w = gaussian(SMALL_SHAPES[seed % 4], seed)
        w[seed] *= 0.1  # a weak channel is not a dead one
        info = rank_of(w, "F32")
        assert info.dead_rows == [] and info.dead_cols == []


def test_channel_norms_walk_blocks_and_leave_the_weights_alone(monkeypatch):
    """Row and column sums of squares over several kernel positions, a few rows at a time
    (a block size that does not divide the rows), equal the whole-matrix float64 sums; a
    float64 layer's blocks are views of it, and it comes back unchanged."""
    from weightscope.checks import rank as rank_checks

    monkeypatch.setattr(rank_checks, "ELEMENTWISE_BLOCK_BYTES", 7 * 8 * 40)  # 7 rows of 40
    rng = np.random.default_rng(12)
    for dtype in (np.float64, np.float32):
        matrices = [rng.standard_normal((53, 40)).astype(dtype) for _ in range(3)]
        before = [matrix.copy() for matrix in matrices]
        rows, cols = rank_checks.channel_squares(matrices)
        squares = [np.square(matrix.astype(np.float64)) for matrix in before]
        np.testing.assert_allclose(rows, sum(square.sum(axis=1) for square in squares), rtol=1e-13)
        np.testing.assert_allclose(cols, sum(square.sum(axis=0) for square in squares), rtol=1e-13)
        assert all(np.array_equal(matrix, copy) for matrix, copy in zip(matrices, before))


def test_auto_precision_rank_loss_equals_float64s(tmp_path):
    """ "auto" solves in float32 but counts in float64 where the rank could differ from float64's."""
    from weightscope.analysis.pipeline import analyze
    from weightscope.checkpoint.writer import write_safetensors

    rng = np.random.default_rng(5)
    w = conditioned(512, 256, 1e4, rng)
    w[:, :13] = (1e-9 * rng.standard_normal((512, 13))).astype(np.float32)  # 13 directions at ~zero: loss 0.051
    path = tmp_path / "m.safetensors"
    write_safetensors(path, {"layer.weight": w})
    losses = {
        dtype: analyze(path, eig_dtype=dtype, min_evals=10).layers[0].rank.rank_loss for dtype in ("auto", "float64")
    }
    assert losses["auto"] == losses["float64"] > 0


@pytest.mark.parametrize("stored", ["F32", "BF16", "F16", "F8_E4M3"])
@pytest.mark.parametrize("shape", [(512, 256), (300, 300)])
def test_full_rank_gaussian_is_not_collapsed(stored, shape):
    w = to_bf16(gaussian(shape, 1)) if stored == "BF16" else gaussian(shape, 1)
    info = rank_of(w, stored)
    assert not info.collapsed and info.rank_loss < THRESHOLDS.rank_loss_max


def test_unknown_stored_dtype_is_a_one_line_error():
    with pytest.raises(WeightscopeError, match="unknown stored dtype 'I8'"):
        zero_tolerance([np.ones((4, 4))], 1.0, "I8", "float64", THRESHOLDS.rank_noise_factor)


# --- heavy-tailed (trained-like) layers --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [2.5, 3.0, 3.5, 4.0])
def test_planted_power_law_spectrum_gives_its_alpha_and_a_solid_reading(alpha):
    for seed in range(8):
        rng = np.random.default_rng(seed)
        fit, result = run(with_spectrum(600, pareto_spectrum(300, alpha, rng), rng))
        assert fit.alpha == pytest.approx(alpha, abs=0.3)
        assert result.confidence == "solid", result.reasons
        assert result.verdict == "healthy" and result.flags == []
        assert result.traps.count == 0 and result.dragon_kings.count == 0
        assert result.shuffle_ks_distance > THRESHOLDS.shuffle_ks_max


@pytest.mark.slow
def test_iid_power_law_spectra_give_alpha_within_0_3_in_95_percent():
    # Pure sampling noise of an i.i.d. Pareto ESD (M = 300): SE(alpha) ≈ 0.09, and the
    # KS choice of xmin now and then settles on a shorter tail (measured: 195/200).
    within = sum(
        abs(fit_power_law((1 - np.random.default_rng(seed).random(300)) ** (-1 / 1.5)).alpha - 2.5) <= 0.3
        for seed in range(200)
    )
    assert within >= 190


# --- dragon kings -------------------------------------------------------------------------------


def planted_kings(seed, alpha, m=300):
    rng = np.random.default_rng(seed)
    count = 1 + seed % 3
    clean = pareto_spectrum(m - count, alpha, rng)
    # Each king would be the maximum of about 1000 times as many draws as the tail holds.
    kings = clean[-1] * (1000 * rng.uniform(0.5, 2.0, count)) ** (1 / (alpha - 1))
    return clean, np.sort(np.concatenate([clean, kings])), count


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [2.0, 3.0, 4.0])
def test_planted_dragon_kings_are_found_and_removed_over_200_seeds(alpha):
    exact = 0
    for seed in range(200):
        clean, evals, count = planted_kings(seed, alpha)
        fit = fit_power_law(evals)
        kings = dragon_kings(evals, fit, THRESHOLDS)
        assert kings.count >= count
        exact += kings.count == count
        if kings.count == count:
            assert kings.alpha_without == fit_power_law(clean).alpha
        assert kings.alpha_without == pytest.approx(alpha, abs=0.3)
        assert fit.alpha < kings.alpha_without  # the kings bent the fit
    assert exact >= 196  # measured: 199/200; one genuine maximum was as extreme as p < 0.01


@pytest.mark.slow
def test_dragon_king_false_rate_matches_its_level_on_clean_tails():
    false = 0
    for seed in range(500):
        evals = np.sort((1 - np.random.default_rng(seed).random(300)) ** (-1 / 1.5))
        false += dragon_kings(evals, fit_power_law(evals), THRESHOLDS).count > 0
    assert false <= 12  # level 1 %: about 5 of 500 expected (measured 10/1000)


@pytest.mark.slow
def test_dragon_kings_are_reported_but_do_not_change_the_verdict():
    rng = np.random.default_rng(4)
    spectrum = np.concatenate([pareto_spectrum(297, 3.0, rng), [4e3, 6e3, 9e3]])
    _fit, result = run(with_spectrum(600, np.sort(spectrum), rng))
    assert result.dragon_kings.count == 3
    assert result.dragon_kings.alpha_without == pytest.approx(3.0, abs=0.3)
    assert "dragon-kings" in result.flags
    assert result.verdict not in ("random-like", "correlation-trap", "rank-collapsed")


# --- likelihood-ratio tests against the powerlaw package ----------------------------------------


def llr_samples():
    for seed in range(4):
        rng = np.random.default_rng(seed)
        yield "pareto", (1 - rng.random(300)) ** (-1 / 1.5), 1.0
        yield "pareto-steep", (1 - rng.random(300)) ** (-1 / 3), 1.0
        yield "lognormal", rng.lognormal(0, 1, 400), 1.5
        yield "exponential", 2 + rng.exponential(1, 300), 2.0
        g = rng.standard_normal((300, 150))
        mp = np.linalg.eigvalsh(g.T @ g / 300)
        yield "mp", mp, float(np.quantile(mp, 0.8))


@pytest.mark.parametrize(("name", "data", "xmin"), list(llr_samples()))
def test_likelihood_ratios_match_powerlaw(name, data, xmin):
    """Tolerance: R to 1e-2·max(1, |R|), p to 5e-3 (powerlaw optimises with tol 1e-4).

    Where the best lognormal degenerates into the power law itself (R = 0 here),
    powerlaw's optimiser wanders to μ ≈ −500 where its erfc normaliser underflows and
    reports a spurious R < 0; there we check instead that the lognormal powerlaw found
    is, evaluated exactly, no better than the power law.
    """
    import powerlaw
    import scipy.special

    data = np.sort(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = powerlaw.Fit(data, xmin=xmin, parameter_ranges={"alpha": [1, None]}, verbose=False)
        alpha = reference.power_law.alpha
        tail = data[data >= xmin]
        power_law = power_law_loglik(tail, alpha, xmin)
        mine = {
            "lognormal": versus_lognormal(tail, xmin, power_law),
            "exponential": vuong(power_law, exponential_loglik(tail, xmin)),
        }
        for alternative, result in mine.items():
            r_ref, p_ref = reference.distribution_compare("power_law", alternative)
            if alternative == "lognormal" and result.R == 0.0:
                mu, sigma = reference.lognormal.mu, reference.lognormal.sigma
                z = (np.log(tail) - mu) / sigma
                exact = np.sum(
                    -np.log(tail)
                    - np.log(sigma)
                    - 0.5 * np.log(2 * np.pi)
                    - 0.5 * z * z
                    - scipy.special.log_ndtr(-(np.log(xmin) - mu) / sigma)
                )
                assert exact <= np.sum(power_law) + 1e-6
                assert result.p == 1.0
                continue
            assert result.R == pytest.approx(r_ref, abs=1e-2 * max(1.0, abs(r_ref)))
            assert result.p == pytest.approx(p_ref, abs=5e-3)


# --- eigenvector localisation ---------------------------------------------------------------


def test_localised_spikes_have_localised_tail_vectors():
    rng = np.random.default_rng(0)
    n, m = 600, 300
    w = rng.standard_normal((n, m))
    for _k in range(5):  # five learned directions, each on 4 input coordinates
        v = np.zeros(m)
        v[rng.choice(m, 4, replace=False)] = 0.5
        w += 3.0 * np.outer(rng.standard_normal(n), v)
    stats = eigenvector_localization([w], tail_start=6.0, options=SpectrumOptions())
    # Haar-like bulk vectors: E Σv⁴ = 3/(M + 2), entropy/ln M ≈ 1 − (2 − γ − ln 2)/ln M.
    assert stats.bulk_localization == pytest.approx(3 / (m + 2), rel=0.1)
    assert stats.bulk_entropy == pytest.approx(1 - (2 - np.euler_gamma - np.log(2)) / np.log(m), abs=0.01)
    assert stats.tail_localization > 10 * stats.bulk_localization
    assert stats.tail_entropy < stats.bulk_entropy
    _, result = run(w.astype(np.float32), vectors=True)
    assert result.vectors is not None and result.vectors.tail_localization > result.vectors.bulk_localization
    assert run(w.astype(np.float32))[1].vectors is None


# --- the verdict -----------------------------------------------------------------------------


def good_inputs():
    fit = PowerLawFit(status="ok", alpha=3.0, xmin=1.0, xmax=50.0, D=0.03, sigma=0.1, num_tail=100)
    mp = MPBulk(sigma2=1.0, bulk_min=0.1, bulk_edge=3.0, spikes_above_edge=40, bulk_edge_ratio=0.06, ks=0.3)
    traps = Traps(count=0, max_rand_eval=2.9, bulk_edge=3.0)
    rank = RankInfo(numerical_rank=300, rank_loss=0.0, collapsed=False)
    ratio = LikelihoodRatio(R=1.0, p=0.5)
    trust = FitTrust(True, True, True, 0.05, ratio, ratio)
    return {
        "fit": fit,
        "mp": mp,
        "shuffle_ks_distance": 0.4,
        "traps": traps,
        "rank": rank,
        "kings": None,
        "trust": trust,
    }


def verdict_of(**changes):
    inputs = good_inputs() | changes
    return decide(
        inputs["fit"],
        inputs["mp"],
        inputs["shuffle_ks_distance"],
        inputs["traps"],
        inputs["rank"],
        inputs["kings"],
        inputs["trust"],
        stored_dtype="BF16",
        thresholds=THRESHOLDS,
    )


def test_verdict_precedence():
    base = good_inputs()
    collapsed = RankInfo(numerical_rank=20, rank_loss=0.9, collapsed=True)
    trapped = Traps(count=2, max_rand_eval=9.0, bulk_edge=3.0, entries=[TrapEntry(1, 2, 5.0, 40.0)], makes_spike=True)
    unstable = dataclasses.replace(base["trust"], stable=False, alpha_spread=0.8)
    failed = PowerLawFit(status="failed", reason="too few eigenvalues")
    low = dataclasses.replace(base["fit"], alpha=1.5)
    high = dataclasses.replace(base["fit"], alpha=7.5)
    assert verdict_of().verdict == "healthy"
    assert verdict_of(rank=collapsed, traps=trapped, shuffle_ks_distance=0.01).verdict == "rank-collapsed"
    assert verdict_of(traps=trapped, shuffle_ks_distance=0.01, trust=unstable).verdict == "correlation-trap"
    spikeless = dataclasses.replace(base["mp"], spikes_above_edge=0)
    assert verdict_of(shuffle_ks_distance=0.01, trust=unstable, fit=high, mp=spikeless).verdict == "random-like"
    assert verdict_of(shuffle_ks_distance=0.01).verdict == "healthy"  # spikes above the edge: never random-like
    bulk_shaped = dataclasses.replace(base["mp"], ks=0.05)  # MP-shaped, tail from xmin = 1 < edge 3
    edge = verdict_of(mp=bulk_shaped)
    assert (edge.verdict, edge.flags, edge.confidence) == ("no-reading", ["bulk-edge-tail"], None)
    spiky = dataclasses.replace(bulk_shaped, spikes_above_edge=60)  # 60 of the 100 tail values above the edge
    assert (verdict_of(mp=spiky).verdict, verdict_of(mp=spiky).confidence) == ("healthy", "solid")
    assert verdict_of(fit=failed, trust=None).verdict == "no-reading"  # no tail is no reading, not a failure
    assert verdict_of(trust=unstable, fit=low).verdict == "no-reading"
    assert verdict_of(fit=low).verdict == "over-trained"
    assert verdict_of(fit=high).verdict == "under-trained"
    assert set(vocabulary.VERDICTS) == {
        "healthy",
        "under-trained",
        "over-trained",
        "random-like",
        "correlation-trap",
        "rank-collapsed",
        "no-reading",
        "failed",
        "looks-untrained",
    }


def test_a_rejected_power_law_with_a_stable_alpha_is_read_approximately():
    """The exact power law rejected (KS, a better lognormal, a tail too short to test)
    but alpha stable within its error: the reading stands, marked approximate."""
    rejected = dataclasses.replace(
        good_inputs()["trust"],
        tail_ok=False,
        ks_ok=False,
        ks_distance=0.2,
        ks_critical=0.1,
        vs_lognormal=LikelihoodRatio(R=-4.0, p=0.01),
    )
    decision = verdict_of(trust=rejected)
    assert (decision.verdict, decision.confidence) == ("healthy", "approximate")
    assert decision.flags == ["small-tail", "ks-reject", "lognormal-better"]
    assert "approximate" in decision.reasons[0]
    assert verdict_of().confidence == "solid"
    low = verdict_of(trust=rejected, fit=dataclasses.replace(good_inputs()["fit"], alpha=1.5))
    assert (low.verdict, low.confidence) == ("over-trained", "approximate")
    tiny = verdict_of(fit=dataclasses.replace(good_inputs()["fit"], num_tail=6))
    assert (tiny.verdict, tiny.flags[0]) == ("no-reading", "tiny-tail")


def test_a_short_tail_the_shuffled_copy_reaches_has_no_reading():
    """A tail of 10–19 values is read (approximately) only when more than a quarter of it
    rises above the shuffled copy's largest eigenvalue; without a shuffle it is read."""
    fit = dataclasses.replace(good_inputs()["fit"], num_tail=16)
    short = dataclasses.replace(good_inputs()["trust"], tail_ok=False)

    def read(above):
        return verdict_of(fit=fit, trust=dataclasses.replace(short, tail_above_shuffled=above))

    assert (read(None).verdict, read(None).confidence) == ("healthy", "approximate")
    assert (read(5).verdict, read(5).confidence) == ("healthy", "approximate")
    shuffled = read(4)
    assert (shuffled.verdict, shuffled.flags[0], shuffled.confidence) == ("no-reading", "shuffled-tail", None)
    assert "4 of the tail's 16" in shuffled.reasons[0]
    # a long tail is held to it only where the copy has a tail of its own that this one
    # sits on (`test_a_long_tail_on_the_shuffled_copys_tail_has_no_reading`)
    long = dataclasses.replace(good_inputs()["trust"], tail_above_shuffled=0)
    assert verdict_of(trust=long).confidence == "solid"


def test_a_long_tail_on_the_shuffled_copys_tail_has_no_reading():
    """A tail of 20 or more with at most a quarter above the copy's top has no reading
    when the copy rises above its own MP edge and the tail sits on the copy's (geometric
    mean ratio at the same ranks within [1/1.15, 1.15]); a copy within its edge, a tail
    above the copy's rank by rank (outlier-dimension layers: 1.2–1.8) or one with its top
    far above and the rest under it (0.68) keep their reading."""
    fit = dataclasses.replace(good_inputs()["fit"], num_tail=40)

    def read(above=2, ratio=1.05, beyond=True):
        trust = dataclasses.replace(
            good_inputs()["trust"], tail_above_shuffled=above, tail_over_shuffled=ratio, shuffled_beyond_mp=beyond
        )
        return verdict_of(fit=fit, trust=trust)

    on_copy = read()
    assert (on_copy.verdict, on_copy.flags[0], on_copy.confidence) == ("no-reading", "shuffled-tail", None)
    assert "1.05× the copy's" in on_copy.reasons[0] and "2 of the tail's 40" in on_copy.reasons[0]
    assert read(ratio=1 / 1.14).confidence is None and read(above=10).confidence is None
    for kept in (read(beyond=False), read(beyond=None), read(ratio=1.2), read(ratio=0.68), read(above=11)):
        assert (kept.verdict, kept.confidence) == ("healthy", "solid")


def test_ratio_to_shuffled_is_the_geometric_mean_over_the_tails_ranks():
    shuffled = np.array([0.0, 0.5, 1.0, 2.0, 4.0])
    assert ratio_to_shuffled(np.array([2.0, 4.0, 16.0]), shuffled) == pytest.approx((2 * 2 * 4) ** (1 / 3))
    assert ratio_to_shuffled(np.array([1.0, 2.0]), np.array([0.0, 0.0])) is None


def measure_readings():
    """scripts/measure_readings.py, whose planted spectra the docs' table of readings is
    measured on (one generator for the table and the test)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "measure_readings.py"
    spec = importlib.util.spec_from_file_location("measure_readings", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("alpha", [2.5, 4.0])
@pytest.mark.parametrize("n", [50, 100, 200, 500])
def test_exact_power_laws_of_50_points_or_more_get_no_reading_in_at_most_10_percent(alpha, n):
    """Exact power-law tails of n points (xmin 1) on a Marchenko–Pastur body, 100 seeded
    draws per cell (scripts/measure_readings.py's generator and seeds): "no reading" in
    at most 10 %. Measured: 0 of 100 in every cell. The same draws under the rule before
    readings had a confidence (every test of the exact power law had to pass, alpha's
    spread over ±3 candidates ≤ 0.3) gave no reading in 38/35/9/7 % (α = 2.5) and
    77/56/36/27 % (α = 4) at n = 50/100/200/500, so the test fails on it; the assertion on
    the previous rule keeps the draws that hard where it was clearly above 10 %."""
    from weightscope.checks.tail import fit_trust
    from weightscope.checks.verdict import reading_confidence
    from weightscope.stats.randmat import fit_mp_bulk

    script = measure_readings()
    family = f"power-law {alpha:g}"
    none = previous = 0
    for seed in range(100):
        evals, rows, cols = script.planted(family, n, np.random.default_rng(seed))
        fit = fit_power_law(evals)
        assert fit.status == "ok", seed
        mp = fit_mp_bulk(evals, rows, cols, THRESHOLDS.tw_margin)
        trust = fit_trust(evals, fit, THRESHOLDS)
        none += reading_confidence(fit, mp, trust, THRESHOLDS) is None
        previous += script.previous_rule(evals, fit, trust, mp, THRESHOLDS)
    assert none <= 10, (family, n, none)
    if alpha == 4.0 or n <= 100:
        assert previous > 10, (family, n, previous)  # the draws are hard enough to fail the old rule


def test_flags_and_reasons():
    decision = verdict_of()
    assert decision.flags == [] and len(decision.reasons) == 1 and "3.00" in decision.reasons[0]
    shaky = dataclasses.replace(
        good_inputs()["trust"],
        tail_ok=False,
        stable=False,
        alpha_spread=0.8,
        vs_lognormal=LikelihoodRatio(R=-4.0, p=0.01),
    )
    decision = verdict_of(trust=shaky, fit=dataclasses.replace(good_inputs()["fit"], alpha=1.5))
    assert decision.verdict == "no-reading" and decision.confidence is None
    assert decision.flags == ["unstable-alpha", "alpha-low", "small-tail", "lognormal-better"]
    assert all(vocabulary.finding(flag) is not None for flag in decision.flags)
    assert len(decision.reasons) == len(decision.flags)
    assert all(r.endswith(".") and "\n" not in r for r in decision.reasons)


def test_diagnostics_fill_a_layer_result():
    w = gaussian((300, 150), 0)
    _, result = run(w)
    layer = LayerResult(name="x", kind="q", block=0, shape=(300, 150), dtype="F32", status="ok")
    filled = dataclasses.replace(layer, **vars(result))
    assert filled.verdict == result.verdict and filled.mp == result.mp
    assert {f.name for f in dataclasses.fields(Diagnostics)} <= {f.name for f in dataclasses.fields(LayerResult)}


def test_failed_fit_and_non_finite_spectrum():
    w = gaussian((300, 150), 0)
    w[0, :] *= 50  # not random-like: one strong row
    evals = esd([w])
    failed = PowerLawFit(status="failed", reason="no admissible xmin")
    result = diagnose([w], evals, failed, stored_dtype="F32", thresholds=THRESHOLDS)
    assert result.fit_trust is None and result.dragon_kings is None
    assert "fit-failed" in result.flags
    broken = evals.copy()
    broken[-1] = np.nan
    result = diagnose([w], broken, failed, stored_dtype="F32", thresholds=THRESHOLDS)
    assert result.verdict == "failed" and result.flags == ["non-finite"] and result.mp is None


def test_mismatched_inputs_are_one_line_errors():
    w = gaussian((300, 150), 0)
    evals = esd([w])
    fit = fit_power_law(evals)
    with pytest.raises(WeightscopeError, match="expected 150"):
        diagnose([w], evals[:-1], fit, stored_dtype="F32", thresholds=THRESHOLDS)
    with pytest.raises(WeightscopeError, match="at least one matrix"):
        diagnose([], evals, fit, stored_dtype="F32", thresholds=THRESHOLDS)
