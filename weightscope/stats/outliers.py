"""How many of the largest values a fitted power-law tail cannot explain.

One sequential test serves two checks: dragon kings (eigenvalues beyond the fitted ESD
tail) and the outsized entries behind a correlation trap (entries beyond the entries'
own tail). Testing from the top and stopping at the first value the tail explains keeps
the chance of a false first find at the test's level.
"""

from __future__ import annotations

from functools import cache

import numpy as np

#: The standard deviation of a Gaussian from its median absolute deviation, σ = 1.4826·MAD:
#: the robust sigma of trap entries and of the gate's alpha outliers.
MAD_TO_SIGMA = 1.4826


def count_outliers(top: np.ndarray, xmin: float, alpha: float, num_tail: int, level: float) -> int:
    """How many of the largest values ``top`` (descending) a power-law tail (alpha, xmin)
    of ``num_tail`` values cannot explain, tested sequentially from the top.

    Under p(x) ∝ x^(−α), x ≥ xmin, survival S(x) = (x/xmin)^(1−α), the largest of the
    num_tail − j + 1 values left after removing the j − 1 found so far reaches top[j]
    with probability p_j = 1 − (1 − S)^(num_tail − j + 1); counting stops at the first
    p_j ≥ ``level``, so without any outsized value a false one turns up with probability
    ``level`` at most.
    """
    survival = (top / xmin) ** (1.0 - alpha)
    remaining = num_tail - np.arange(len(top))
    p_values = -np.expm1(remaining * np.log1p(-np.minimum(survival, 1.0)))
    explained = np.flatnonzero(p_values >= level)
    return int(explained[0]) if len(explained) else len(top)


#: Values at or below which `order_statistics` partitions outright; above it, a seeded
#: random sample brackets each rank first.
_SELECT_DIRECT = 1 << 15
#: Size of that sample: about a sixteenth of the values, as a power of two within these
#: bounds (`_sample_size`). The bracket's half-width is `_SELECT_SPREAD` in units of √m,
#: twice the largest standard deviation of a rank's place in the sample
#: (√(m·p(1 − p)) ≤ √m/2): a rank falls outside its bracket with probability under 1e-14,
#: and then costs one full partition.
_SELECT_SAMPLE_MIN, _SELECT_SAMPLE_MAX = 1 << 12, 1 << 15
_SELECT_SPREAD = 4.0


def order_statistics(values: np.ndarray, ranks: list[int]) -> np.ndarray:
    """The entries of ``values`` (1-D) at 0-based ``ranks`` of its ascending order: what
    ``np.partition(values, ranks)[ranks]`` gives, without partitioning every value.

    Why: the trap check takes the median and two more ranks of every layer's entries, and
    introselect over all of them was the check's cost (all-MiniLM-L6-v2's 11.7 M-entry
    embedding: 0.29–0.55 s, with a full-size copy). Here a sample (`_sample_places`),
    sorted, brackets each rank; one pass (`_bracketed`) counts the values below each
    bracket and gathers those inside it (8·√m/m of them: 4.4 % at m = 32 K), which are
    partitioned. Ranks whose brackets overlap (the two middle ones of a median) share one
    bracket, its gather and its partition. The sample's sort and the bracket's passes
    trade off (`_sample_size`); the check's two calls, best of 15, thread CPU, with a
    sample of 64 K → the size chosen: 147 K values (a 384² layer, partitioned outright
    before) 3.29 → 1.23 ms, 332 K 4.14 → 2.51 ms, 885 K 6.33 → 5.25 ms, 11.7 M 86 → 70 ms,
    28 M 171 → 177 ms. A rank its bracket misses (a sample that happens not to represent
    the values) is taken by a full partition, so the answer is always exact. The sample is
    taken at seeded random places, not at a stride: SmolLM2-135M's 49152 × 576 token
    embedding, sampled every 432nd value, gave 4 of its 576 columns, whose scales differ
    4.6×; its median sat at the sample's 43 % point, outside the bracket, and each call
    fell back to a full partition (the median: 0.40 s against 0.06 s). ``values`` must
    hold no NaN.
    """
    size = values.size
    if size <= _SELECT_DIRECT:
        return np.partition(values, ranks)[ranks]
    places = np.minimum((_sample_places(_sample_size(size)) * size).astype(np.intp), size - 1)
    sample = np.sort(values[places])
    margin = _SELECT_SPREAD * np.sqrt(sample.size) + 2
    groups = _brackets(ranks, size, sample.size, margin)
    bounds = [
        (sample[low] if low > 0 else -np.inf, sample[high] if high < sample.size else np.inf)
        for _, (low, high) in groups
    ]
    below, inside = _bracketed(values, bounds)
    found = np.empty(len(ranks), dtype=values.dtype)
    for (group, _), count, bracketed in zip(groups, below, inside, strict=True):
        wanted = [ranks[index] for index in group]
        within = [rank - count for rank in wanted]
        if all(0 <= rank < bracketed.size for rank in within):
            found[group] = np.partition(bracketed, within)[within]
        else:
            found[group] = np.partition(values, wanted)[wanted]
    return found


