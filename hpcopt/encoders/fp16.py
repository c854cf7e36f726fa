"""IEEE half precision (float16) payloads: 2 bytes per element, summable."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcopt import halfcast
from hpcopt.backend import array_module
from hpcopt.encoders.base import Encoder, Payload, blocks, check_finite, flat_f32
from hpcopt.encoders.registry import register

__all__ = ["Float16"]

# Magnitudes from here on round to Inf in float16 (65504 + half an ulp).
_OVERFLOW = 65520.0


class Float16(Encoder):
    """Round to nearest float16; values beyond ±65504 are an error (they would be Inf)."""

    name = "fp16"
    summable = True
    sum_dtype = "float16"
    dense = True

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        buf = self.work(xp, "half", flat.size, np.float16)
        if halfcast.fast(flat, buf):
            top, nan = halfcast.to_half(flat, buf)
            ok = not nan and top < _OVERFLOW
        else:
            ok = self._encode_blocks(xp, flat, buf)
        if not ok:
            check_finite(math.inf, flat, self.name)
            top = float(xp.abs(flat).max())
            raise ValueError(f"fp16: input has values beyond ±65504 (max |x| = {top:g})")
        return Payload((buf,), tuple(x.shape), step)

    @staticmethod
    def _encode_blocks(xp: Any, flat: Any, buf: Any) -> bool:
        """Array-library conversion block by block; False on NaN or overflow."""
        ok = True
        with np.errstate(over="ignore", invalid="ignore"):
            for lo, hi in blocks(xp, flat.size):
                buf[lo:hi] = flat[lo:hi]
                # Comparisons with NaN are False, so NaN fails this test too.
                ok = ok and float(flat[lo:hi].max()) < _OVERFLOW > -float(flat[lo:hi].min())
        return ok

    def decode(self, payload: Payload, out: Any = None) -> Any:
        xp = array_module(payload.buffers[0])
        res = self.out_array(xp, payload, out)
        halfcast.from_half(payload.buffers[0], res)
        return res.reshape(payload.shape)

    def decode_add(self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0) -> Any:
        xp = array_module(out)
        part = self.work(xp, "part", out.size, np.float32)
        halfcast.from_half(payload.buffers[0][start : start + out.size], part)
        if weight != 1.0:
            xp.multiply(part, np.float32(weight), out=part)
        xp.add(out, part, out=out)
        return out

    def wire_bytes(self, d: int) -> int:
        return 2 * d

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        return [(np.dtype(np.float16), d)]


register(Float16.name, Float16)
