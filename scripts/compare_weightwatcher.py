"""Check that weightscope's WeightWatcher-named columns carry WeightWatcher's definitions:
run both on one safetensors checkpoint's 2-D weights and print how far they agree.

    pip install weightwatcher   # not a weightscope dependency; only this check needs it
    python scripts/compare_weightwatcher.py model.safetensors [--details ww.csv]

WeightWatcher runs with ``mp_fit=True, randomize=True`` (its KDE MP fit takes seconds a
layer: ~11 min for all-MiniLM-L6-v2 on a loaded 2-core machine); ``--details`` saves its
table to a CSV the first time and reads it back afterwards.

Measured on all-MiniLM-L6-v2 (39 matrices, WeightWatcher 0.7.7): |Δ log_norm| ≤ 7.4e-8,
|Δ log_spectral_norm| ≤ 3.7e-7, |Δ alpha_weighted / alpha| ≤ 3.7e-7, λmax within 8.5e-7
relative; bulk_max within 6.4e-7 relative, mp_softrank within 2.2e-15, num_spikes equal
on 39 of 39; rand_distance (a fresh shuffle on each side) a median 0.3 %, at most 9–13 %
apart over two WeightWatcher runs, and within 3 standard deviations of two shuffles'
difference on 39 of 39 in both. (alpha itself agrees on 38 of 39 layers; the fits are
compared elsewhere.)
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings

import numpy as np

#: Shuffles over which the spread of weightscope's rand_distance is measured.
SHUFFLES = 8


def weightwatcher_details(matrices: list[np.ndarray], cache: str | None):  # type: ignore[no-untyped-def]
    """WeightWatcher's details table of the matrices (read from ``cache`` when it exists)."""
    import pandas

    if cache and os.path.exists(cache):
        return pandas.read_csv(cache)
    import torch
    import weightwatcher

    modules = []
    for w in matrices:
        linear = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        linear.weight.data = torch.from_numpy(w)
        modules.append(linear)
    details = weightwatcher.WeightWatcher(model=torch.nn.Sequential(*modules)).analyze(mp_fit=True, randomize=True)
    if cache:
        details.to_csv(cache, index=False)
    return details


def shuffle_spread(w: np.ndarray) -> float:
    """Standard deviation of weightscope's rand_distance of ``w`` over `SHUFFLES` seeds."""
    from weightscope.linalg.spectrum import SpectrumOptions, esd
    from weightscope.stats.randmat import randomized_esd
    from weightscope.stats.ww_columns import jensen_shannon_distance

    evals = esd([w])
    values = [
        jensen_shannon_distance(evals, randomized_esd([w], seed, SpectrumOptions()).evals) for seed in range(SHUFFLES)
    ]
    return float(np.std(values, ddof=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--details", help="CSV of WeightWatcher's details table: written once, then read")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)
    import weightwatcher

    import weightscope
    from weightscope.checkpoint import open_checkpoint

    report = weightscope.analyze(args.checkpoint, randomize=True)
    names, matrices = [], []
    with open_checkpoint(args.checkpoint) as reader:
        for info in reader.tensors():
            if info.is_float and len(info.shape) == 2 and min(info.shape) >= 50:
                names.append(info.name)
                matrices.append(np.array(reader.read(info), dtype=np.float32))
    details = weightwatcher_details(matrices, args.details)
    worst: dict[str, float] = {}
    spikes_equal, within, rand_gaps = 0, 0, []
    for (_, row), name, w in zip(details.iterrows(), names, matrices):
        ours = report.layer(name)
        differences = {
            "log_norm": abs(ours.log_norm - row["log_norm"]),
            "log_spectral_norm": abs(ours.log_spectral_norm - row["log_spectral_norm"]),
            "alpha_weighted per unit alpha": abs(
                ours.alpha_weighted / ours.alpha - row["alpha_weighted"] / row["alpha"]
            ),
            "lambda_max relative": abs(ours.lambda_max / row["lambda_max"] - 1.0),
            "bulk_max relative": abs(ours.bulk_max / row["bulk_max"] - 1.0),
            "mp_softrank relative": abs(ours.mp_softrank / row["mp_softrank"] - 1.0),
        }
        for key, value in differences.items():
            worst[key] = max(worst.get(key, 0.0), float(value))
        spikes_equal += int(ours.num_spikes == row["num_spikes"])
        gap = abs(ours.rand_distance - row["rand_distance"])
        rand_gaps.append(gap / row["rand_distance"])
        within += int(gap <= 3.0 * np.sqrt(2.0) * shuffle_spread(w))  # two independent shuffles
    print(f"{len(names)} layers; largest difference from WeightWatcher {weightwatcher.__version__}:")
    for key, value in worst.items():
        print(f"  {key}: {value:.2g}")
    print(f"  num_spikes equal: {spikes_equal} of {len(names)}")
    print(
        f"  rand_distance (a fresh shuffle on each side): median {np.median(rand_gaps):.2%}, largest "
        f"{np.max(rand_gaps):.2%} relative; within 3 sd of the difference of two shuffles (sd over {SHUFFLES}): "
        f"{within} of {len(names)}"
    )


if __name__ == "__main__":
    main()
