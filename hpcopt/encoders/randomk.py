"""Random-k: values at k indices drawn from a generator all ranks share (summable)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders import kernels
from hpcopt.encoders.base import Encoder, Payload, check_finite, flat_f32
from hpcopt.encoders.registry import register
from hpcopt.encoders.sparse import check_ratio, count_for

__all__ = ["RandomK"]


class RandomK(Encoder):
    """Only the k values cross the wire: every rank derives the indices from (seed, step).

    ``scaled=1`` multiplies by d/k on decode, which makes it unbiased.
    """

    name = "randomk"
    summable = True

    def __init__(
        self, *, ratio: float = 0.01, scaled: bool = False, seed: int = 0, rank: int = 0
    ) -> None:
        super().__init__(seed=seed, rank=rank)
        self.ratio = check_ratio(self.name, ratio)
        self.scaled = scaled
        self.unbiased = scaled
        self._idx: dict[tuple[Any, int, int], Any] = {}

    def indices(self, xp: Any, d: int, step: int) -> Any:
        """The sorted shared indices for ``d`` elements at ``step`` (cached per step)."""
        key = (xp, d, step)
        idx = self._idx.get(key)
        if idx is None:
            gen = self.generator(np, step, shared=True)
            host = np.sort(gen.choice(d, count_for(self.ratio, d), replace=False))
            idx = host if xp is np else xp.asarray(host)
            self._idx = {key: idx}
        return idx

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        check_finite(float(flat.sum()), flat, self.name)
        idx = self.indices(xp, flat.size, step)
        values = self.work(xp, "values", idx.size, np.float32)
        xp.take(flat, idx, out=values)
        return Payload((values,), tuple(x.shape), step)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        res = self.out_array(array_module(payload.buffers[0]), payload, out)
        res[...] = 0
        return self.decode_add(payload, res).reshape(payload.shape)

    def decode_add(self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0) -> Any:
        (values,) = payload.buffers
        if start or out.size != payload.size:
            raise ValueError("randomk: decode_add covers the whole vector (start 0)")
        xp = array_module(values)
        if self.scaled and values.size:
            scaled = self.work(xp, "scaled", values.size, np.float32)
            values = xp.multiply(values, np.float32(out.size / values.size), out=scaled)
        kernels.scatter_add(self.indices(xp, out.size, payload.step), False, values, out, weight)
        return out

    def wire_bytes(self, d: int) -> int:
        return 4 * count_for(self.ratio, d)

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        return [(np.dtype(np.float32), count_for(self.ratio, d))]


register(RandomK.name, RandomK)
