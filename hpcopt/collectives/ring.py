"""Ring allreduce: reduce-scatter then allgather around a ring (bandwidth-optimal)."""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.collectives._p2p import chunk_bounds, reducer, scratch_for, sendrecv

__all__ = ["ring"]


def ring(comm: MPI.Comm, buf: Any, *, op: MPI.Op = MPI.SUM, scratch: Scratch | None = None) -> int:
    """In-place ring allreduce; p-1 reduce-scatter steps, then p-1 allgather steps."""
    p, r = comm.size, comm.rank
    if p == 1 or buf.size == 0:
        return 0
    bounds = chunk_bounds(buf.size, p)
    widest = max(bounds[i + 1] - bounds[i] for i in range(p))
    tmp = scratch_for(scratch, buf).get("ring", widest, buf.dtype)
    reduce_into = reducer(op, buf)
    right, left = (r + 1) % p, (r - 1) % p

    def chunk(i: int) -> Any:
        return buf[bounds[i % p] : bounds[i % p + 1]]

    sent = 0
    for step in range(p - 1):
        incoming = chunk(r - step - 1)
        landing = tmp[: incoming.size]
        sent += sendrecv(comm, chunk(r - step), right, landing, left)
        reduce_into(incoming, landing)
    for step in range(p - 1):
        sent += sendrecv(comm, chunk(r + 1 - step), right, chunk(r - step), left)
    return sent
