"""Broadcast for large messages: binomial scatter of p chunks, then a ring allgather."""

from __future__ import annotations

import math
from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.collectives._p2p import chunk_bounds, recv, send
from hpcopt.collectives.cost import Coefficients, CostForm
from hpcopt.collectives.registry import BCAST
from hpcopt.collectives.ring import ring_allgather
from hpcopt.collectives.tree import binomial_links

__all__ = ["scatter_allgather"]


def scatter_allgather(
    comm: MPI.Comm, buf: Any, *, root: int = 0, scratch: Scratch | None = None
) -> int:
    """Broadcast: the root scatters chunk i to the rank i places after it (binomial tree),
    then a ring allgather completes the buffer everywhere. Returns bytes sent."""
    p, vr = comm.size, (comm.rank - root) % comm.size
    if p == 1 or buf.size == 0:
        return 0
    bounds = chunk_bounds(buf.size, p)

    def chunks(lo: int, hi: int) -> Any:
        return buf[bounds[lo] : bounds[min(hi, p)]]

    parent, children = binomial_links(p, vr)
    if parent:  # this subtree's chunks come from the parent
        recv(comm, chunks(vr, vr + parent), (vr - parent + root) % p)
    sent = sum(send(comm, chunks(vr + m, vr + 2 * m), (vr + m + root) % p) for m in children)
    return sent + ring_allgather(comm, buf, scratch=scratch, shift=root)


def _cost(p: int, n: float) -> Coefficients:
    if p == 1:
        return 0.0, 0.0, 0.0
    return float(math.ceil(math.log2(p)) + p - 1), 2 * (p - 1) / p * n, 0.0


BCAST.add("scatter-allgather", scatter_allgather, cost=CostForm(
    "bcast-scatter-allgather", _cost, "(ceil(log2 p) + p-1)a + 2(p-1)/p*n*b"))  # fmt: skip
