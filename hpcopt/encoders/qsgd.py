"""QSGD: per-bucket norm plus stochastically rounded levels, bit-packed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders import kernels
from hpcopt.encoders.base import BLOCK, Encoder, Payload, blocks, check_finite, flat_f32
from hpcopt.encoders.bitpack import packed_nbytes, plane_nbytes
from hpcopt.encoders.registry import register
from hpcopt.errors import UsageError

__all__ = ["QSGD", "variance_factor"]


class QSGD(Encoder):
    """Levels ``l/s`` of each bucket's 2-norm; sign + magnitude in ``bitlen(s)+1`` bits.

    ``s = levels`` magnitudes 1..s plus 0 need ``bitlen(s)`` bits: s=15 packs into 5 bits
    with the sign, s=16 into 6. Randomness has 2**-16 resolution (bias below 2**-16 level).
    Planes: the sign plane, then bit b of the level for b = 0..bitlen(s)-1.
    """

    name = "qsgd"
    unbiased = True
    dense = True

    def __init__(self, *, levels: int = 15, bucket: int = 512, seed: int = 0, rank: int = 0):
        super().__init__(seed=seed, rank=rank)
        if not 1 <= levels < 2**16:
            raise UsageError(f"qsgd levels must be in 1..65535, got {levels}")
        if bucket < 1:
            raise UsageError(f"qsgd bucket must be >= 1, got {bucket}")
        self.levels = levels
        self.bucket = bucket
        self.mag_bits = levels.bit_length()

    def _buckets(self, d: int) -> int:
        return -(-d // self.bucket)

    def _block(self) -> int:
        return self.bucket * max(1, BLOCK // self.bucket)

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        d, nb = flat.size, self._buckets(flat.size)
        norms = self.work(xp, "norms", nb, np.float32)
        scales = self.work(xp, "scales", nb, np.float32)
        for lo, hi in blocks(xp, d, self._block()):
            self._norms(flat, lo, hi, norms, scales)
        bits = self.work(xp, "bits", packed_nbytes(d, self.mag_bits + 1), np.uint8)
        stride = plane_nbytes(d)
        kernels.quantize(flat, scales, self.bucket, self.levels, self.key(step), 0, bits, stride)
        return Payload((norms, bits), tuple(x.shape), step)

    def _norms(self, flat: Any, lo: int, hi: int, norms: Any, scales: Any) -> None:
        """Norms of the buckets in lo:hi (whole buckets), and levels / norm (0 for norm 0)."""
        xp = array_module(flat)
        full = (hi - lo) // self.bucket
        at = lo // self.bucket
        nb = self._buckets(hi - lo)
        sq = self.work(xp, "sq", nb, np.float32)
        if full:
            rows = flat[lo : lo + full * self.bucket].reshape(full, self.bucket)
            if xp is np:
                np.einsum("ij,ij->i", rows, rows, out=sq[:full])
            else:
                sq[:full] = xp.einsum("ij,ij->i", rows, rows)
        if nb > full:
            tail = flat[lo + full * self.bucket : hi]
            sq[full] = xp.dot(tail, tail)
        mine, scale = norms[at : at + nb], scales[at : at + nb]
        if check_finite(float(sq.sum()), flat[lo:hi], self.name):
            xp.sqrt(sq, out=mine)
        else:  # squares beyond float32: sum them in float64
            wide = xp.zeros(nb * self.bucket, np.float64)
            wide[: hi - lo] = flat[lo:hi]
            rows = wide.reshape(nb, self.bucket)
            mine[...] = xp.sqrt(xp.einsum("ij,ij->i", rows, rows))
        pos = mine > 0
        xp.divide(np.float32(self.levels), xp.where(pos, mine, np.float32(1)), out=scale)
        xp.multiply(scale, pos, out=scale)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        res = self.out_array(array_module(payload.buffers[1]), payload, out)
        self._dequantize(payload, res, 1.0, 0, False)
        return res.reshape(payload.shape)

    def decode_add(self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0) -> Any:
        self._dequantize(payload, out, weight, start, True)
        return out

    def _dequantize(self, payload: Payload, out: Any, weight: float, start: int, add: bool) -> None:
        norms, bits = payload.buffers
        stride = plane_nbytes(payload.size)
        kernels.dequantize(bits, stride, self.mag_bits, norms, float(self.levels), self.bucket,
                           start, out, weight, add)  # fmt: skip

    def wire_bytes(self, d: int) -> int:
        return 4 * self._buckets(d) + packed_nbytes(d, self.mag_bits + 1)

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        nb = self._buckets(d)
        return [(np.dtype(np.float32), nb), (np.dtype(np.uint8), nbytes - 4 * nb)]


def variance_factor(d: int, levels: int) -> float:
    """The QSGD variance factor min(d/s², √d/s) (for tests and cost models)."""
    return min(d / levels**2, math.sqrt(d) / levels)


register(QSGD.name, QSGD)