#: Values `_bracketed` compares at a time: 256 KB of float32, in cache between its passes.
_BRACKET_CHUNK = 1 << 16


def _bracketed(values: np.ndarray, bounds: list[tuple[float, float]]) -> tuple[list[int], list[np.ndarray]]:
    """Per bracket [lower, upper]: how many values lie below it, and those inside it.

    A chunk at a time, every bracket on the chunk while it is in cache: over the whole
    array, each bracket's comparisons, their conjunction and the gather were five passes
    through memory. Best of 9, thread CPU, both of the trap check's calls: 11.7 M values
    79 → 58 ms, 28 M 218 → 131 ms, 885 K 6.6 → 5.6 ms, 147 K the same (1.6 ms). Chunks of
    16 K–128 K values were within 10 % of each other."""
    below = [0] * len(bounds)
    pieces: list[list[np.ndarray]] = [[] for _ in bounds]
    for start in range(0, values.size, _BRACKET_CHUNK):
        chunk = values[start : start + _BRACKET_CHUNK]
        for index, (lower, upper) in enumerate(bounds):
            inside = chunk >= lower
            below[index] += chunk.size - int(np.count_nonzero(inside))  # no NaN: not ≥ is <
            inside &= chunk <= upper
            pieces[index].append(chunk[inside])
    return below, [np.concatenate(parts) for parts in pieces]


def _sample_size(size: int) -> int:
    """The sample `order_statistics` brackets ``size`` values with: the power of two at or
    under size/16, within [`_SELECT_SAMPLE_MIN`, `_SELECT_SAMPLE_MAX`]. Measured best
    (both of the check's calls, samples of 2 K to 64 K): 4 K at 65 K values, 8 K at
    110–147 K, 16 K at 197–332 K, 32 K at 885 K to 28 M (64 K within 3 % at 2 M and 28 M,
    23 % slower at 11.7 M)."""
    return min(_SELECT_SAMPLE_MAX, max(_SELECT_SAMPLE_MIN, 1 << ((size >> 4).bit_length() - 1)))


@cache
def _sample_places(count: int) -> np.ndarray:
    """``count`` places in [0, 1), one at a seeded uniform point of each of as many equal
    strata: × a size, the sample's indices, ascending. Random within its stratum, so no
    period of the values (a matrix's row length) lines up with the sample."""
    return (np.arange(count) + np.random.default_rng(0).random(count)) / count


def _brackets(ranks: list[int], size: int, samples: int, margin: float) -> list[tuple[list[int], tuple[int, int]]]:
    """The sample-index bracket [low, high] of each rank, ranks whose brackets overlap
    merged into one: (indices into ``ranks``, bracket) per group, in ascending order."""
    groups: list[tuple[list[int], tuple[int, int]]] = []
    for index in sorted(range(len(ranks)), key=ranks.__getitem__):
        at = (ranks[index] + 0.5) / size * samples
        low, high = int(at - margin), int(at + margin)
        if groups and low <= groups[-1][1][1]:
            members, (first, _) = groups[-1]
            groups[-1] = ([*members, index], (first, high))
        else:
            groups.append(([index], (low, high)))
    return groups
