"""The two-phase path (DeepSpeed-style compressed allreduce).

Chunk j of every rank goes to rank j (Alltoallv); rank j adds its own exact chunk to the
decoded ones, re-encodes the sum, and all ranks Allgatherv the re-encoded chunks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation.base import Clock, Result
from hpcopt.aggregation.gather import encode_gather
from hpcopt.aggregation.wire import SPARE, Gathered, displacements, pack, padded
from hpcopt.backend import Scratch, array_module, sync
from hpcopt.encoders import Codec
from hpcopt.encoders.base import decode_into, decode_sum

__all__ = ["two_phase"]


def _bounds(d: int, p: int) -> list[int]:
    return [j * d // p for j in range(p + 1)]


def _chunk_capacity(codec: Codec, n: int) -> int:
    """Send-buffer room for one chunk: its wire size, or a generous guess when data-dependent."""
    wire = codec.wire_bytes(n)
    return int(padded(wire if wire is not None else 8 * n + 64))


def _encode_chunks(
    flat: Any, codec: Codec, step: int, p: int, me: int, scratch: Scratch
) -> tuple[Any, np.ndarray]:
    """Phase 1 encoding: chunk j's payload bytes for rank j, 8-byte aligned in one buffer."""
    b = _bounds(flat.size, p)
    room = sum(_chunk_capacity(codec, b[j + 1] - b[j]) for j in range(p) if j != me)
    send = scratch.get("send", room, np.uint8)
    sizes = scratch.get("send-sizes", p, np.int64)
    sizes[...] = 0
    at = 0
    for j in range(p):
        if j != me:
            payload = codec.encode(flat[b[j] : b[j + 1]], step * (p + 1) + j)
            if at + payload.nbytes > send.size:  # a data-dependent payload above the guess
                grown = scratch.get("send-grown", 2 * (at + payload.nbytes), np.uint8)
                grown[:at] = send[:at]
                send = grown
            sizes[j] = pack(payload, send[at:]).size
            at += int(padded(payload.nbytes))
    return send, sizes


def _exchange(comm: MPI.Comm, send: Any, sizes: np.ndarray, scratch: Scratch) -> Gathered:
    """Alltoallv of the chunk payloads: what each rank sent to this one."""
    p = comm.size
    rsizes = scratch.get("recv-sizes", p, np.int64)
    comm.Alltoall(sizes, rsizes)
    rdispl = displacements(rsizes, scratch.get("recv-displs", p, np.int64))
    sdispl = displacements(sizes, scratch.get("send-displs", p, np.int64))
    recv = scratch.get("recv", int(rdispl[-1] + padded(int(rsizes[-1]))), np.uint8, SPARE)
    sync(send)
    comm.Alltoallv([send, (sizes, sdispl), MPI.BYTE], [recv, (rsizes, rdispl), MPI.BYTE])
    return Gathered(recv, rdispl, rsizes)


def two_phase(
    comm: MPI.Comm, x: Any, codec: Codec, *, step: int = 0, scratch: Scratch | None = None
) -> Result:
    """Reduce-scatter of compressed chunks, then allgather of re-compressed sums."""
    xp = array_module(x)
    scratch = scratch or Scratch(xp)
    p, me = comm.size, comm.rank
    flat = x.reshape(-1)
    b = _bounds(flat.size, p)
    mine = (b[me + 1] - b[me],)
    clock = Clock()
    send, sizes = _encode_chunks(flat, codec, step, p, me, scratch)
    clock.lap("encode")
    received = _exchange(comm, send, sizes, scratch)
    clock.lap("communicate")
    parts = [
        codec.from_bytes(raw, mine, step * (p + 1) + me)
        for j, raw in enumerate(received.slots())
        if j != me
    ]
    acc = scratch.get("acc", mine[0], np.float32)
    decode_sum(codec, parts, acc, base=flat[b[me] : b[me + 1]])
    clock.lap("decode")
    sent = int(sizes.sum()) + 8 * (p - 1)
    gathered, sent_again = encode_gather(comm, acc, codec, step * (p + 1) + p, scratch, clock)
    out = scratch.get("out", flat.size, np.float32)
    for j, raw in enumerate(gathered.slots()):
        payload = codec.from_bytes(raw, (b[j + 1] - b[j],), step * (p + 1) + p)
        decode_into(codec, payload, out[b[j] : b[j + 1]])
    clock.lap("decode")
    return Result(out.reshape(x.shape), sent + sent_again, clock.times)
