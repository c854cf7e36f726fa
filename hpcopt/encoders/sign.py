"""1-bit sign payloads with one scale ‖x‖₁/d (signSGD with a magnitude)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders import kernels
from hpcopt.encoders.base import Encoder, Payload, block_len, blocks, check_finite, flat_f32
from hpcopt.encoders.bitpack import plane_nbytes
from hpcopt.encoders.registry import register

__all__ = ["Sign", "add_votes"]


class Sign(Encoder):
    """``scale * sign(x)`` with ``scale = ‖x‖₁/d``; zeros count as positive."""

    name = "sign"
    dense = True

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        d = flat.size
        work = self.work(xp, "abs", block_len(xp, d), np.float32)
        total = 0.0
        for lo, hi in blocks(xp, d):
            total += float(xp.abs(flat[lo:hi], out=work[: hi - lo]).sum())
        if not check_finite(total, flat, self.name):
            total = float(xp.abs(flat).sum(dtype=np.float64))
        bits = self.work(xp, "bits", plane_nbytes(d), np.uint8)
        kernels.sign_pack(flat, bits)
        scale = self.work(xp, "scale", 1, np.float32)
        scale[0] = total / d if d else 0.0
        return Payload((scale, bits), tuple(x.shape), step)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        scale, bits = payload.buffers
        res = self.out_array(array_module(bits), payload, out)
        s = float(scale[0]) if res.size else 0.0
        kernels.two_values(bits, s, -s, res, False)
        return res.reshape(payload.shape)

    def decode_add(self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0) -> Any:
        scale, bits = payload.buffers
        if out.size:
            s = float(np.float32(weight) * np.float32(scale[0]))
            kernels.two_values(bits[start // 8 :], s, -s, out, True)
        return out

    def wire_bytes(self, d: int) -> int:
        return 4 + plane_nbytes(d)

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        return [(np.dtype(np.float32), 1), (np.dtype(np.uint8), plane_nbytes(d))]


def add_votes(payload: Payload, out: Any, start: int = 0) -> Any:
    """``out += 1 − 2·bit`` for elements start.. of a sign payload: +1 positive, −1 negative."""
    kernels.two_values(payload.buffers[1][start // 8 :], 1.0, -1.0, out, True)
    return out


register(Sign.name, Sign)
