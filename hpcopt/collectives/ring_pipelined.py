"""Ring allreduce with each chunk cut into segments kept in flight (Isend/Irecv).

While segment k of a reduce-scatter step is reduced, segments k+1... are still
arriving, and each reduction reads a segment that was just received (still in
cache), so the local reduction overlaps the communication.
"""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch, sync
from hpcopt.collectives._p2p import Reducer, chunk_bounds, reducer, scratch_for, sendrecv

__all__ = ["DEFAULT_SEGMENT_BYTES", "ring_pipelined"]

DEFAULT_SEGMENT_BYTES = 256 * 1024


def _segments(length: int, seg: int) -> range:
    return range(0, length, seg)


def _pipelined_step(
    comm: MPI.Comm, out: Any, inc: Any, landing: Any, seg: int, reduce_into: Reducer
) -> int:
    """Send ``out`` right while receiving into ``landing`` and reducing into ``inc``."""
    p, r = comm.size, comm.rank
    right, left = (r + 1) % p, (r - 1) % p
    sync(out)
    recvs = [comm.Irecv(landing[o : o + seg], left, 1) for o in _segments(inc.size, seg)]
    sends = [comm.Isend(out[o : o + seg], right, 1) for o in _segments(out.size, seg)]
    for o, req in zip(_segments(inc.size, seg), recvs, strict=True):
        req.Wait()
        reduce_into(inc[o : o + seg], landing[o : o + seg])
    MPI.Request.Waitall(sends)
    return out.nbytes


def ring_pipelined(
    comm: MPI.Comm,
    buf: Any,
    *,
    op: MPI.Op = MPI.SUM,
    scratch: Scratch | None = None,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
) -> int:
    """In-place ring allreduce whose reduce-scatter steps are pipelined by segment."""
    p, r = comm.size, comm.rank
    if p == 1 or buf.size == 0:
        return 0
    if segment_bytes <= 0:
        raise ValueError("segment_bytes must be positive")
    seg = max(1, segment_bytes // buf.itemsize)
    bounds = chunk_bounds(buf.size, p)
    widest = max(bounds[i + 1] - bounds[i] for i in range(p))
    tmp = scratch_for(scratch, buf).get("ring-pipelined", widest, buf.dtype)
    reduce_into = reducer(op, buf)

    def chunk(i: int) -> Any:
        return buf[bounds[i % p] : bounds[i % p + 1]]

    sent = 0
    for step in range(p - 1):
        inc = chunk(r - step - 1)
        sent += _pipelined_step(comm, chunk(r - step), inc, tmp[: inc.size], seg, reduce_into)
    right, left = (r + 1) % p, (r - 1) % p
    for step in range(p - 1):
        sent += sendrecv(comm, chunk(r + 1 - step), right, chunk(r - step), left)
    return sent
