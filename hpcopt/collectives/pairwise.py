"""Pairwise exchange: reduce-scatter and alltoall in p−1 steps, step s with ranks r ± s."""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch, array_module
from hpcopt.collectives._p2p import chunk_bounds, reducer, scratch_for, sendrecv
from hpcopt.collectives.bruck import equal_blocks
from hpcopt.collectives.cost import Coefficients, CostForm
from hpcopt.collectives.registry import ALLTOALL, REDUCE_SCATTER
from hpcopt.collectives.ring import RING_SCATTER_COST

__all__ = ["pairwise_alltoall", "pairwise_reduce_scatter"]


def pairwise_reduce_scatter(
    comm: MPI.Comm, buf: Any, *, op: MPI.Op = MPI.SUM, scratch: Scratch | None = None
) -> int:
    """Reduce-scatter in place over p blocks, rank r's result at block r: step s sends block
    r + s to its owner and reduces rank r − s's copy of block r into this rank's."""
    p, r = comm.size, comm.rank
    if p == 1 or buf.size == 0:
        return 0
    bounds = chunk_bounds(buf.size, p)
    mine = buf[bounds[r] : bounds[r + 1]]
    landing = scratch_for(scratch, buf).get("pairwise", mine.size, buf.dtype)
    reduce_into, sent = reducer(op, buf), 0
    for s in range(1, p):
        dst, src = (r + s) % p, (r - s) % p
        sent += sendrecv(comm, buf[bounds[dst] : bounds[dst + 1]], dst, landing, src)
        reduce_into(mine, landing)
    return sent


def pairwise_alltoall(
    comm: MPI.Comm, send: Any, recv: Any, *, scratch: Scratch | None = None
) -> int:
    """Alltoall of p equal blocks, out of place: step s sends block r + s to its owner and
    receives rank r − s's block r."""
    p, r = comm.size, comm.rank
    n = equal_blocks(send, p)
    array_module(send).copyto(recv[r * n : (r + 1) * n], send[r * n : (r + 1) * n])
    sent = 0
    for s in range(1, p):
        dst, src = (r + s) % p, (r - s) % p
        sent += sendrecv(comm, send[dst * n : (dst + 1) * n], dst, recv[src * n : (src + 1) * n],
                         src)  # fmt: skip
    return sent


def _alltoall_cost(p: int, n: float) -> Coefficients:
    return float(p - 1), (p - 1) * n, 0.0


# Pairwise reduce-scatter moves and reduces what the ring does, in as many steps.
SCATTER_COST = CostForm("reduce_scatter-pairwise", RING_SCATTER_COST.coefficients,
                        RING_SCATTER_COST.summary)  # fmt: skip
ALLTOALL_COST = CostForm("alltoall-pairwise", _alltoall_cost, "(p-1)a + (p-1)n*b")
REDUCE_SCATTER.add("pairwise", pairwise_reduce_scatter, cost=SCATTER_COST)
ALLTOALL.add("pairwise", pairwise_alltoall, cost=ALLTOALL_COST)
