"""Deep Gradient Compression's selection: a sampled threshold, then |x| >= threshold."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import BLOCK, Encoder, Payload, check_finite, flat_f32
from hpcopt.encoders.sparse import (
    above,
    check_ratio,
    count_for,
    index_dtype,
    largest,
    sample_abs,
    scatter,
)
from hpcopt.errors import UsageError

__all__ = ["DGC"]


class DGC(Encoder):
    """Sends every entry at or above the threshold that a ``sample`` fraction suggests.

    The count varies around k = ceil(ratio·d); above 2k the largest k are kept (as DGC
    does). Values float32 + indices at the narrowest width for d.
    """

    name = "dgc"

    def __init__(
        self, *, ratio: float = 0.01, sample: float = 0.01, seed: int = 0, rank: int = 0
    ) -> None:
        super().__init__(seed=seed, rank=rank)
        self.ratio = check_ratio(self.name, ratio)
        if not 0 < sample <= 1:
            raise UsageError(f"dgc sample must be in (0, 1], got {sample}")
        self.sample = sample

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        d = flat.size
        if not d:
            return Payload(self._order(flat[:0], xp.zeros(0, index_dtype(1))), tuple(x.shape), step)
        k = count_for(self.ratio, d)
        s = sample_abs(flat, self.generator(xp, step), self.sample)
        kk = max(1, math.ceil(self.ratio * s.size))
        thr = float(xp.partition(s, s.size - kk)[s.size - kk])
        work = self.work(xp, "abs", min(d, BLOCK) if xp is np else d, np.float32)
        idx, total = above(flat, thr, work)
        check_finite(total, flat, self.name)
        if idx.size > 2 * k:
            idx = largest(flat, idx, k)
        values = xp.take(flat, idx)
        return Payload(self._order(values, idx.astype(index_dtype(d))), tuple(x.shape), step)

    @staticmethod
    def _order(values: Any, idx: Any) -> tuple[Any, Any]:
        return (idx, values) if idx.itemsize > 4 else (values, idx)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        a, b = payload.buffers
        values, idx = (b, a) if a.itemsize > 4 else (a, b)
        xp = array_module(values)
        res = self.out_array(xp, payload, out)
        scatter(res, idx, values)
        return res.reshape(payload.shape)

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        width = index_dtype(d).itemsize
        k = nbytes // (4 + width)
        idx = (index_dtype(d), k)
        f32 = (np.dtype(np.float32), k)
        return [idx, f32] if width > 4 else [f32, idx]
