"""IEEE half precision (float16) payloads: 2 bytes per element, summable."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import Encoder, Payload, flat_f32

__all__ = ["Float16"]


class Float16(Encoder):
    """Round to nearest float16; values beyond ±65504 are an error (they would be Inf)."""

    name = "fp16"
    summable = True

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        buf = self.work(xp, "half", flat.size, np.float16)
        xp.copyto(buf, flat, casting="same_kind")
        # One float32-accumulated pass over the half buffer catches NaN, Inf and overflow.
        if not np.isfinite(float(buf.sum(dtype=np.float32))):
            bad = "NaN or Inf" if not bool(xp.isfinite(flat).all()) else "values beyond ±65504"
            raise ValueError(f"fp16: input contains {bad}")
        return Payload((buf,), tuple(x.shape), step)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        xp = array_module(payload.buffers[0])
        res = self.out_array(xp, payload, out)
        xp.copyto(res, payload.buffers[0])
        return res.reshape(payload.shape)

    def wire_bytes(self, d: int) -> int:
        return 2 * d

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        return [(np.dtype(np.float16), d)]
