"""The identity encoder: float32 as it is (the uncompressed baseline)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import Encoder, Payload, check_finite, flat_f32
from hpcopt.encoders.registry import register

__all__ = ["Identity"]


class Identity(Encoder):
    """Sends a copy of the float32 input; summable and exact."""

    name = "none"
    unbiased = True
    summable = True
    dense = True

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        buf = self.work(xp, "values", flat.size, np.float32)
        xp.copyto(buf, flat)
        check_finite(float(buf.sum()), buf, self.name)
        return Payload((buf,), tuple(x.shape), step)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        xp = array_module(payload.buffers[0])
        res = self.out_array(xp, payload, out)
        xp.copyto(res, payload.buffers[0])
        return res.reshape(payload.shape)

    def decode_add(self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0) -> Any:
        xp = array_module(out)
        values = payload.buffers[0][start : start + out.size]
        if weight != 1.0:
            values = xp.multiply(
                values, np.float32(weight), out=self.work(xp, "part", out.size, "f4")
            )
        xp.add(out, values, out=out)
        return out

    def wire_bytes(self, d: int) -> int:
        return 4 * d

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        return [(np.dtype(np.float32), d)]


register(Identity.name, Identity)
