"""Helpers shared by the sparse encoders: index widths, exact top-k, scatter."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.errors import UsageError

__all__ = ["check_ratio", "count_for", "index_dtype", "scatter", "topk_indices"]


def check_ratio(name: str, ratio: float) -> float:
    """``ratio`` when it is in (0, 1]; UsageError otherwise."""
    if not 0 < ratio <= 1:
        raise UsageError(f"{name} ratio must be in (0, 1], got {ratio}")
    return ratio


def count_for(ratio: float, d: int) -> int:
    """k = ceil(ratio·d), at most d."""
    return min(d, math.ceil(ratio * d))


def index_dtype(d: int) -> np.dtype:
    """The narrowest unsigned dtype that holds every index of ``d`` elements."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if d <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def topk_indices(a: Any, k: int, gen: Any, sample: float = 0.01) -> Any:
    """Indices of exactly ``k`` largest entries of ``a`` (>= 0), unordered.

    A threshold a little below the k-th largest is estimated from a random sample;
    only the candidates above it are partitioned. Falls back to a full partition when
    the estimate leaves fewer than k candidates.
    """
    xp = array_module(a)
    d = a.size
    if k >= d:
        return xp.arange(d)
    m = min(d, max(1000, math.ceil(sample * d)))
    if k == 0 or m == d or 4 * k > d:
        return xp.argpartition(a, d - k)[d - k :]
    s = a[gen.integers(0, d, size=m)]
    # Aim for ~1.5k candidates plus a few standard deviations of the sample estimate.
    want = min(m - 1, math.ceil(1.5 * k * m / d + 3 * math.sqrt(k * m / d) + 4))
    thr = xp.partition(s, m - want)[m - want]
    cand = xp.flatnonzero(a >= thr)
    if cand.size < k:
        return xp.argpartition(a, d - k)[d - k :]
    vals = a[cand]
    return cand[xp.argpartition(vals, cand.size - k)[cand.size - k :]]


def scatter(out: Any, idx: Any, values: Any) -> Any:
    """``out`` zeroed with ``values`` placed at ``idx``."""
    out[...] = 0
    out[idx] = values
    return out
