"""QSGD with Elias-gamma coding of zero runs and levels (QSGD's variable-length scheme).

Stream after the float32 norm: gamma(nnz+1); the unary prefixes of gamma(gap+1) for
every nonzero; the unary prefixes of gamma(level); one sign bit per nonzero; then the
binary tails of the gap codes and of the level codes. Every codeword costs exactly its
Elias-gamma length; keeping prefixes and tails in separate sections only reorders bits
so that decoding is vectorized (the prefixes alone delimit all codewords).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcopt.backend import array_module, to_host
from hpcopt.encoders import kernels
from hpcopt.encoders.base import (
    Encoder,
    Payload,
    block_len,
    blocks,
    check_finite,
    flat_f32,
    stochastic_floor,
)
from hpcopt.encoders.registry import register
from hpcopt.errors import UsageError

__all__ = ["QSGDElias", "decode_stream", "encode_stream", "read_fields", "write_fields"]


def _bitlen(v: np.ndarray) -> np.ndarray:
    """Bit lengths of positive integers below 2**53."""
    return np.frexp(v.astype(np.float64))[1].astype(np.int64)


def write_fields(bits: np.ndarray, offsets: np.ndarray, values: np.ndarray, widths: Any) -> None:
    """Write ``values`` MSB first, ``widths`` bits each, at bit ``offsets`` of ``bits``."""
    widths = np.broadcast_to(np.asarray(widths, dtype=np.int64), values.shape)
    for j in range(int(widths.max()) if widths.size else 0):
        act = np.flatnonzero(widths > j)
        shift = (widths[act] - 1 - j).astype(np.uint64)
        bits[offsets[act] + j] = (values[act].astype(np.uint64) >> shift) & np.uint64(1)


def read_fields(bits: np.ndarray, offsets: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Inverse of :func:`write_fields`: the unsigned values stored there."""
    vals = np.zeros(offsets.size, dtype=np.int64)
    for j in range(int(widths.max()) if widths.size else 0):
        act = np.flatnonzero(widths > j)
        vals[act] = (vals[act] << 1) | bits[offsets[act] + j]
    return vals


def _read_gamma(bits: np.ndarray, at: int) -> tuple[int, int]:
    """One gamma codeword at bit ``at``: (value, next bit position)."""
    z = int(np.argmax(bits[at:]))
    value = int(read_fields(bits, np.array([at + z]), np.array([z + 1]))[0])
    return value, at + 2 * z + 1


def encode_stream(flat: np.ndarray, c: float, key: int) -> np.ndarray:
    """The stream of levels floor(|x|·c + u·2⁻¹⁶) (NumPy reference of the compiled coder)."""
    r = np.abs(flat).astype(np.float64)
    r *= c
    lev = np.empty(flat.size, dtype=np.int64)
    stochastic_floor(r, key, lev)
    nz = np.flatnonzero(lev)
    gaps = np.diff(nz, prepend=-1)  # gap + 1 >= 1
    lv = lev[nz]
    tails = np.concatenate([_bitlen(gaps), _bitlen(lv)]) - 1
    nnz = nz.size
    head = 2 * (nnz + 1).bit_length() - 1
    unary_end = head + int(tails.sum()) + 2 * nnz
    bits = np.zeros(unary_end + nnz + int(tails.sum()), dtype=np.uint8)
    write_fields(bits, np.array([0]), np.array([nnz + 1]), head)
    bits[head + np.cumsum(tails + 1) - 1] = 1
    bits[unary_end : unary_end + nnz] = flat[nz] < 0
    starts = unary_end + nnz + np.cumsum(tails) - tails
    write_fields(bits, starts, np.concatenate([gaps, lv]), tails)
    return np.packbits(bits)


