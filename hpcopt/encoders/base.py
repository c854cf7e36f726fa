"""What every payload encoder shares: the payload, the base class, randomness, checks."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any, ClassVar, Protocol

import numpy as np

from hpcopt.backend import Scratch, array_module
from hpcopt.encoders.rng import random_u16, stream_key

__all__ = [
    "BLOCK",
    "DECODE_BLOCK",
    "Codec",
    "Encoder",
    "Payload",
    "TwoStageCodec",
    "block_len",
    "blocks",
    "check_finite",
    "decode_into",
    "decode_sum",
    "flat_f32",
    "stochastic_floor",
    "sum_squares",
]

# Elements per cache-sized block: chains of NumPy passes run block by block so that the
# intermediates stay in cache instead of streaming through memory once per pass.
BLOCK = 1 << 18
# Output elements per step of decode_sum: every payload adds into this block while it is
# in cache, so the output crosses memory once (a multiple of 8: whole plane bytes).
DECODE_BLOCK = 1 << 16


class Payload:
    """What crosses the wire (``buffers``) plus local context the receiver also knows.

    Buffers are ordered by non-increasing itemsize so that their concatenation keeps
    every buffer aligned. They are the encoder's work arrays: valid until its next encode.
    """

    __slots__ = ("buffers", "shape", "step")

    def __init__(self, buffers: tuple[Any, ...], shape: tuple[int, ...], step: int = 0) -> None:
        self.buffers = buffers
        self.shape = shape
        self.step = step

    @property
    def nbytes(self) -> int:
        """Bytes on the wire: the sum of the buffer sizes."""
        return sum(int(b.nbytes) for b in self.buffers)

    @property
    def size(self) -> int:
        """Elements of the decoded array."""
        return math.prod(self.shape)


class Codec(Protocol):
    """What aggregation paths and optimizers use: an encoder, with or without memory.

    ``summable``: payloads are one buffer that can be summed as ``sum_dtype`` (float32,
    float16 or bfloat16). ``two_stage``: the encoder is summed in two dependent stages
    (PowerSGD) and also satisfies :class:`TwoStageCodec`. ``dense``: ``decode_add`` of a
    range costs only that range (so :func:`decode_sum` works block by block).
    """

    @property
    def name(self) -> str: ...
    @property
    def summable(self) -> bool: ...
    @property
    def sum_dtype(self) -> str: ...
    @property
    def unbiased(self) -> bool: ...
    @property
    def two_stage(self) -> bool: ...
    @property
    def dense(self) -> bool: ...

    def encode(self, x: Any, step: int = 0) -> Payload: ...
    def decode(self, payload: Payload, out: Any = None) -> Any: ...
    def decode_add(
        self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0
    ) -> Any: ...
    def from_bytes(self, raw: Any, shape: tuple[int, ...], step: int = 0) -> Payload: ...
    def wire_bytes(self, d: int) -> int | None: ...
    def reset(self) -> None: ...


class TwoStageCodec(Codec, Protocol):
    """A codec summed in two stages: P = project(x), Q = reproject(ΣP), x̂ = reconstruct(ΣQ)."""

    def project(self, x: Any, step: int = 0) -> Any: ...
    def reproject(self, p: Any) -> Any: ...
    def reconstruct(self, q: Any, out: Any = None) -> Any: ...


class Encoder:
    """Base class: ``encode(x, step) -> Payload``, ``decode(payload) -> float32 array``."""

    name: ClassVar[str] = ""
    unbiased: bool = False
    summable: bool = False
    sum_dtype: ClassVar[str] = "float32"
    two_stage: ClassVar[bool] = False
    dense: ClassVar[bool] = False

    def __init__(self, *, seed: int = 0, rank: int = 0) -> None:
        self.seed = seed
        self.rank = rank
        self._scratch: dict[ModuleType, Scratch] = {}

    def encode(self, x: Any, step: int = 0) -> Payload:
        """Compress ``x`` (any shape, float32) into a payload."""
        raise NotImplementedError

    def decode(self, payload: Payload, out: Any = None) -> Any:
        """The float32 array (payload.shape) that ``payload`` stands for."""
        raise NotImplementedError

    def decode_add(self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0) -> Any:
        """``out += weight·decoded[start : start + out.size]`` (1-D float32 ``out``).

        This default decodes the whole payload into a work array; encoders with a fused
        kernel override it (and set ``dense`` when a range costs only that range).
        """
        xp = array_module(out)
        work = self.work(xp, "decode-add", payload.size, np.float32)
        res = decode_into(self, payload, work)[start : start + out.size]
        if weight != 1.0:
            xp.multiply(res, np.float32(weight), out=res)
        xp.add(out, res, out=out)
        return out

    def key(self, step: int, *, shared: bool = False) -> int:
        """The counter-based random stream's key for (seed, rank, step)."""
        return stream_key(self.seed, self.rank, step, shared=shared)

    def wire_bytes(self, d: int) -> int | None:
        """Bytes on the wire for ``d`` elements, or None when they depend on the data."""
        return None

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        """(dtype, count) of each buffer of a ``nbytes`` payload for ``d`` elements."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget state carried between calls (none by default)."""

    def from_bytes(self, raw: Any, shape: tuple[int, ...], step: int = 0) -> Payload:
        """A payload viewing the concatenated bytes ``raw`` (uint8) received from a peer."""
        bufs, at = [], 0
        for dtype, count in self.layout(math.prod(shape), raw.nbytes):
            size = count * np.dtype(dtype).itemsize
            bufs.append(raw[at : at + size].view(dtype))
            at += size
        return Payload(tuple(bufs), shape, step)

    def work(self, xp: ModuleType, key: str, n: int, dtype: Any) -> Any:
        """A cached work array of ``n`` elements (reused by later calls)."""
        scratch = self._scratch.get(xp)
        if scratch is None:
            scratch = self._scratch[xp] = Scratch(xp)
        return scratch.get(key, n, dtype)

    def generator(self, xp: ModuleType, step: int, *, shared: bool = False) -> Any:
        """A generator seeded from (seed, rank, step); ``shared`` drops the rank."""
        key = [self.seed, step] if shared else [self.seed, self.rank, step]
        seq = np.random.SeedSequence(key)
        if xp is np:
            return np.random.Generator(np.random.PCG64(seq))
        return xp.random.default_rng(int(seq.generate_state(1, np.uint64)[0]))

    def out_array(self, xp: ModuleType, payload: Payload, out: Any) -> Any:
        """``out`` flattened, or a new float32 array for the decoded payload."""
        if out is None:
            return xp.empty(payload.size, dtype=np.float32)
        return out.reshape(-1)

    def __repr__(self) -> str:
        return f"<encoder {self.name}>"


