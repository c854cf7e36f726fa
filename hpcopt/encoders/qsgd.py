"""QSGD: per-bucket norm plus stochastically rounded levels, bit-packed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import Encoder, Payload, check_finite, flat_f32, stochastic_floor
from hpcopt.encoders.bitpack import pack, packed_nbytes, uint_dtype, unpack
from hpcopt.errors import UsageError

__all__ = ["QSGD", "apply_signs", "packed_signs", "variance_factor"]


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

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(x)
        xp = array_module(flat)
        d, nb = flat.size, self._buckets(flat.size)
        a = self.work(xp, "abs", nb * self.bucket, np.float32)
        xp.abs(flat, out=a[:d])
        a[d:] = 0
        a2 = a.reshape(nb, self.bucket)
        sq = xp.einsum("ij,ij->i", a2, a2)
        check_finite(float(sq.sum()), flat, self.name)
        norms = self.work(xp, "norms", nb, np.float32)
        xp.sqrt(sq, out=norms)
        nonzero = norms > 0
        scale = (np.float32(self.levels) / xp.where(nonzero, norms, 1)) * nonzero
        xp.multiply(a2, scale.astype(np.float32)[:, None], out=a2)
        lev = self.work(xp, "levels", d, uint_dtype(self.mag_bits))
        stochastic_floor(a[:d], self.generator(xp, step), self.work(xp, "u", d, np.float32), lev)
        bits = self.work(xp, "bits", packed_nbytes(d, self.mag_bits + 1), np.uint8)
        packed_signs(flat, bits, self.work(xp, "neg", d, np.bool_))
        work = self.work(xp, "packwork", d, lev.dtype)
        pack(lev, self.mag_bits, out=bits[packed_nbytes(d, 1) :], work=work)
        return Payload((norms, bits), tuple(x.shape), step)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        norms, bits = payload.buffers
        xp = array_module(bits)
        res = self.out_array(xp, payload, out)
        d, nb = res.size, norms.size
        lev = unpack(bits[packed_nbytes(d, 1) :], self.mag_bits, d)
        full = self.work(xp, "dec", nb * self.bucket, np.float32)
        full[:d] = lev
        full[d:] = 0
        f2 = full.reshape(nb, self.bucket)
        xp.multiply(f2, (norms / np.float32(self.levels))[:, None], out=f2)
        apply_signs(full[:d], bits[: packed_nbytes(d, 1)], res)
        return res.reshape(payload.shape)

    def wire_bytes(self, d: int) -> int:
        return 4 * self._buckets(d) + packed_nbytes(d, self.mag_bits + 1)

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        nb = self._buckets(d)
        return [(np.dtype(np.float32), nb), (np.dtype(np.uint8), nbytes - 4 * nb)]


def packed_signs(flat: Any, out: Any, work: Any) -> Any:
    """Write the packed sign plane (bit 1 = negative) of ``flat`` into ``out``'s start."""
    xp = array_module(flat)
    xp.less(flat, np.float32(0), out=work)
    n = -(-flat.size // 8)
    out[:n] = xp.packbits(work)
    return out


def apply_signs(mag: Any, plane: Any, out: Any) -> Any:
    """``out = mag`` negated where the packed sign ``plane`` has a 1."""
    xp = array_module(mag)
    out[...] = xp.unpackbits(plane)[: mag.size]
    xp.multiply(out, np.float32(-2.0), out=out)
    xp.add(out, np.float32(1.0), out=out)
    xp.multiply(out, mag, out=out)
    return out


def variance_factor(d: int, levels: int) -> float:
    """The QSGD variance factor min(d/s², √d/s) (for tests and cost models)."""
    return min(d / levels**2, math.sqrt(d) / levels)
