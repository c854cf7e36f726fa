"""Counter-based random bits for stochastic rounding: the same bits on NumPy, C and CUDA.

Number j of the stream with key K is SplitMix64's output ``mix(K + (j+1)·γ)`` (Steele,
Lea and Flood 2014): a hash of the counter, so any range of the stream is computed
directly, in any order, by every backend. Element i of a vector rounds with the 16-bit
chunk i of the stream (chunk i is bits 16·(i mod 4) .. of 64-bit number i // 4).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["GAMMA", "MIX1", "MIX2", "random_u16", "random_u64", "stream_key"]

GAMMA = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)


def stream_key(seed: int, rank: int, step: int, *, shared: bool = False) -> int:
    """The 64-bit key of the stream for (seed, rank, step); ``shared`` drops the rank."""
    entropy = [seed, step] if shared else [seed, rank, step]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def random_u64(key: int, first: int, out: Any, work: Any = None) -> Any:
    """Stream numbers ``first .. first + out.size`` into uint64 ``out`` (NumPy or CuPy).

    ``work`` (uint64, out's size) avoids the one temporary.
    """
    xp = _module(out)
    if not out.size:
        return out
    with np.errstate(over="ignore"):
        out.fill(GAMMA)
        xp.cumsum(out, out=out)  # (j + 1)·γ, wrapping
        xp.add(out, np.uint64((key + first * int(GAMMA)) % 2**64), out=out)
        _mix(xp, out, xp.empty_like(out) if work is None else work)
    return out


def _mix(xp: Any, z: Any, t: Any) -> None:
    """SplitMix64's finalizer, in place (wrapping uint64 arithmetic); ``t`` is work."""
    for shift, mult in ((30, MIX1), (27, MIX2)):
        xp.right_shift(z, np.uint64(shift), out=t)
        xp.bitwise_xor(z, t, out=z)
        xp.multiply(z, mult, out=z)
    xp.right_shift(z, np.uint64(31), out=t)
    xp.bitwise_xor(z, t, out=z)


def random_u16(key: int, start: int, n: int) -> Any:
    """The 16-bit chunks ``start .. start + n`` of the stream (NumPy reference)."""
    first, skip = divmod(start, 4)
    words = np.empty((skip + n + 3) // 4, dtype=np.uint64)
    return random_u64(key, first, words).view(np.uint16)[skip : skip + n]


def _module(x: Any) -> Any:
    from hpcopt.backend import array_module

    return array_module(x)