def decode_stream(stream: np.ndarray, d: int, scale: float) -> np.ndarray:
    """The float32 vector of ``d`` elements that a stream stands for (NumPy reference)."""
    host = np.zeros(d, dtype=np.float32)
    bits = np.unpackbits(stream)
    if not bits.size:
        return host
    count, at = _read_gamma(bits, 0)
    nnz = count - 1
    if nnz:
        ones = np.flatnonzero(bits[at:])[: 2 * nnz] + at
        z = np.diff(ones, prepend=at - 1) - 1
        unary_end = int(ones[-1]) + 1
        neg = bits[unary_end : unary_end + nnz]
        starts = unary_end + nnz + np.cumsum(z) - z
        codes = read_fields(bits, starts, z) | (np.int64(1) << z)
        pos = np.cumsum(codes[:nnz]) - 1
        host[pos] = codes[nnz:] * scale * (1 - 2 * neg.astype(np.float64))
    return host


class QSGDElias(Encoder):
    """One norm for the whole vector; ``levels=0`` means s = round(√d)."""

    name = "qsgd-elias"
    unbiased = True

    def __init__(self, *, levels: int = 0, seed: int = 0, rank: int = 0) -> None:
        super().__init__(seed=seed, rank=rank)
        if not 0 <= levels < 2**31:
            raise UsageError(f"qsgd-elias levels must be in 0..2**31-1, got {levels}")
        self.levels = levels

    def levels_for(self, d: int) -> int:
        """The s used for ``d`` elements."""
        return self.levels or max(1, round(math.sqrt(d)))

    def _norm(self, flat: np.ndarray) -> float:
        """‖x‖₂ (summed in float64, block by block), as a float32 value; checks finiteness."""
        wide = self.work(np, "wide", block_len(np, flat.size), np.float64)
        sq = 0.0
        for lo, hi in blocks(np, flat.size):
            w = wide[: hi - lo]
            w[...] = flat[lo:hi]
            sq += float(np.einsum("i,i->", w, w))  # not BLAS: no thread pool in a loop
        check_finite(sq, flat, self.name)
        return float(np.float32(math.sqrt(sq)))

    def encode(self, x: Any, step: int = 0) -> Payload:
        flat = flat_f32(to_host(x))
        norm = self._norm(flat)
        c = self.levels_for(flat.size) / norm if norm > 0 else 0.0
        if kernels.compiled():
            stream = self._compiled_stream(flat, c, self.key(step))
        else:
            stream = encode_stream(flat, c, self.key(step))
        norm_buf = self.work(np, "norm", 1, np.float32)
        norm_buf[0] = norm
        if array_module(x) is not np:
            norm_buf, stream = array_module(x).asarray(norm_buf), array_module(x).asarray(stream)
        return Payload((norm_buf, stream), tuple(x.shape), step)

    def _compiled_stream(self, flat: np.ndarray, c: float, key: int) -> np.ndarray:
        """The stream written by the compiled coder into a work array (grown when short)."""
        room = self.work(np, "stream", max(64, flat.size // 2), np.uint8)
        got = kernels.elias_encode(flat, c, key, room)
        if got < 0:
            room = self.work(np, "stream", -got + -got // 4, np.uint8)
            got = kernels.elias_encode(flat, c, key, room)
        return room[:got]

    def _scale(self, payload: Payload) -> float:
        return float(payload.buffers[0][0]) / self.levels_for(payload.size)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        res = self.out_array(array_module(payload.buffers[1]), payload, out)
        if array_module(res) is np and kernels.compiled():
            kernels.elias_decode(payload.buffers[1], self._scale(payload), res, 1.0, False)
        else:
            host = decode_stream(to_host(payload.buffers[1]), res.size, self._scale(payload))
            res[...] = host if array_module(res) is np else array_module(res).asarray(host)
        return res.reshape(payload.shape)

    def decode_add(self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0) -> Any:
        if start or out.size != payload.size:
            raise ValueError("qsgd-elias: decode_add covers the whole vector (start 0)")
        if array_module(out) is np and kernels.compiled():
            kernels.elias_decode(payload.buffers[1], self._scale(payload), out, weight, True)
            return out
        return super().decode_add(payload, out, weight=weight)

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        return [(np.dtype(np.float32), 1), (np.dtype(np.uint8), nbytes - 4)]


register(QSGDElias.name, QSGDElias)
