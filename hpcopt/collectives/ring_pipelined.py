"""Pipelined ring allreduce: the buffer is cut into slices that each run their own ring.

Every slice is a complete ring allreduce (p-1 reduce-scatter steps, p-1 allgather
steps) on a segment-sized chunk per rank, with its own tag. ``window`` slices are in
flight at once (Isend/Irecv); whichever receive completes first is reduced and its
slice moves on, and a finished slice makes room for the next. So while one slice is
being reduced, another is on the wire, the allgather of one slice overlaps the
reduce-scatter of the next, and each reduction reads a segment that has just arrived
and is still in cache.
"""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch, sync
from hpcopt.collectives._p2p import buffer_key, chunk_bounds, reducer, scratch_for
from hpcopt.collectives.registry import register
from hpcopt.collectives.ring import RING_COST
from hpcopt.registry import Option
from hpcopt.specs import positive_int, positive_size

__all__ = ["DEFAULT_SEGMENT_BYTES", "DEFAULT_WINDOW", "MAX_SLICES", "ring_pipelined"]

DEFAULT_SEGMENT_BYTES = 1 << 20
DEFAULT_WINDOW = 2
MAX_SLICES = 4096  # slices use tags 0..MAX_SLICES-1, within every MPI's guaranteed TAG_UB


class _Slice:
    """One slice's chunk views, landing area and position in its ring schedule."""

    __slots__ = ("chunks", "landing", "send", "step")

    def __init__(self, buf: Any, lo: int, hi: int, p: int, landing: Any) -> None:
        bounds = chunk_bounds(hi - lo, p)
        self.chunks = [buf[lo + bounds[i] : lo + bounds[i + 1]] for i in range(p)]
        self.landing = landing
        self.step = 0
        self.send: MPI.Request = MPI.REQUEST_NULL


class _Pipeline:
    """The event loop over all slices of one call."""

    def __init__(self, comm: MPI.Comm, slices: list[_Slice], op: MPI.Op, buf: Any) -> None:
        self.comm, self.slices, self.reduce_into = comm, slices, reducer(op, buf)
        self.p, self.r = comm.size, comm.rank
        self.receives: list[MPI.Request] = [MPI.REQUEST_NULL] * len(slices)
        self.keep = (comm, buf, op)  # the objects whose ids key this cached pipeline
        self.sent = 0

    def post(self, tag: int) -> None:
        """Start the current step of slice ``tag``: send one chunk right, receive one left."""
        s, p, r = self.slices[tag], self.p, self.r
        right, left = (r + 1) % p, (r - 1) % p
        if s.step < p - 1:
            out, into = s.chunks[(r - s.step) % p], s.landing
            into = into[: s.chunks[(r - s.step - 1) % p].size]
        else:
            k = s.step - (p - 1)
            out, into = s.chunks[(r + 1 - k) % p], s.chunks[(r - k) % p]
        sync(out)
        self.receives[tag] = self.comm.Irecv(into, left, tag)
        s.send = self.comm.Isend(out, right, tag)
        self.sent += out.nbytes

    def advance(self, tag: int) -> bool:
        """Finish slice ``tag``'s step after its receive; True while it has steps left."""
        s, p, r = self.slices[tag], self.p, self.r
        if s.step < p - 1:
            target = s.chunks[(r - s.step - 1) % p]
            self.reduce_into(target, s.landing[: target.size])
        s.send.Wait()
        s.step += 1
        return s.step < 2 * (p - 1)

    def run(self, window: int) -> int:
        """Keep ``window`` slices in flight; start the next one whenever one finishes."""
        count, receives = len(self.slices), self.receives
        for s in self.slices:
            s.step = 0
        started = min(window, count)
        for tag in range(started):
            self.post(tag)
        finished = 0
        while finished < count:
            tag = MPI.Request.Waitany(receives)
            if self.advance(tag):
                self.post(tag)
                continue
            receives[tag] = MPI.REQUEST_NULL
            finished += 1
            if started < count:
                self.post(started)
                started += 1
        return self.sent


def _slices(buf: Any, p: int, seg: int, scratch: Scratch) -> list[_Slice]:
    wanted = -(-buf.size // (seg * p))
    edges = chunk_bounds(buf.size, max(1, min(wanted, MAX_SLICES)))
    widest = [-(-(edges[i + 1] - edges[i]) // p) for i in range(len(edges) - 1)]
    tmp = scratch.get("ring-pipelined", sum(widest), buf.dtype)
    slices, offset = [], 0
    for i, width in enumerate(widest):
        slices.append(_Slice(buf, edges[i], edges[i + 1], p, tmp[offset : offset + width]))
        offset += width
    return slices


def ring_pipelined(
    comm: MPI.Comm,
    buf: Any,
    *,
    op: MPI.Op = MPI.SUM,
    scratch: Scratch | None = None,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    window: int = DEFAULT_WINDOW,
) -> int:
    """In-place ring allreduce over slices of ``segment_bytes`` per rank, ``window`` in flight."""
    p = comm.size
    if p == 1 or buf.size == 0:
        return 0
    if segment_bytes <= 0 or window <= 0:
        raise ValueError("segment_bytes and window must be positive")
    seg = max(1, segment_bytes // buf.itemsize)
    scratch = scratch_for(scratch, buf)
    key = ("ring-pipelined", seg, *buffer_key(comm, buf, op))
    pipeline = scratch.plan(key, lambda: _Pipeline(comm, _slices(buf, p, seg, scratch), op, buf))
    sync(buf)
    pipeline.sent = 0
    return pipeline.run(window)


register(
    "ring-pipelined",
    ring_pipelined,
    cost=RING_COST,
    options=(
        Option("segment", positive_size, DEFAULT_SEGMENT_BYTES, "bytes per rank per slice",
               arg="segment_bytes"),
        Option("window", positive_int, DEFAULT_WINDOW, "slices in flight at once"),
    ),
)  # fmt: skip
