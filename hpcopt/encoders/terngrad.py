"""TernGrad: {-s, 0, s} per element in 2 packed bits, s = max|g| after clipping."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders import kernels
from hpcopt.encoders.base import Encoder, Payload, blocks, check_finite, flat_f32, sum_squares
from hpcopt.encoders.bitpack import plane_nbytes
from hpcopt.encoders.registry import register
from hpcopt.errors import UsageError

__all__ = ["TernGrad"]


class TernGrad(Encoder):
    """Clip at ``clip``·σ (0 = no clipping, then unbiased), then s·sign·Bernoulli(|g|/s).

    The keep bit is the stochastic level min(floor(|g|/s + u), 1) of the QSGD kernel with
    one level: |g| >= s (clipped) always keeps. Planes: signs, then keeps.
    """

    name = "terngrad"
    dense = True

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
                sq += float(xp.einsum("i,i->", c, c))  # not BLAS: no thread pool
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
        inverse = self.work(xp, "inverse", 1, np.float32)
        inverse[0] = 1.0 / s if s > 0 else 0.0
        bits = self.work(xp, "bits", 2 * plane_nbytes(d), np.uint8)
        kernels.quantize(flat, inverse, max(d, 1), 1, self.key(step), 0, bits, plane_nbytes(d))
        return Payload((scale, bits), tuple(x.shape), step)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        res = self.out_array(array_module(payload.buffers[1]), payload, out)
        self._dequantize(payload, res, 1.0, 0, False)
        return res.reshape(payload.shape)

    def decode_add(self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0) -> Any:
        self._dequantize(payload, out, weight, start, True)
        return out

    def _dequantize(self, payload: Payload, out: Any, weight: float, start: int, add: bool) -> None:
        scale, bits = payload.buffers
        d = payload.size
        kernels.dequantize(bits, plane_nbytes(d), 1, scale, 1.0, max(d, 1), start, out, weight,
                           add)  # fmt: skip

    def wire_bytes(self, d: int) -> int:
        return 4 + 2 * plane_nbytes(d)

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        return [(np.dtype(np.float32), 1), (np.dtype(np.uint8), 2 * plane_nbytes(d))]


register(TernGrad.name, TernGrad)
