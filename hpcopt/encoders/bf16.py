"""bfloat16 payloads carried as uint16 (round to nearest even): 2 bytes per element."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import Encoder, Payload, check_finite, flat_f32
from hpcopt.encoders.registry import register

__all__ = ["BFloat16", "bf16_round", "bf16_widen"]


def bf16_round(bits32: Any, out16: Any, work: Any) -> Any:
    """The upper 16 bits of float32 ``bits32`` (uint32 view), rounded to nearest even."""
    xp = array_module(bits32)
    xp.right_shift(bits32, np.uint32(16), out=work)
    xp.bitwise_and(work, np.uint32(1), out=work)
    xp.add(work, np.uint32(0x7FFF), out=work)
    xp.add(work, bits32, out=work)
    xp.right_shift(work, np.uint32(16), out=work)
    out16[...] = work
    return out16


def bf16_widen(bits16: Any, out32: Any) -> Any:
    """Float32 values (written into uint32 ``out32``) of bfloat16 bit patterns."""
    xp = array_module(bits16)
    out32[...] = bits16
    xp.left_shift(out32, np.uint32(16), out=out32)
    return out32


class BFloat16(Encoder):
    """Keeps float32's exponent range with an 8-bit significand."""

    name = "bf16"
    summable = True
    sum_dtype = "bfloat16"
    dense = True

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        check_finite(float(flat.sum()), flat, self.name)
        buf = self.work(xp, "bits", flat.size, np.uint16)
        work = self.work(xp, "work", flat.size, np.uint32)
        bf16_round(flat.view(np.uint32), buf, work)
        return Payload((buf,), tuple(x.shape), step)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        xp = array_module(payload.buffers[0])
        res = self.out_array(xp, payload, out)
        bf16_widen(payload.buffers[0], res.view(np.uint32))
        return res.reshape(payload.shape)

    def decode_add(self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0) -> Any:
        xp = array_module(out)
        part = self.work(xp, "part", out.size, np.float32)
        bf16_widen(payload.buffers[0][start : start + out.size], part.view(np.uint32))
        if weight != 1.0:
            xp.multiply(part, np.float32(weight), out=part)
        xp.add(out, part, out=out)
        return out

    def wire_bytes(self, d: int) -> int:
        return 2 * d

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        return [(np.dtype(np.uint16), d)]


register(BFloat16.name, BFloat16)
