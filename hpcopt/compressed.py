"""Allreduce of compressed payloads: the sum over ranks of what each rank encoded.

Every function returns :class:`Result` ``(out, nbytes, times)``: ``out`` is the estimate
of the **sum** over ranks (the exact sum is the reference; divide by ``comm.size`` for
the mean), the same on every rank; ``nbytes`` the bytes this rank's buffers contribute
to the sends it makes; ``times`` the MPI.Wtime split {encode, communicate, decode}.

Byte counting: a point-to-point call or a core algorithm counts what it hands to MPI
sends. A collective made through MPI (Allgather/Allgatherv/Alltoall) counts this rank's
own contribution × (p−1), the bytes that must leave the rank whatever the algorithm
inside MPI (Alltoallv counts exactly what goes to the other ranks). The size exchanges
before a variable-size gather are counted too (8 bytes per peer).

Paths:
- ``summable`` (none, fp16, bf16, randomk): one core allreduce of the encoded buffer.
  float32 sums with MPI.SUM; fp16 sums in float16; bf16 sums through a user-defined MPI
  op that widens to float32, adds and rounds back. MPI user ops only run inside MPI's
  own Allreduce, so bf16 (and fp16 with the ``native`` algorithm) use it; fp16 with a
  point-to-point core algorithm adds float16 arrays locally with MPI.SUM.
- ``allgather``: Allgather of sizes, Allgatherv of every rank's payload bytes, decode
  and sum (in rank order, so all ranks get the same result).
- ``two-phase``: chunk j of every rank goes to rank j (Alltoallv); rank j adds its own
  exact chunk to the decoded ones, re-encodes the sum and all ranks Allgatherv it.
- ``vote`` (sign only): Allgatherv of signs and scales; out = p·mean(scale)·sign(Σ signs).
- ``powersgd``: two core allreduces (P, then Q).
Payloads always travel as raw bytes through uppercase (buffer) calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from mpi4py import MPI

from hpcopt import halfcast
from hpcopt.backend import Scratch, array_module, sync
from hpcopt.collectives import get_algorithm
from hpcopt.encoders.base import Payload, decode_into
from hpcopt.encoders.bf16 import bf16_round, bf16_widen
from hpcopt.errors import UsageError

__all__ = [
    "METHODS",
    "Result",
    "allgather",
    "compressed_allreduce",
    "powersgd",
    "resolve_method",
    "summable",
    "two_phase",
    "vote",
]

METHODS = ("auto", "summable", "allgather", "two-phase", "vote", "powersgd")

_ALIGN = 8
_USER_OPS: dict[str, MPI.Op] = {}


class Result(NamedTuple):
    """The estimated sum, bytes sent by this rank, and the time split in seconds."""

    out: Any
    nbytes: int
    times: dict[str, float]


class _Clock:
    """Accumulates MPI.Wtime intervals into the three phases."""

    __slots__ = ("t", "times")

    def __init__(self) -> None:
        self.times = {"encode": 0.0, "communicate": 0.0, "decode": 0.0}
        self.t = MPI.Wtime()

    def lap(self, phase: str) -> None:
        now = MPI.Wtime()
        self.times[phase] += now - self.t
        self.t = now


def _fp16_sum(inbuf: Any, inoutbuf: Any, datatype: MPI.Datatype) -> None:
    """MPI user op: float16 sum of uint16-typed buffers."""
    src = np.frombuffer(inbuf, dtype=np.float16)
    dst = np.frombuffer(inoutbuf, dtype=np.float16)
    halfcast.add_half(dst, src)


def _bf16_sum(inbuf: Any, inoutbuf: Any, datatype: MPI.Datatype) -> None:
    """MPI user op: bfloat16 sum (widen, add in float32, round to nearest even)."""
    src = np.frombuffer(inbuf, dtype=np.uint16)
    dst = np.frombuffer(inoutbuf, dtype=np.uint16)
    a = bf16_widen(dst, np.empty(dst.size, np.uint32)).view(np.float32)
    b = bf16_widen(src, np.empty(src.size, np.uint32)).view(np.float32)
    np.add(a, b, out=a)
    bf16_round(a.view(np.uint32), dst, np.empty(dst.size, np.uint32))


def _user_op(name: str) -> MPI.Op:
    op = _USER_OPS.get(name)
    if op is None:
        fn = _fp16_sum if name == "fp16" else _bf16_sum
        op = _USER_OPS[name] = MPI.Op.Create(fn, commute=True)
    return op


def _allreduce(comm: MPI.Comm, buf: Any, algorithm: str, scratch: Scratch | None) -> int:
    """Sum ``buf`` in place over ranks with a core algorithm; bytes sent."""
    if buf.dtype == np.float32 or (buf.dtype == np.float16 and algorithm != "native"):
        return get_algorithm(algorithm).run(comm, buf, op=MPI.SUM, scratch=scratch)
    if algorithm != "native":
        raise UsageError(f"{buf.dtype} payload sums need the native algorithm, not {algorithm}")
    if array_module(buf) is not np:
        raise UsageError("fp16/bf16 sums through MPI user ops need host buffers")
    sync(buf)
    op = _user_op("fp16" if buf.dtype == np.float16 else "bf16")
    comm.Allreduce(MPI.IN_PLACE, [buf, MPI.UINT16_T], op)
    return buf.nbytes if comm.size > 1 else 0


def summable(
    comm: MPI.Comm, x: Any, encoder: Any, *, step: int = 0, algorithm: str = "native",
    scratch: Scratch | None = None,
) -> Result:  # fmt: skip
    """Encode, sum the single encoded buffer with a core allreduce, decode."""
    if not encoder.summable:
        raise UsageError(f"encoder {encoder.name} is not summable; use allgather or two-phase")
    clock = _Clock()
    payload = encoder.encode(x, step)
    (buf,) = payload.buffers
    clock.lap("encode")
    nbytes = _allreduce(comm, buf, algorithm, scratch)
    clock.lap("communicate")
    out = encoder.decode(payload)
    clock.lap("decode")
    return Result(out, nbytes, clock.times)


def _padded(n: Any) -> Any:
    """``n`` (an int or an array of them) rounded up to a multiple of the alignment."""
    return -(-n // _ALIGN) * _ALIGN


def _to_bytes(payload: Payload, out: Any) -> Any:
    """Copy the payload's buffers one after another into uint8 ``out``; returns the filled part."""
    at = 0
    for b in payload.buffers:
        flat = b.reshape(-1).view(np.uint8)
        out[at : at + flat.size] = flat
        at += flat.size
    return out[:at]


