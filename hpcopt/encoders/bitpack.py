"""Bit packing of small unsigned integers, one bit plane after another.

A k-bit array of n values is stored as k planes of ``ceil(n/8)`` bytes each (plane b
holds bit b of every value, packed 8 per byte by ``packbits``). That is
``k * ceil(n/8)`` bytes: at most k-1 bytes more than ``ceil(n*k/8)``, and every step
is a vectorized pass that NumPy and CuPy both provide.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import array_module

__all__ = [
    "pack",
    "pack_into",
    "packed_nbytes",
    "plane_nbytes",
    "uint_dtype",
    "unpack",
    "unpack_from",
]


def plane_nbytes(n: int) -> int:
    """Bytes of one packed bit plane of ``n`` values."""
    return (n + 7) // 8


def packed_nbytes(n: int, bits: int) -> int:
    """Bytes that :func:`pack` writes for ``n`` values of ``bits`` bits."""
    return bits * plane_nbytes(n)


def uint_dtype(bits: int) -> np.dtype:
    """The narrowest unsigned dtype holding ``bits`` bits."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if bits <= 8 * np.dtype(dtype).itemsize:
            return np.dtype(dtype)
    raise ValueError(f"cannot hold {bits} bits in one integer")


def _check_bits(bits: int) -> None:
    if not 1 <= bits <= 32:
        raise ValueError(f"bit width must be in 1..32, got {bits}")


def pack(values: Any, bits: int, out: Any = None, work: Any = None) -> Any:
    """Pack unsigned ``values`` (each < 2**bits) into ``packed_nbytes`` bytes.

    ``out`` (uint8) and ``work`` (same dtype and size as ``values``) avoid allocations.
    """
    _check_bits(bits)
    xp = array_module(values)
    if out is None:
        out = xp.empty(packed_nbytes(values.size, bits), dtype=np.uint8)
    return pack_into(values, bits, out, plane_nbytes(values.size), 0, work)


def pack_into(values: Any, bits: int, out: Any, stride: int, start: int, work: Any = None) -> Any:
    """Write the bit planes of a block of values into planes ``stride`` bytes apart.

    The block begins at element ``start`` (a multiple of 8) of the whole array.
    """
    xp = array_module(values)
    if work is None:
        work = xp.empty_like(values)
    at, stop = start // 8, start // 8 + plane_nbytes(values.size)
    for b in range(bits):
        xp.bitwise_and(values, values.dtype.type(1 << b), out=work)
        out[b * stride + at : b * stride + stop] = xp.packbits(work)
    return out


def unpack(buf: Any, bits: int, n: int, out: Any = None) -> Any:
    """Inverse of :func:`pack`: ``n`` unsigned values of ``bits`` bits."""
    _check_bits(bits)
    return unpack_from(buf, bits, plane_nbytes(n), 0, n, out)


def unpack_from(buf: Any, bits: int, stride: int, start: int, n: int, out: Any = None) -> Any:
    """Values start..start+n from planes ``stride`` bytes apart (start a multiple of 8)."""
    xp = array_module(buf)
    if out is None:
        out = xp.zeros(n, dtype=uint_dtype(bits))
    else:
        out[...] = 0
    at, stop = start // 8, start // 8 + plane_nbytes(n)
    for b in range(bits):
        plane = xp.unpackbits(buf[b * stride + at : b * stride + stop])[:n]
        if b:
            plane = plane.astype(out.dtype, copy=False) << out.dtype.type(b)
        xp.bitwise_or(out, plane, out=out)
    return out
