"""Natural compression: stochastic rounding to a power of two, 9 bits/element."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders import kernels
from hpcopt.encoders.base import Encoder, Payload, flat_f32
from hpcopt.encoders.bitpack import plane_nbytes
from hpcopt.encoders.registry import register

__all__ = ["Natural"]


class Natural(Encoder):
    """Sign bit plane + the rounded 8-bit exponent byte of every element.

    Adding 16 random bits just below the top of the 23-bit mantissa carries into the
    exponent with probability ⌊mantissa/2⁷⌋/2¹⁶: the unbiased power-of-two rounding up to
    2⁻¹⁶ of the power (subnormals round to 0 or 2**-126 the same way).
    """

    name = "natural"
    unbiased = True
    dense = True

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        d = flat.size
        buf = self.work(xp, "bits", plane_nbytes(d) + d, np.uint8)
        signs, exps = buf[: plane_nbytes(d)], buf[plane_nbytes(d) :]
        if kernels.natural_encode(flat, self.key(step), 0, signs, exps) >= 255:
            raise ValueError("natural: input contains NaN or Inf (or rounds beyond float32)")
        return Payload((buf,), tuple(x.shape), step)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        res = self.out_array(array_module(payload.buffers[0]), payload, out)
        self._decode(payload, res, 1.0, 0, False)
        return res.reshape(payload.shape)

    def decode_add(self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0) -> Any:
        self._decode(payload, out, weight, start, True)
        return out

    def _decode(self, payload: Payload, out: Any, weight: float, start: int, add: bool) -> None:
        (buf,) = payload.buffers
        plane = plane_nbytes(payload.size)
        kernels.natural_decode(buf[:plane], buf[plane:], start, out, weight, add)

    def wire_bytes(self, d: int) -> int:
        return plane_nbytes(d) + d

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        return [(np.dtype(np.uint8), plane_nbytes(d) + d)]


register(Natural.name, Natural)
