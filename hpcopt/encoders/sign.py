"""1-bit sign payloads with one scale ‖x‖₁/d (signSGD with a magnitude)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import Encoder, Payload, block_len, blocks, check_finite, flat_f32
from hpcopt.encoders.bitpack import packed_signs, plane_nbytes
from hpcopt.encoders.registry import register

__all__ = ["Sign"]


class Sign(Encoder):
    """``scale * sign(x)`` with ``scale = ‖x‖₁/d``; zeros count as positive."""

    name = "sign"

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        d = flat.size
        work = self.work(xp, "abs", block_len(xp, d), np.float32)
        neg = self.work(xp, "neg", block_len(xp, d), np.bool_)
        bits = self.work(xp, "bits", plane_nbytes(d), np.uint8)
        total = 0.0
        for lo, hi in blocks(xp, d):
            a = work[: hi - lo]
            xp.abs(flat[lo:hi], out=a)
            total += float(a.sum())
            packed_signs(flat[lo:hi], bits[lo // 8 :], neg[: hi - lo])
        if not check_finite(total, flat, self.name):
            total = float(xp.abs(flat).sum(dtype=np.float64))
        scale = self.work(xp, "scale", 1, np.float32)
        scale[0] = total / d if d else 0.0
        return Payload((scale, bits), tuple(x.shape), step)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        scale, bits = payload.buffers
        xp = array_module(bits)
        res = self.out_array(xp, payload, out)
        d = res.size
        # 1 - 2*bit, times the scale: bit 1 (negative) -> -scale.
        res[...] = xp.unpackbits(bits)[:d]
        xp.multiply(res, np.float32(-2.0) * scale[0], out=res)
        xp.add(res, scale[0], out=res)
        return res.reshape(payload.shape)

    def wire_bytes(self, d: int) -> int:
        return 4 + plane_nbytes(d)

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        return [(np.dtype(np.float32), 1), (np.dtype(np.uint8), plane_nbytes(d))]


register(Sign.name, Sign)