def _displacements(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(_padded(sizes))[:-1]]).astype(np.int64)


def _gather_bytes(comm: MPI.Comm, own: Any, scratch: Scratch) -> tuple[Any, np.ndarray, int]:
    """Allgatherv of every rank's bytes; (received, [displacements; sizes], bytes sent)."""
    p = comm.size
    sizes = scratch.get("sizes", p, np.int64)
    comm.Allgather(np.array([own.size], dtype=np.int64), sizes)
    displs = _displacements(sizes)
    recv = scratch.get("gathered", int(displs[-1] + _padded(int(sizes[-1]))), np.uint8)
    sync(own)
    comm.Allgatherv([own, MPI.BYTE], [recv, (sizes, displs), MPI.BYTE])
    return recv, np.stack([displs, sizes]), (own.size + 8) * (p - 1)


def _encode_gather(
    comm: MPI.Comm, x: Any, encoder: Any, step: int, scratch: Scratch, clock: _Clock
) -> tuple[Any, np.ndarray, int]:
    """Encode ``x`` and Allgatherv every rank's payload bytes (as :func:`_gather_bytes`)."""
    payload = encoder.encode(x, step)
    own = _to_bytes(payload, scratch.get("own", payload.nbytes, np.uint8))
    clock.lap("encode")
    gathered = _gather_bytes(comm, own, scratch)
    clock.lap("communicate")
    return gathered


