"""Helpers shared by the sparse encoders: index widths, sampled thresholds, exact top-k."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders import kernels
from hpcopt.encoders.rng import random_u64
from hpcopt.errors import UsageError

__all__ = [
    "check_ratio",
    "count_for",
    "exact_top",
    "index_dtype",
    "narrow",
    "sample_threshold",
    "sparse_buffers",
    "sparse_layout",
    "split_buffers",
    "take",
    "topk_indices",
]


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


def take(flat: Any, idx: Any, out: Any) -> Any:
    """``out = flat[idx]`` without a temporary (NumPy buffers ``out`` when it checks bounds)."""
    if array_module(flat) is np:
        return np.take(flat, idx, out=out, mode="clip")
    return array_module(flat).take(flat, idx, out=out)


def sample_size(d: int, fraction: float) -> int:
    """Entries in a sample of at least ``fraction`` of d (and at least 1000)."""
    return min(d, max(1000, math.ceil(fraction * d)))


def sample_threshold(enc: Any, flat: Any, key: int, fraction: float, rank: int) -> float:
    """The ``rank``-th largest |x| (1 = largest) of a random sample of ``fraction`` of x.

    Positions come from the counter-based stream ``key`` (position = word mod d), so
    every backend samples the same entries. ``rank`` counts within the sample.
    """
    xp, d = array_module(flat), flat.size
    m = sample_size(d, fraction)
    vals = enc.work(xp, "sample", m, np.float32)
    if m == d:
        xp.abs(flat, out=vals)
    else:
        pos = random_u64(key, 0, enc.work(xp, "sample-pos", m, np.uint64),
                         enc.work(xp, "sample-tmp", m, np.uint64))  # fmt: skip
        xp.remainder(pos, np.uint64(d), out=pos)
        take(flat, pos.view(np.int64), vals)  # int64: no converted copy of the indices
        xp.abs(vals, out=vals)
    vals.partition(m - rank)
    return float(vals[m - rank])


def exact_top(enc: Any, flat: Any, cand: Any, k: int, out: Any, room: int = 0) -> Any:
    """The k entries of ``cand`` (increasing, a superset of the k largest) with the largest
    |x|, ties to the lower index, in increasing order, written into ``out``. ``room``: the
    most candidates expected (the work array is sized for it once)."""
    xp = array_module(flat)
    mags = enc.work(xp, "cand-abs", max(room, cand.size), np.float32)[: cand.size]
    take(flat, cand, mags)
    xp.abs(mags, out=mags)
    ranked = enc.work(xp, "cand-rank", max(room, cand.size), np.float32)[: cand.size]
    ranked[...] = mags
    ranked.partition(cand.size - k)
    kernels.pick_top(mags, cand, float(ranked[cand.size - k]), k, out)
    return out[:k]


def _all_top(flat: Any, k: int) -> Any:
    """The fallback when a sample misleads: every entry at or above the exact k-th |x|."""
    xp = array_module(flat)
    a = xp.abs(flat)
    v = a[xp.argpartition(a, flat.size - k)[flat.size - k]]
    return xp.flatnonzero(a >= v)


def topk_indices(enc: Any, flat: Any, k: int, key: int, sample: float = 0.01) -> Any:
    """Indices of exactly the ``k`` largest |x| (ties to the lower index), increasing.

    A threshold a little below the k-th largest is estimated from a random sample; the
    entries above it (about 1.5k) are the candidates, of which exactly k are picked. When
    the estimate leaves fewer than k candidates or too many, every entry at or above the
    exact k-th largest is a candidate (that rare path allocates). ValueError on NaN/Inf.
    """
    xp, d = array_module(flat), flat.size
    out = enc.work(xp, "top", k, np.int64)
    if k == 0:
        check_finite_flat(flat, enc.name)
        return out
    m = sample_size(d, sample)
    want = min(m, math.ceil(1.5 * k * m / d + 3 * math.sqrt(k * m / d) + 4))
    thr = sample_threshold(enc, flat, key, sample, want) if want < m and 4 * k < d else 0.0
    cap = 2 * max(k, math.ceil(want * d / m)) + 1024 if thr > 0 else d  # twice the expected
    cand = enc.work(xp, "cand", cap, np.int64)
    count, finite = kernels.select_above(flat, thr, cand)
    if not finite:
        raise ValueError(f"{enc.name}: input contains NaN or Inf")
    if k <= count <= cap:
        return exact_top(enc, flat, cand[:count], k, out, cap)
    every = _all_top(flat, k)
    return exact_top(enc, flat, every, k, out)


def check_finite_flat(flat: Any, name: str) -> None:
    """ValueError when ``flat`` holds NaN or Inf."""
    xp = array_module(flat)
    if flat.size and not bool(xp.isfinite(flat).all()):
        raise ValueError(f"{name}: input contains NaN or Inf")


def narrow(enc: Any, idx: Any, dtype: Any, room: int = 0) -> Any:
    """``idx`` copied into a work array of ``dtype`` (the payload's index buffer) with room
    for ``room`` indices, so that a varying count does not reallocate it."""
    xp = array_module(idx)
    out = enc.work(xp, f"idx-{np.dtype(dtype).str}", max(room, idx.size), dtype)[: idx.size]
    xp.copyto(out, idx, casting="unsafe")
    return out


def sparse_buffers(values: Any, idx: Any) -> tuple[Any, Any]:
    """The payload buffers of float32 ``values`` and ``idx``: the wider one first."""
    return (idx, values) if idx.itemsize > 4 else (values, idx)


def split_buffers(buffers: tuple[Any, ...]) -> tuple[Any, Any]:
    """(values, idx) of the buffers made by :func:`sparse_buffers`."""
    a, b = buffers
    return (b, a) if a.itemsize > 4 else (a, b)


def sparse_layout(idx: np.dtype, k: int) -> list[tuple[np.dtype, int]]:
    """The layout of ``k`` float32 values and ``k`` indices of dtype ``idx``."""
    f32 = (np.dtype(np.float32), k)
    return [(idx, k), f32] if idx.itemsize > 4 else [f32, (idx, k)]
