"""Deep Gradient Compression's selection: a sampled threshold, then |x| >= threshold."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import Encoder, Payload, block_len, check_finite, flat_f32
from hpcopt.encoders.registry import register
from hpcopt.encoders.sparse import (
    above,
    check_ratio,
    count_for,
    index_dtype,
    largest,
    sample_abs,
    scatter,
    sparse_buffers,
    sparse_layout,
    split_buffers,
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
            empty = sparse_buffers(flat[:0], xp.zeros(0, index_dtype(1)))
            return Payload(empty, tuple(x.shape), step)
        k = count_for(self.ratio, d)
        s = sample_abs(flat, self.generator(xp, step), self.sample)
        kk = max(1, math.ceil(self.ratio * s.size))
        thr = float(xp.partition(s, s.size - kk)[s.size - kk])
        work = self.work(xp, "abs", block_len(xp, d), np.float32)
        idx, total = above(flat, thr, work)
        check_finite(total, flat, self.name)
        if idx.size > 2 * k:
            idx = largest(flat, idx, k)
        values = xp.take(flat, idx)
        return Payload(sparse_buffers(values, idx.astype(index_dtype(d))), tuple(x.shape), step)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        values, idx = split_buffers(payload.buffers)
        xp = array_module(values)
        res = self.out_array(xp, payload, out)
        scatter(res, idx, values)
        return res.reshape(payload.shape)

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        idx = index_dtype(d)
        return sparse_layout(idx, nbytes // (4 + idx.itemsize))


register(DGC.name, DGC)
