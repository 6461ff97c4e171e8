"""Check that weightscope's WeightWatcher-named norms carry WeightWatcher's definitions:
run both on one safetensors checkpoint's 2-D weights and print the largest differences.

    pip install weightwatcher   # not a weightscope dependency; only this check needs it
    python scripts/compare_weightwatcher.py model.safetensors

Measured on all-MiniLM-L6-v2 (39 matrices, WeightWatcher 0.7.7): |Δ log_norm| ≤ 7.4e-8,
|Δ log_spectral_norm| ≤ 3.7e-7, |Δ alpha_weighted / alpha| ≤ 3.7e-7, λmax within 8.5e-7
relative. (alpha itself agrees on 38 of 39 layers; the fits are compared elsewhere.)
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)
    import torch
    import weightwatcher

    import weightscope
    from weightscope.checkpoint import open_checkpoint

    report = weightscope.analyze(args.checkpoint)
    names, modules = [], []
    with open_checkpoint(args.checkpoint) as reader:
        for info in reader.tensors():
            if info.is_float and len(info.shape) == 2 and min(info.shape) >= 50:
                w = np.array(reader.read(info), dtype=np.float32)
                linear = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
                linear.weight.data = torch.from_numpy(w)
                names.append(info.name)
                modules.append(linear)
    details = weightwatcher.WeightWatcher(model=torch.nn.Sequential(*modules)).analyze()
    worst: dict[str, float] = {}
    for (_, row), name in zip(details.iterrows(), names):
        ours = report.layer(name)
        differences = {
            "log_norm": abs(ours.log_norm - row["log_norm"]),
            "log_spectral_norm": abs(ours.log_spectral_norm - row["log_spectral_norm"]),
            "alpha_weighted per unit alpha": abs(
                ours.alpha_weighted / ours.alpha - row["alpha_weighted"] / row["alpha"]
            ),
            "lambda_max relative": abs(ours.lambda_max / row["lambda_max"] - 1.0),
        }
        for key, value in differences.items():
            worst[key] = max(worst.get(key, 0.0), float(value))
    print(f"{len(names)} layers; largest difference from WeightWatcher {weightwatcher.__version__}:")
    for key, value in worst.items():
        print(f"  {key}: {value:.2g}")


if __name__ == "__main__":
    main()
