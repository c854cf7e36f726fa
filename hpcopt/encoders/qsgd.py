"""QSGD: per-bucket norm plus stochastically rounded levels, bit-packed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import (
    BLOCK,
    Encoder,
    Payload,
    blocks,
    check_finite,
    flat_f32,
    stochastic_floor,
)
from hpcopt.encoders.bitpack import (
    apply_signs,
    pack_into,
    packed_nbytes,
    packed_signs,
    plane_nbytes,
    uint_dtype,
    unpack_from,
)
from hpcopt.encoders.registry import register
from hpcopt.errors import UsageError

__all__ = ["QSGD", "variance_factor"]


class QSGD(Encoder):
    """Levels ``l/s`` of each bucket's 2-norm; sign + magnitude in ``bitlen(s)+1`` bits.

    ``s = levels`` magnitudes 1..s plus 0 need ``bitlen(s)`` bits: s=15 packs into 5 bits
    with the sign, s=16 into 6. Randomness has 2**-16 resolution (bias below 2**-16 level).
    """

    name = "qsgd"
    unbiased = True

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
        unit = math.lcm(self.bucket, 8)
        return unit * max(1, BLOCK // unit)

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        d, nb = flat.size, self._buckets(flat.size)
        norms = self.work(xp, "norms", nb, np.float32)
        bits = self.work(xp, "bits", packed_nbytes(d, self.mag_bits + 1), np.uint8)
        gen = self.generator(xp, step)
        for lo, hi in blocks(xp, d, self._block()):
            self._encode_block(flat, lo, hi, norms, bits, gen)
        return Payload((norms, bits), tuple(x.shape), step)

    def _encode_block(self, flat: Any, lo: int, hi: int, norms: Any, bits: Any, gen: Any) -> None:
        """Quantize and pack elements lo:hi (whole buckets) into ``norms`` and ``bits``."""
        xp = array_module(flat)
        n, nb = hi - lo, self._buckets(hi - lo)
        a = self.work(xp, "abs", nb * self.bucket, np.float32)
        xp.abs(flat[lo:hi], out=a[:n])
        a[n:] = 0
        a2 = a.reshape(nb, self.bucket)
        sq = xp.einsum("ij,ij->i", a2, a2)
        if not check_finite(float(sq.sum()), flat[lo:hi], self.name):
            wide = a2.astype(np.float64)
            sq = xp.einsum("ij,ij->i", wide, wide)
        mine = norms[lo // self.bucket : lo // self.bucket + nb]
        mine[...] = xp.sqrt(sq)
        nonzero = mine > 0
        scale = (np.float32(self.levels) / xp.where(nonzero, mine, 1)) * nonzero
        xp.multiply(a2, scale.astype(np.float32)[:, None], out=a2)
        lev = self.work(xp, "levels", n, uint_dtype(self.mag_bits))
        stochastic_floor(a[:n], gen, self.work(xp, "u", n, np.float32), lev)
        stride = plane_nbytes(flat.size)
        packed_signs(flat[lo:hi], bits[lo // 8 :], self.work(xp, "neg", n, np.bool_))
        work = self.work(xp, "packwork", n, lev.dtype)
        pack_into(lev, self.mag_bits, bits[stride:], stride, lo, work)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        norms, bits = payload.buffers
        xp = array_module(bits)
        res = self.out_array(xp, payload, out)
        for lo, hi in blocks(xp, res.size, self._block()):
            self._decode_block(norms, bits, lo, hi, res)
        return res.reshape(payload.shape)

    def _decode_block(self, norms: Any, bits: Any, lo: int, hi: int, res: Any) -> None:
        """Decode elements lo:hi (whole buckets) into ``res``."""
        xp = array_module(bits)
        n, nb, stride = hi - lo, self._buckets(hi - lo), plane_nbytes(res.size)
        lev = self.work(xp, "dlev", n, uint_dtype(self.mag_bits))
        unpack_from(bits[stride:], self.mag_bits, stride, lo, n, lev)
        full = self.work(xp, "dec", nb * self.bucket, np.float32)
        full[:n] = lev
        full[n:] = 0
        f2 = full.reshape(nb, self.bucket)
        mine = norms[lo // self.bucket : lo // self.bucket + nb]
        xp.multiply(f2, (mine / np.float32(self.levels))[:, None], out=f2)
        apply_signs(full[:n], bits[lo // 8 : lo // 8 + plane_nbytes(n)], res[lo:hi])

    def wire_bytes(self, d: int) -> int:
        return 4 * self._buckets(d) + packed_nbytes(d, self.mag_bits + 1)

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        nb = self._buckets(d)
        return [(np.dtype(np.float32), nb), (np.dtype(np.uint8), nbytes - 4 * nb)]


def variance_factor(d: int, levels: int) -> float:
    """The QSGD variance factor min(d/s², √d/s) (for tests and cost models)."""
    return min(d / levels**2, math.sqrt(d) / levels)


register(QSGD.name, QSGD)
