"""Whether a matrix's entries look like a standard initialisation: distribution and scale.

A spectrum shaped like Marchenko–Pastur says the layer's *spectrum* cannot be told from
a random matrix's; it does not say the layer is untrained — learned structure can sit in
the singular vectors of an MP-shaped spectrum (SmolLM2-135M's value projections are
random-like, and Q4_1 rounding is only 0.7 % of their energy). "Looks untrained or reset"
needs evidence of its own: entries drawn from an initialiser, at its scale. The
initialisers checked are the ones frameworks use by default for weight matrices:

- normal, std 0.02 (Hugging Face ``initializer_range`` of GPT-2, BERT, Llama, …; timm's
  trunc_normal(0.02), whose ±2 cut is 100σ out);
- uniform ±1/√fan_in (PyTorch's ``nn.Linear``/``nn.Conv`` default, kaiming_uniform with
  a = √5: std 1/√(3·fan_in));
- normal and uniform at Xavier/Glorot's std √(2/(fan_in + fan_out)), Kaiming/He's
  √(2/fan_in) and LeCun's 1/√fan_in.

A match needs the entries' KS distance from a zero-mean normal or uniform law at their
own std within the sample's own noise (1 % level, floored at ``KS_FLOOR`` so that BF16
rounding of an initial draw still matches); the initialiser is named when the std is also
within ``SCALE_TOLERANCE`` of its. An initial draw can be scaled as a whole and keep its
law: AdamW's weight decay shrinks a layer that gets no gradient. all-MiniLM-L6-v2's
pooler, which sentence-transformers never trains, is normal (KS 0.003) at std 0.0091,
not its config's 0.02; its trained layers sit at KS ≥ 0.0064 from any normal law,
SmolLM2-135M's value projections (random-like spectra) at ≥ 0.008.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Entries sampled (seeded) for the KS distance: 100 000 resolve it to ~0.005.
SAMPLE = 100_000
#: Relative distance of the std from an initialiser's that still matches.
SCALE_TOLERANCE = 0.05
#: Smallest KS distance that still matches: BF16 rounding of a normal draw moves its CDF
#: by up to ~0.002; trained layers sit ≥ 0.01 from any initialiser's law.
KS_FLOOR = 0.005
#: KS critical coefficient at the 1 % level (c(α)/√n, c = 1.63).
_KS_1_PERCENT = 1.63
#: The error function elementwise (scipy is optional; 100 000 values take ~20 ms).
_erf = np.frompyfunc(math.erf, 1, 1)


@dataclass(frozen=True)
class InitMatch:
    """The initialiser a matrix's entries match: its name, law, std, and the fit."""

    name: str
    law: str
    std: float
    ks: float


def initialisers(fan_in: int, fan_out: int) -> list[tuple[str, str, float]]:
    """(name, law, std) of the initialisers checked, for a matrix with this fan-in/out."""
    xavier = math.sqrt(2.0 / (fan_in + fan_out))
    return [
        ("normal std 0.02 (initializer_range)", "normal", 0.02),
        ("PyTorch default (uniform ±1/√fan_in)", "uniform", 1.0 / math.sqrt(3.0 * fan_in)),
        ("Xavier/Glorot normal", "normal", xavier),
        ("Xavier/Glorot uniform", "uniform", xavier),
        ("Kaiming/He normal", "normal", math.sqrt(2.0 / fan_in)),
        ("Kaiming/He uniform", "uniform", math.sqrt(2.0 / fan_in)),
        ("LeCun normal", "normal", 1.0 / math.sqrt(fan_in)),
    ]


def match_initialiser(matrices: list[np.ndarray], seed: int = 0) -> InitMatch | None:
    """The initialiser the layer's entries look drawn from, or None.

    ``matrices`` are the layer's matrices as stored (out, in), one per conv kernel
    position: fan_in = in·positions, fan_out = out·positions.
    """
    rows, cols = matrices[0].shape
    positions = len(matrices)
    values = _sample(matrices, seed)
    if values.size < 2 or not np.all(np.isfinite(values)):
        return None
    std = float(np.sqrt(np.mean(values**2)))
    if std == 0.0 or abs(float(np.mean(values))) > 0.1 * std:
        return None
    ordered = np.sort(values)
    limit = max(_KS_1_PERCENT / math.sqrt(ordered.size), KS_FLOOR)
    distances = {law: _ks(ordered, law, std) for law in ("normal", "uniform")}
    law = min(distances, key=distances.__getitem__)
    if distances[law] > limit:
        return None
    for name, init_law, init_std in initialisers(cols * positions, rows * positions):
        if init_law == law and abs(std / init_std - 1.0) <= SCALE_TOLERANCE:
            return InitMatch(name, law, std, distances[law])
    return InitMatch(
        f"{law} entries at no standard initialiser's scale (an initial draw scaled as a whole, "
        f"e.g. by weight decay on a layer that got no gradient)",
        law,
        std,
        distances[law],
    )


def _sample(matrices: list[np.ndarray], seed: int) -> np.ndarray:
    """At most `SAMPLE` of the layer's entries in float64, drawn without replacement: the
    entries ``rng.choice`` picks from the flattened layer, gathered without building it
    (a float64 copy of an 11008×4096 matrix is 360 MB, for 100 000 values)."""
    size = matrices[0].size
    total = size * len(matrices)
    if total <= SAMPLE:
        return np.concatenate([np.ravel(matrix) for matrix in matrices]).astype(np.float64)
    picked = np.random.default_rng(seed).choice(total, SAMPLE, replace=False)
    which, offset = np.divmod(picked, size)
    values = np.empty(SAMPLE)
    for index, matrix in enumerate(matrices):
        chosen = which == index
        values[chosen] = np.ravel(matrix)[offset[chosen]]
    return values


def _ks(ordered: np.ndarray, law: str, std: float) -> float:
    """KS distance of an ascending sample from the zero-mean law with this std."""
    model: np.ndarray
    if law == "normal":
        model = 0.5 * (1.0 + np.asarray(_erf(ordered / (std * math.sqrt(2.0))), dtype=np.float64))
    else:
        bound = math.sqrt(3.0) * std
        model = np.clip((ordered + bound) / (2.0 * bound), 0.0, 1.0)
    count = ordered.size
    return float(max(np.max(np.arange(1, count + 1) / count - model), np.max(model - np.arange(count) / count)))