def _decode_sum(
    encoder: Any, recv: Any, table: np.ndarray, shape: tuple[int, ...], step: int, out: Any,
    work: Any,
) -> Any:  # fmt: skip
    """``out`` = sum of the decoded payloads in ``recv`` (rank order)."""
    xp = array_module(out)
    out[...] = 0
    for start, size in table.T:
        payload = encoder.from_bytes(recv[start : start + size], shape, step)
        xp.add(out, encoder.decode(payload, out=work).reshape(-1), out=out)
    return out


def allgather(
    comm: MPI.Comm, x: Any, encoder: Any, *, step: int = 0, scratch: Scratch | None = None
) -> Result:
    """Every rank gathers every payload and sums the decoded vectors."""
    xp = array_module(x)
    scratch = scratch or Scratch(xp)
    clock = _Clock()
    recv, table, nbytes = _encode_gather(comm, x, encoder, step, scratch, clock)
    out = xp.empty(x.size, dtype=np.float32)
    _decode_sum(encoder, recv, table, tuple(x.shape), step, out, scratch.get("w", x.size, "f4"))
    clock.lap("decode")
    return Result(out.reshape(x.shape), nbytes, clock.times)


def _bounds(d: int, p: int) -> list[int]:
    return [j * d // p for j in range(p + 1)]


def _chunk_capacity(encoder: Any, n: int) -> int:
    """Send-buffer room for one chunk: its wire size, or a generous guess when data-dependent."""
    wire = encoder.wire_bytes(n)
    return _padded(wire if wire is not None else 8 * n + 64)


def _encode_chunks(
    flat: Any, encoder: Any, step: int, p: int, me: int, scratch: Scratch
) -> tuple[Any, np.ndarray]:
    """Phase 1 encoding: chunk j's payload bytes for rank j, 8-byte aligned in one buffer."""
    b = _bounds(flat.size, p)
    room = sum(_chunk_capacity(encoder, b[j + 1] - b[j]) for j in range(p) if j != me)
    send = scratch.get("send", room, np.uint8)
    sizes = np.zeros(p, dtype=np.int64)
    at = 0
    for j in range(p):
        if j != me:
            payload = encoder.encode(flat[b[j] : b[j + 1]], step * (p + 1) + j)
            if at + payload.nbytes > send.size:  # a data-dependent payload above the guess
                grown = scratch.get("send-grown", 2 * (at + payload.nbytes), np.uint8)
                grown[:at] = send[:at]
                send = grown
            sizes[j] = _to_bytes(payload, send[at:]).size
            at += _padded(payload.nbytes)
    return send, sizes


def _exchange(comm: MPI.Comm, send: Any, sizes: np.ndarray, scratch: Scratch) -> tuple[Any, Any]:
    """Alltoallv of the chunk payloads; (received bytes, [displacements; sizes])."""
    rsizes = np.empty(comm.size, dtype=np.int64)
    comm.Alltoall(sizes, rsizes)
    rdispl = _displacements(rsizes)
    recv = scratch.get("recv", int(rdispl[-1] + _padded(int(rsizes[-1]))), np.uint8)
    sync(send)
    comm.Alltoallv(
        [send, (sizes, _displacements(sizes)), MPI.BYTE], [recv, (rsizes, rdispl), MPI.BYTE]
    )
    return recv, np.stack([rdispl, rsizes])


def two_phase(
    comm: MPI.Comm, x: Any, encoder: Any, *, step: int = 0, scratch: Scratch | None = None
) -> Result:
    """Reduce-scatter of compressed chunks, then allgather of re-compressed sums."""
    xp = array_module(x)
    scratch = scratch or Scratch(xp)
    p, me = comm.size, comm.rank
    flat = x.reshape(-1)
    b = _bounds(flat.size, p)
    mine = (b[me + 1] - b[me],)
    clock = _Clock()
    send, sizes = _encode_chunks(flat, encoder, step, p, me, scratch)
    clock.lap("encode")
    recv, table = _exchange(comm, send, sizes, scratch)
    clock.lap("communicate")
    acc = scratch.get("acc", mine[0], np.float32)
    work = scratch.get("w", mine[0], np.float32)
    acc[...] = flat[b[me] : b[me + 1]]
    for j in range(p):
        if j != me:
            start, size = table[:, j]
            payload = encoder.from_bytes(recv[start : start + size], mine, step * (p + 1) + me)
            xp.add(acc, encoder.decode(payload, out=work), out=acc)
    clock.lap("decode")
    recv, table, sent = _encode_gather(comm, acc, encoder, step * (p + 1) + p, scratch, clock)
    out = xp.empty(flat.size, dtype=np.float32)
    for j in range(p):
        start, size = table[:, j]
        chunk = (b[j + 1] - b[j],)
        payload = encoder.from_bytes(recv[start : start + size], chunk, step * (p + 1) + p)
        decode_into(encoder, payload, out[b[j] : b[j + 1]])
    clock.lap("decode")
    sent += int(sizes.sum()) + 8 * (p - 1)
    return Result(out.reshape(x.shape), sent, clock.times)


def vote(
    comm: MPI.Comm, x: Any, encoder: Any, *, step: int = 0, scratch: Scratch | None = None
) -> Result:
    """Majority vote of sign payloads: p·mean(scale)·sign(Σ signs); ties give 0."""
    if encoder.name not in ("sign", "ef-sign"):
        raise UsageError(f"majority vote needs the sign encoder, not {encoder.name}")
    xp = array_module(x)
    scratch = scratch or Scratch(xp)
    clock = _Clock()
    recv, table, nbytes = _encode_gather(comm, x, encoder, step, scratch, clock)
    votes = scratch.get("votes", x.size, np.int32)
    votes[...] = 0
    total = 0.0
    for start, size in table.T:
        scale, bits = encoder.from_bytes(recv[start : start + size], tuple(x.shape)).buffers
        total += float(scale[0])
        xp.add(votes, xp.unpackbits(bits)[: x.size], out=votes)
    out = xp.sign(comm.size - 2 * votes).astype(np.float32) * np.float32(total)
    clock.lap("decode")
    return Result(out.reshape(x.shape), nbytes, clock.times)


def powersgd(
    comm: MPI.Comm, x: Any, encoder: Any, *, step: int = 0, algorithm: str = "native",
    scratch: Scratch | None = None,
) -> Result:  # fmt: skip
    """PowerSGD's two dependent sums (P, then Q) with a core allreduce."""
    if not getattr(encoder, "two_stage", False):
        raise UsageError(f"the powersgd path needs the powersgd encoder, not {encoder.name}")
    clock = _Clock()
    p = encoder.project(x, step)
    clock.lap("encode")
    nbytes = _allreduce(comm, p.reshape(-1), algorithm, scratch)
    clock.lap("communicate")
    q = encoder.reproject(p)
    clock.lap("encode")
    nbytes += _allreduce(comm, q.reshape(-1), algorithm, scratch)
    clock.lap("communicate")
    out = encoder.reconstruct(q)
    clock.lap("decode")
    return Result(out, nbytes, clock.times)


def resolve_method(encoder: Any, method: str) -> str:
    """The path ``method`` takes for ``encoder``: ``auto`` picks powersgd for two-stage
    encoders, else summable or allgather. UsageError for unknown or unusable methods.
    """
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose from: {', '.join(METHODS)}")
    if method == "auto":
        if getattr(encoder, "two_stage", False):
            return "powersgd"
        return "summable" if encoder.summable else "allgather"
    if method == "two-phase" and hasattr(encoder, "residual"):
        raise UsageError("two-phase encodes chunks: wrap each chunk's encoder, not the vector's")
    return method


_PATHS: dict[str, Callable[..., Result]] = {
    "summable": summable,
    "allgather": allgather,
    "two-phase": two_phase,
    "vote": vote,
    "powersgd": powersgd,
}


def compressed_allreduce(
    comm: MPI.Comm, x: Any, encoder: Any, *, method: str = "auto", step: int = 0,
    algorithm: str = "native", scratch: Scratch | None = None,
) -> Result:  # fmt: skip
    """Sum ``x`` over ranks through ``encoder`` with ``method`` (see module docstring)."""
    path = resolve_method(encoder, method)
    kwargs: dict[str, Any] = {"step": step, "scratch": scratch}
    if path in ("summable", "powersgd"):
        kwargs["algorithm"] = algorithm
    return _PATHS[path](comm, x, encoder, **kwargs)
