"""The root path: senders hand their payload to a root, which decodes and sums them in rank
order and broadcasts the float32 sum (a parameter server on rank ``root``).

Unlike an allreduce, a rank may send nothing (``x=None``): a LAG worker that skips its
upload, or a rank that missed a round's deadline. Every rank first learns who sends (one
byte each, an Allgather); a rank that sends nothing hands MPI no payload bytes, and when
nobody sends there is no broadcast either. With ``keep`` the root keeps each rank's
latest decoded vector and the sum is over those (lazy aggregation); without it the sum is
over this round's senders only.

Byte counting, as the other paths: the flag counts 1 byte × (p−1) (Allgather), a sender
its payload bytes (Send), the root its broadcast 4d × (p−1) (its own contribution, which
every other rank must receive).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation.base import Clock, Result
from hpcopt.aggregation.wire import as_bytes
from hpcopt.backend import Scratch
from hpcopt.encoders import Codec

__all__ = ["RootSum", "root"]

_TAG = 0x2007


class RootSum:
    """One rank's side of root aggregations of d-element float32 vectors, round after round."""

    def __init__(
        self, comm: MPI.Comm, size: int, codec: Codec, *, root: int = 0, keep: bool = False
    ) -> None:
        self.comm, self.size, self.codec, self.root = comm, size, codec, root
        self.scratch = Scratch()
        self.total = np.zeros(size, dtype=np.float32)
        self.table = np.zeros((comm.size, size), np.float32) if keep and comm.rank == root else None
        self.keep = keep
        self.senders = np.zeros(comm.size, dtype=np.uint8)
        self.own: np.ndarray | None = None  # what the root holds of this rank's last payload
        self.messages = 0  # d-vector messages this rank handed to MPI in the last call

    def __call__(self, x: Any | None, step: int = 0) -> Result:
        """The sum (same on every rank) over the senders (or, with ``keep``, over every rank's
        latest vector) after this rank sent ``x`` (None: nothing)."""
        comm, p, clock = self.comm, self.comm.size, Clock()
        payload = None if x is None else self.codec.encode(x, step)
        own = None if payload is None else as_bytes(payload, self.scratch, "send")
        clock.lap("encode")
        mine = np.array([payload is not None], dtype=np.uint8)
        comm.Allgather(mine, self.senders)
        nbytes, self.messages = p - 1, 0
        if comm.rank != self.root and own is not None:
            comm.Send([own, MPI.BYTE], self.root, _TAG)
            nbytes += own.nbytes
            self.messages = 1
        clock.lap("communicate")
        if payload is not None:
            self.own = np.asarray(self.codec.decode(payload), np.float32).reshape(-1).copy()
        if not self.senders.any():
            if not self.keep:
                self.total[...] = 0
            clock.lap("decode")
            return Result(self.total, nbytes, clock.times)
        if comm.rank == self.root:
            self._gather(clock, step)
        comm.Bcast(self.total, self.root)
        if comm.rank == self.root:
            nbytes += self.total.nbytes * (p - 1)
            self.messages = p - 1
        clock.lap("communicate")
        return Result(self.total, nbytes, clock.times)

    def _gather(self, clock: Clock, step: int) -> None:
        """Root: receive each sender's payload in rank order, decode, and sum."""
        work = self.scratch.get("work", self.size, np.float32)
        vectors = []
        for rank in np.flatnonzero(self.senders):
            if rank == self.root:
                vector = self.own
            else:
                clock.lap("decode")
                status = MPI.Status()
                self.comm.Probe(int(rank), _TAG, status)
                buf = self.scratch.get("recv", status.Get_count(MPI.BYTE), np.uint8)
                self.comm.Recv([buf, MPI.BYTE], int(rank), _TAG)
                clock.lap("communicate")
                payload = self.codec.from_bytes(buf, (self.size,), step)
                vector = np.asarray(self.codec.decode(payload, out=work)).reshape(-1)
            if self.table is not None:
                self.table[rank] = vector
            else:
                vectors.append(np.array(vector, copy=True))
        rows = self.table if self.table is not None else vectors
        self.total[...] = rows[0]
        for row in rows[1:]:
            self.total += row
        clock.lap("decode")


def root(
    comm: MPI.Comm, x: Any, codec: Codec, *, step: int = 0, scratch: Scratch | None = None
) -> Result:
    """Every rank sends ``x``; the root sums them in rank order and broadcasts the sum."""
    res = RootSum(comm, int(x.size), codec)(x.reshape(-1), step)
    return Result(res.out.reshape(x.shape), res.nbytes, res.times)
