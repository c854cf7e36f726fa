"""The NumPy reference of the encoder kernels: what the C and CUDA versions must equal, bit
for bit, and the fallback where neither is available.

Arrays are 1-D and contiguous. ``start`` is the global index of the first element of ``x``
or ``out`` within the whole vector; bit planes and per-bucket scales always cover the
whole vector, and ``start`` is a multiple of 8 (one plane byte holds 8 elements, the
first in its most significant bit). Work runs block by block to keep temporaries small.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.rng import random_u16

__all__ = [
    "dequantize",
    "natural_decode",
    "natural_encode",
    "pick_top",
    "quantize",
    "scatter_add",
    "select_above",
    "sign_pack",
    "two_values",
]

BLOCK = 1 << 16  # elements per step (a multiple of 8)
_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32)


def _blocks(n: int) -> range:
    return range(0, n, BLOCK)


def sign_pack(x: Any, bits: Any) -> None:
    """``bits[:ceil(n/8)] = packbits(x < 0)``."""
    for lo in _blocks(x.size):
        hi = min(x.size, lo + BLOCK)
        bits[lo // 8 : (hi + 7) // 8] = np.packbits(x[lo:hi] < 0)


def two_values(bits: Any, pos: float, neg: float, out: Any, add: bool) -> None:
    """``out (+)= neg where the bit is 1 else pos``, 8 values per byte from a table."""
    pos32, neg32 = np.float32(pos), np.float32(neg)
    table = np.where(_BITS == 1, neg32, pos32).astype(np.float32)
    n = out.size
    for lo in _blocks(n):
        hi = min(n, lo + BLOCK)
        vals = table[bits[lo // 8 : (hi + 7) // 8]].reshape(-1)[: hi - lo]
        _store(out[lo:hi], vals, add)


def _store(out: Any, vals: Any, add: bool) -> None:
    if add:
        np.add(out, vals, out=out)
    else:
        out[...] = vals


def _per_element(per_bucket: Any, bucket: int, start: int, n: int) -> Any:
    """Each element's entry of a per-bucket array, for elements start..start+n."""
    return (
        np.repeat(per_bucket, bucket)[start : start + n]
        if bucket > 1
        else per_bucket[start : start + n]
    )


def quantize(
    x: Any, scales: Any, bucket: int, levels: int, key: int, start: int, planes: Any, stride: int
) -> None:
    """lev = floor(min(|x|·scale + u·2⁻¹⁶, levels)); planes: sign, then bits of lev."""
    mag_bits = int(levels).bit_length()
    for lo in _blocks(x.size):
        hi = min(x.size, lo + BLOCK)
        g = start + lo
        first, last = g // bucket, (g + hi - lo - 1) // bucket + 1
        sc = _per_element(scales[first:last], bucket, g - first * bucket, hi - lo)
        r = np.abs(x[lo:hi]) * sc
        r += random_u16(key, g, hi - lo) * np.float32(2.0**-16)
        lev = np.minimum(r, np.float32(levels)).astype(np.uint32)
        at, stop = g // 8, (g + hi - lo + 7) // 8
        planes[at:stop] = np.packbits(x[lo:hi] < 0)
        for b in range(mag_bits):
            plane = (lev >> np.uint32(b)) & np.uint32(1)
            planes[(1 + b) * stride + at : (1 + b) * stride + stop] = np.packbits(plane)


def dequantize(
    planes: Any, stride: int, mag_bits: int, norms: Any, divisor: float, bucket: int, start: int,
    out: Any, weight: float, add: bool,
) -> None:  # fmt: skip
    """``out (+)= weight·(±(float(lev)·q))``, q = norms[bucket] / divisor, for elements
    start..start+out.size."""
    w = np.float32(weight)
    for lo in _blocks(out.size):
        hi = min(out.size, lo + BLOCK)
        g, n = start + lo, hi - lo
        at, stop = g // 8, (g + n + 7) // 8
        lev = np.zeros(n, dtype=np.uint32)
        for b in range(mag_bits):
            plane = np.unpackbits(planes[(1 + b) * stride + at : (1 + b) * stride + stop])[:n]
            lev |= plane.astype(np.uint32) << np.uint32(b)
        first, last = g // bucket, (g + n - 1) // bucket + 1
        q = _per_element(norms[first:last] / np.float32(divisor), bucket, g - first * bucket, n)
        v = w * (lev.astype(np.float32) * q)
        neg = np.unpackbits(planes[at:stop])[:n].astype(bool)
        np.negative(v, out=v, where=neg)
        _store(out[lo:hi], v, add)


def natural_encode(x: Any, key: int, start: int, signs: Any, exps: Any) -> int:
    """Exponent byte of |x| plus 16 random bits below the mantissa's top; the largest one."""
    top = 0
    for lo in _blocks(x.size):
        hi = min(x.size, lo + BLOCK)
        g = start + lo
        t = x[lo:hi].view(np.uint32) & np.uint32(0x7FFFFFFF)
        t += random_u16(key, g, hi - lo).astype(np.uint32) << np.uint32(7)
        t >>= np.uint32(23)
        top = max(top, int(t.max()))
        exps[g : g + hi - lo] = t
        signs[g // 8 : (g + hi - lo + 7) // 8] = np.packbits(x[lo:hi] < 0)
    return top


def natural_decode(signs: Any, exps: Any, start: int, out: Any, weight: float, add: bool) -> None:
    """``out (+)= weight·(±2^(e−127))`` from the sign plane and exponent bytes."""
    w = np.float32(weight)
    for lo in _blocks(out.size):
        hi = min(out.size, lo + BLOCK)
        g, n = start + lo, hi - lo
        sign = np.unpackbits(signs[g // 8 : (g + n + 7) // 8], count=(g % 8) + n)[g % 8 :]
        u = (sign.astype(np.uint32) << np.uint32(31)) | (
            exps[g : g + n].astype(np.uint32) << np.uint32(23)
        )
        _store(out[lo:hi], w * u.view(np.float32), add)


def select_above(x: Any, thr: float, idx: Any) -> tuple[int, bool]:
    """Indices with |x| >= thr into ``idx`` (the first idx.size of them); (count, finite)."""
    count, finite, t = 0, True, np.float32(thr)
    for lo in _blocks(x.size):
        a = np.abs(x[lo : lo + BLOCK])
        finite = finite and bool(np.isfinite(a).all())
        found = np.flatnonzero(a >= t) + lo
        room = max(0, min(found.size, idx.size - count))
        idx[count : count + room] = found[:room]
        count += found.size
    return count, finite


def pick_top(mags: Any, cand: Any, v: float, k: int, out: Any) -> int:
    """Of increasing ``cand`` with magnitudes ``mags``, every one above v, then the first
    equal to v: k in all. Also the CuPy version: nothing here is faster as a kernel."""
    xp = array_module(mags)
    a = mags[: cand.size]
    v32 = np.float32(v)
    keep = a > v32
    ties = xp.flatnonzero(a == v32)[: max(0, k - int(keep.sum()))]
    keep[ties] = True
    chosen = cand[keep][:k]
    out[: chosen.size] = chosen
    return int(chosen.size)


def scatter_add(idx: Any, delta: bool, values: Any, out: Any, weight: float) -> None:
    """``out[idx] += weight·values`` (indices unique; gaps to add up when ``delta``); NumPy
    or CuPy."""
    xp = array_module(out)
    at = xp.cumsum(idx, dtype=np.int64) if delta else idx.astype(np.int64)
    if at.size and (int(at.min()) < 0 or int(at.max()) >= out.size):
        raise ValueError("scatter_add: index beyond the output")
    out[at] += np.float32(weight) * values