def decode_into(encoder: Any, payload: Payload, out: Any) -> Any:
    """Decode into the 1-D float32 ``out`` even when the encoder returns a new array."""
    res = encoder.decode(payload, out=out)
    if not array_module(out).may_share_memory(res, out):
        out[...] = res.reshape(-1)
    return out


def decode_sum(
    codec: Any, payloads: Sequence[Payload], out: Any, *, weights: Sequence[float] | None = None,
    base: Any = None,
) -> Any:  # fmt: skip
    """``out = base + Σ_j weights_j·decode(payloads_j)`` (base 0, weights 1 by default).

    Payloads add in their order, so every rank gets the same bits. For a ``dense`` codec
    the output is done block by block, all payloads adding into a block while it is in
    cache: one pass over ``out`` however many payloads. Otherwise ``out`` is set once and
    each payload adds what it holds (a sparse payload only touches its indices).
    """
    xp = array_module(out)
    ws = [1.0] * len(payloads) if weights is None else list(weights)
    step = DECODE_BLOCK if codec.dense and xp is np else max(out.size, 1)
    for lo in range(0, out.size, step):
        part = out[lo : lo + step]
        if base is None:
            part[...] = 0
        else:
            part[...] = base[lo : lo + step]
        for payload, w in zip(payloads, ws, strict=True):
            codec.decode_add(payload, part, weight=w, start=lo)
    return out


def flat_f32(x: Any) -> Any:
    """``x`` as a contiguous 1-D float32 array (a view when it already is one)."""
    xp = array_module(x)
    return xp.ascontiguousarray(x, dtype=np.float32).reshape(-1)


def blocks(xp: ModuleType, d: int, block: int = 0) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive blocks (default :data:`BLOCK`); one block on a GPU."""
    step = (block or BLOCK) if xp is np else max(d, 1)
    for lo in range(0, d, step):
        yield lo, min(d, lo + step)


def block_len(xp: ModuleType, d: int) -> int:
    """Elements in the longest block that ``blocks(xp, d)`` yields (room for a work array)."""
    return min(d, BLOCK) if xp is np else d


def check_finite(total: float, x: Any, name: str) -> bool:
    """Raise ValueError when ``x`` has NaN/Inf; False when only ``total`` overflowed."""
    if math.isfinite(total):
        return True
    xp = array_module(x)
    if not bool(xp.isfinite(x).all()):
        raise ValueError(f"{name}: input contains NaN or Inf")
    return False


def sum_squares(flat: Any, name: str) -> float:
    """Σx² of a 1-D float32 array (in float64 when float32 overflows); checks finiteness."""
    xp = array_module(flat)
    if not flat.size:
        return 0.0
    with np.errstate(over="ignore"):
        total = float(xp.dot(flat, flat))
    if not check_finite(total, flat, name):
        wide = flat.astype(np.float64)
        total = float(xp.dot(wide, wide))
    return total


def stochastic_floor(r: Any, key: int, out: Any) -> Any:
    """``out = floor(r + u·2⁻¹⁶)``, u the 16-bit chunks 0.. of the stream ``key``; r >= 0.

    So ``out`` is floor(r) or floor(r)+1, the latter with probability frac(r) up to
    2**-16. ``r`` (host, float) is overwritten.
    """
    r += random_u16(key, 0, r.size) * r.dtype.type(2.0**-16)
    out[...] = r
    return out
