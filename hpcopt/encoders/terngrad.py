"""TernGrad: {-s, 0, s} per element in 2 packed bits, s = max|g| after clipping."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import (
    Encoder,
    Payload,
    blocks,
    check_finite,
    flat_f32,
    stochastic_floor,
    sum_squares,
)
from hpcopt.encoders.bitpack import apply_signs, packed_signs, plane_nbytes
from hpcopt.encoders.registry import register
from hpcopt.errors import UsageError

__all__ = ["TernGrad"]


class TernGrad(Encoder):
    """Clip at ``clip``·σ (0 = no clipping, then unbiased), then s·sign·Bernoulli(|g|/s)."""

    name = "terngrad"

    def __init__(self, *, clip: float = 2.5, seed: int = 0, rank: int = 0) -> None:
        super().__init__(seed=seed, rank=rank)
        if clip < 0 or not math.isfinite(clip):
            raise UsageError(f"terngrad clip must be >= 0, got {clip}")
        self.clip = clip
        self.unbiased = clip == 0

    def _scale(self, flat: Any) -> float:
        """s = max|g|, capped at clip·σ; one blocked pass."""
        xp = array_module(flat)
        d = flat.size
        sq = total = top = 0.0
        with np.errstate(over="ignore"):
            for lo, hi in blocks(xp, d):
                c = flat[lo:hi]
                sq += float(xp.dot(c, c))
                total += float(c.sum())
                top = max(top, float(c.max()), -float(c.min()))
        if not check_finite(sq + total, flat, self.name):
            sq = sum_squares(flat, self.name)
        if self.clip == 0 or d == 0:
            return top
        mean = total / d
        sigma = math.sqrt(max(sq / d - mean * mean, 0.0))
        return min(top, self.clip * sigma) if sigma > 0 else top

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        d = flat.size
        s = self._scale(flat)
        scale = self.work(xp, "scale", 1, np.float32)
        scale[0] = s
        bits = self.work(xp, "bits", 2 * plane_nbytes(d), np.uint8)
        gen = self.generator(xp, step)
        for lo, hi in blocks(xp, d):
            self._encode_block(flat, lo, hi, s, bits, gen)
        return Payload((scale, bits), tuple(x.shape), step)

    def _encode_block(self, flat: Any, lo: int, hi: int, s: float, bits: Any, gen: Any) -> None:
        """Keep element i of lo:hi with probability |g_i|/s; pack signs and keeps."""
        xp = array_module(flat)
        n = hi - lo
        a = self.work(xp, "abs", n, np.float32)
        xp.abs(flat[lo:hi], out=a)
        if s > 0:
            xp.minimum(a, np.float32(s), out=a)
            xp.multiply(a, np.float32(1.0 / s), out=a)
        keep = self.work(xp, "keep", n, np.uint8)
        stochastic_floor(a, gen, self.work(xp, "u", n, np.float32), keep)
        at, stop = lo // 8, lo // 8 + plane_nbytes(n)
        plane = plane_nbytes(flat.size)
        bits[plane + at : plane + stop] = xp.packbits(keep)
        packed_signs(flat[lo:hi], bits[at:], self.work(xp, "neg", n, np.bool_))

    def decode(self, payload: Payload, out: Any = None) -> Any:
        scale, bits = payload.buffers
        xp = array_module(bits)
        res = self.out_array(xp, payload, out)
        d = res.size
        step_bytes = plane_nbytes(d)
        mag = self.work(xp, "mag", d, np.float32)
        mag[...] = xp.unpackbits(bits[step_bytes:])[:d]
        xp.multiply(mag, scale[0], out=mag)
        apply_signs(mag, bits[:step_bytes], res)
        return res.reshape(payload.shape)

    def wire_bytes(self, d: int) -> int:
        return 4 + 2 * plane_nbytes(d)

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        return [(np.dtype(np.float32), 1), (np.dtype(np.uint8), 2 * plane_nbytes(d))]


register(TernGrad.name, TernGrad)
