"""Helpers shared by the sparse encoders: index widths, exact top-k, scatter."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import blocks
from hpcopt.errors import UsageError

__all__ = [
    "above",
    "check_ratio",
    "count_for",
    "index_dtype",
    "largest",
    "sample_abs",
    "scatter",
    "sparse_buffers",
    "sparse_layout",
    "split_buffers",
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


def sample_abs(flat: Any, gen: Any, fraction: float) -> Any:
    """|x| at a random sample of at least ``fraction`` of the entries (and >= 1000)."""
    xp = array_module(flat)
    d = flat.size
    m = min(d, max(1000, math.ceil(fraction * d)))
    if m == d:
        return xp.abs(flat)
    return xp.abs(flat[gen.integers(0, d, size=m)])


def above(flat: Any, thr: float, work: Any) -> tuple[Any, float]:
    """Indices with |x| >= thr, and Σ|x| (to check finiteness), in one blocked pass."""
    xp = array_module(flat)
    parts, total = [], 0.0
    for lo, hi in blocks(xp, flat.size):
        a = work[: hi - lo]
        xp.abs(flat[lo:hi], out=a)
        total += float(a.sum())
        idx = xp.flatnonzero(a >= thr)
        parts.append(idx + lo if lo else idx)
    return (xp.concatenate(parts) if parts else xp.zeros(0, np.int64)), total


def largest(flat: Any, idx: Any, k: int) -> Any:
    """The ``k`` entries of ``idx`` with the largest |x| (all of them when fewer)."""
    xp = array_module(flat)
    if idx.size <= k:
        return idx
    a = xp.abs(flat[idx])
    return idx[xp.argpartition(a, idx.size - k)[idx.size - k :]]


def topk_indices(flat: Any, k: int, gen: Any, work: Any, sample: float = 0.01) -> tuple[Any, float]:
    """Indices of exactly ``k`` largest |x| (unordered), and Σ|x|.

    A threshold a little below the k-th largest is estimated from a random sample; only
    the candidates above it are partitioned. When the estimate leaves fewer than k
    candidates the threshold drops to 0 (every entry is a candidate).
    """
    xp = array_module(flat)
    d = flat.size
    s = sample_abs(flat, gen, sample)
    m = s.size
    # Aim for ~1.5k candidates plus a few standard deviations of the sample estimate.
    want = min(m, math.ceil(1.5 * k * m / d + 3 * math.sqrt(k * m / d) + 4)) if d else 0
    thr = float(xp.partition(s, m - want)[m - want]) if 0 < want < m and 4 * k < d else 0.0
    cand, total = above(flat, thr, work)
    if cand.size < k:
        cand, total = above(flat, 0.0, work)
    return largest(flat, cand, k), total


def scatter(out: Any, idx: Any, values: Any) -> Any:
    """``out`` zeroed with ``values`` placed at ``idx``."""
    out[...] = 0
    out[idx] = values
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
