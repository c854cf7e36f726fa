"""Deep Gradient Compression's selection: a sampled threshold, then |x| >= threshold."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders import kernels
from hpcopt.encoders.base import Encoder, Payload, flat_f32
from hpcopt.encoders.registry import register
from hpcopt.encoders.sparse import (
    check_ratio,
    count_for,
    exact_top,
    index_dtype,
    narrow,
    sample_size,
    sample_threshold,
    sparse_buffers,
    sparse_layout,
    split_buffers,
    take,
    topk_indices,
)
from hpcopt.errors import UsageError

__all__ = ["DGC"]


class DGC(Encoder):
    """Sends every entry at or above the threshold that a ``sample`` fraction suggests.

    The count varies around k = ceil(ratio·d); above 2k the largest k are kept (as DGC
    does). Values float32 + increasing indices at the narrowest width for d.
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
        k = count_for(self.ratio, d)
        idx = self._select(flat, k, self.key(step)) if d else self.work(xp, "top", 0, np.int64)
        room = self._room(k)  # work arrays sized for any count, so none grows in a loop
        values = self.work(xp, "values", max(room, idx.size), np.float32)[: idx.size]
        take(flat, idx, values)
        payload = sparse_buffers(values, narrow(self, idx, index_dtype(d), room))
        return Payload(payload, tuple(x.shape), step)

    def _select(self, flat: Any, k: int, key: int) -> Any:
        """Entries at or above the sampled threshold; the largest k when more than 2k."""
        xp = array_module(flat)
        m = sample_size(flat.size, self.sample)
        thr = sample_threshold(self, flat, key, self.sample, max(1, math.ceil(self.ratio * m)))
        cand = self.work(xp, "cand", self._room(k), np.int64)
        count, finite = kernels.select_above(flat, thr, cand)
        if not finite:
            raise ValueError(f"{self.name}: input contains NaN or Inf")
        if count <= 2 * k:
            return cand[:count]
        out = self.work(xp, "top", k, np.int64)
        if count <= cand.size:
            return exact_top(self, flat, cand[:count], k, out, cand.size)
        return topk_indices(self, flat, k, key)

    @staticmethod
    def _room(k: int) -> int:
        """Candidates kept from one threshold pass (more than 2k are cut to k anyway)."""
        return 4 * k + 64

    def decode(self, payload: Payload, out: Any = None) -> Any:
        res = self.out_array(array_module(payload.buffers[0]), payload, out)
        res[...] = 0
        return self.decode_add(payload, res).reshape(payload.shape)

    def decode_add(self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0) -> Any:
        values, idx = split_buffers(payload.buffers)
        if start or out.size != payload.size:
            raise ValueError("dgc: decode_add covers the whole vector (start 0)")
        kernels.scatter_add(idx, False, values, out, weight)
        return out

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        idx = index_dtype(d)
        return sparse_layout(idx, nbytes // (4 + idx.itemsize))


register(DGC.name, DGC)
