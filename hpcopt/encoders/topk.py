"""Top-k sparsification: the k largest magnitudes as float32 values + narrow indices."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import Encoder, Payload, block_len, check_finite, flat_f32
from hpcopt.encoders.registry import register
from hpcopt.encoders.sparse import (
    check_ratio,
    count_for,
    index_dtype,
    scatter,
    sparse_buffers,
    sparse_layout,
    split_buffers,
    topk_indices,
)

__all__ = ["TopK"]


class TopK(Encoder):
    """Exactly k = ceil(ratio·d) entries; ``delta=1`` sends sorted index gaps instead.

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
        work = self.work(xp, "abs", block_len(xp, d), np.float32)
        idx, total = topk_indices(flat, k, self.generator(xp, step), work)
        check_finite(total, flat, self.name)
        if self.delta:
            idx = xp.sort(idx)
        values = self.work(xp, "values", k, np.float32)
        xp.take(flat, idx, out=values)
        return Payload(sparse_buffers(values, self._indices(xp, idx, d)), tuple(x.shape), step)

    def _indices(self, xp: Any, idx: Any, d: int) -> Any:
        if not self.delta or idx.size == 0:
            return idx.astype(index_dtype(d))
        gaps = xp.diff(idx, prepend=0)
        return gaps.astype(index_dtype(int(gaps.max()) + 1))

    def decode(self, payload: Payload, out: Any = None) -> Any:
        values, idx = split_buffers(payload.buffers)
        xp = array_module(values)
        res = self.out_array(xp, payload, out)
        if self.delta:
            idx = xp.cumsum(idx, dtype=np.int64)
        scatter(res, idx, values)
        return res.reshape(payload.shape)

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
