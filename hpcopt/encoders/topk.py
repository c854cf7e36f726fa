"""Top-k sparsification: the k largest magnitudes as float32 values + narrow indices."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders import kernels
from hpcopt.encoders.base import Encoder, Payload, flat_f32
from hpcopt.encoders.registry import register
from hpcopt.encoders.sparse import (
    check_ratio,
    count_for,
    index_dtype,
    narrow,
    sparse_buffers,
    sparse_layout,
    split_buffers,
    take,
    topk_indices,
)

__all__ = ["TopK"]


class TopK(Encoder):
    """Exactly k = ceil(ratio·d) entries, increasing indices (ties to the lower index);
    ``delta=1`` sends index gaps instead.

    Gaps use the narrowest width that fits the largest gap; the receiver infers the
    width from the payload size, so no header is needed.
    """

    name = "topk"

    def __init__(
        self, *, ratio: float = 0.01, delta: bool = False, seed: int = 0, rank: int = 0
    ) -> None:
        super().__init__(seed=seed, rank=rank)
        self.ratio = check_ratio(self.name, ratio)
        self.delta = delta

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        d = flat.size
        k = count_for(self.ratio, d)
        idx = topk_indices(self, flat, k, self.key(step))
        values = self.work(xp, "values", k, np.float32)
        take(flat, idx, values)
        return Payload(sparse_buffers(values, self._indices(xp, idx, d)), tuple(x.shape), step)

    def _indices(self, xp: Any, idx: Any, d: int) -> Any:
        if not self.delta or idx.size == 0:
            return narrow(self, idx, index_dtype(d))
        gaps = self.work(xp, "gaps", idx.size, np.int64)
        gaps[0] = idx[0]
        xp.subtract(idx[1:], idx[:-1], out=gaps[1:])
        return narrow(self, gaps, index_dtype(int(gaps.max()) + 1))

    def decode(self, payload: Payload, out: Any = None) -> Any:
        res = self.out_array(array_module(payload.buffers[0]), payload, out)
        res[...] = 0
        return self.decode_add(payload, res).reshape(payload.shape)

    def decode_add(self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0) -> Any:
        values, idx = split_buffers(payload.buffers)
        if start or out.size != payload.size:
            raise ValueError("topk: decode_add covers the whole vector (start 0)")
        kernels.scatter_add(idx, self.delta, values, out, weight)
        return out

    def wire_bytes(self, d: int) -> int | None:
        if self.delta:
            return None
        k = count_for(self.ratio, d)
        return k * (4 + index_dtype(d).itemsize)

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        k = count_for(self.ratio, d)
        width = (nbytes - 4 * k) // k if k else 1
        return sparse_layout(np.dtype(f"u{width}"), k)


register(TopK.name, TopK)
