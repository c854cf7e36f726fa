"""Natural compression: unbiased stochastic rounding to a power of two, 9 bits/element."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import Encoder, Payload, blocks, flat_f32
from hpcopt.encoders.bitpack import packed_signs, plane_nbytes
from hpcopt.encoders.registry import register

__all__ = ["Natural"]

_MAG = np.uint32(0x7FFFFFFF)
_MANT = np.uint32(0x7FFFFF)


def random_bits(xp: Any, gen: Any, n: int) -> Any:
    """``n`` uint32 whose low 23 bits (at least) are uniform."""
    if xp is np:
        return gen.bit_generator.random_raw((n + 1) // 2).view(np.uint32)[:n]
    return gen.integers(0, 1 << 23, size=n, dtype=xp.int32).view(xp.uint32)


class Natural(Encoder):
    """Sign bit plane + the rounded 8-bit exponent byte of every element.

    Adding a uniform 23-bit integer to the magnitude's bits carries into the exponent
    with probability mantissa/2**23: exactly the unbiased power-of-two rounding
    (subnormals round to 0 or 2**-126 the same way).
    """

    name = "natural"
    unbiased = True

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        d = flat.size
        buf = self.work(xp, "bits", plane_nbytes(d) + d, np.uint8)
        gen, top = self.generator(xp, step), 0
        for lo, hi in blocks(xp, d):
            top = max(top, self._encode_block(flat, lo, hi, buf, gen))
        if top >= 255:
            raise ValueError("natural: input contains NaN or Inf (or rounds beyond float32)")
        return Payload((buf,), tuple(x.shape), step)

    def _encode_block(self, flat: Any, lo: int, hi: int, buf: Any, gen: Any) -> int:
        """Round elements lo:hi into ``buf``; returns the largest rounded exponent."""
        xp = array_module(flat)
        n = hi - lo
        t = self.work(xp, "t", n, np.uint32)
        xp.bitwise_and(flat[lo:hi].view(np.uint32), _MAG, out=t)
        r = random_bits(xp, gen, n)
        xp.bitwise_and(r, _MANT, out=r)
        xp.add(t, r, out=t)
        xp.right_shift(t, np.uint32(23), out=t)
        top = int(t.max())
        signs = plane_nbytes(flat.size)
        buf[signs + lo : signs + hi] = t
        packed_signs(flat[lo:hi], buf[lo // 8 :], self.work(xp, "neg", n, np.bool_))
        return top

    def decode(self, payload: Payload, out: Any = None) -> Any:
        (buf,) = payload.buffers
        xp = array_module(buf)
        res = self.out_array(xp, payload, out)
        d = res.size
        u = res.view(np.uint32)
        u[...] = xp.unpackbits(buf[: plane_nbytes(d)])[:d]
        xp.left_shift(u, np.uint32(8), out=u)
        xp.bitwise_or(u, buf[plane_nbytes(d) :], out=u)
        xp.left_shift(u, np.uint32(23), out=u)
        return res.reshape(payload.shape)

    def wire_bytes(self, d: int) -> int:
        return plane_nbytes(d) + d

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        return [(np.dtype(np.uint8), plane_nbytes(d) + d)]


register(Natural.name, Natural)
