"""Binomial-tree reduce to rank 0 followed by a binomial-tree broadcast."""

from __future__ import annotations

import math
from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.collectives._p2p import recv, reducer, scratch_for, send
from hpcopt.collectives.cost import Coefficients, CostForm
from hpcopt.collectives.registry import register

__all__ = ["TREE_COST", "binomial_bcast", "binomial_reduce", "tree"]


def binomial_reduce(comm: MPI.Comm, buf: Any, op: MPI.Op, scratch: Scratch) -> int:
    """Reduce every rank's ``buf`` into rank 0's ``buf``; returns bytes sent."""
    p, r = comm.size, comm.rank
    tmp = scratch.get("tree", buf.size, buf.dtype)
    reduce_into = reducer(op, buf)
    mask = 1
    while mask < p:
        if r & mask:
            return send(comm, buf, r - mask)
        if r + mask < p:
            recv(comm, tmp, r + mask)
            reduce_into(buf, tmp)
        mask <<= 1
    return 0


def binomial_bcast(comm: MPI.Comm, buf: Any) -> int:
    """Broadcast rank 0's ``buf`` to every rank; returns bytes sent."""
    p, r = comm.size, comm.rank
    mask = 1
    while mask < p:
        if r & mask:
            recv(comm, buf, r - mask)
            break
        mask <<= 1
    sent = 0
    mask >>= 1
    while mask > 0:
        if r + mask < p:
            sent += send(comm, buf, r + mask)
        mask >>= 1
    return sent


def tree(comm: MPI.Comm, buf: Any, *, op: MPI.Op = MPI.SUM, scratch: Scratch | None = None) -> int:
    """In-place allreduce as binomial reduce + binomial broadcast (latency-friendly)."""
    if comm.size == 1 or buf.size == 0:
        return 0
    sent = binomial_reduce(comm, buf, op, scratch_for(scratch, buf))
    return sent + binomial_bcast(comm, buf)


def _tree_cost(p: int, n: float) -> Coefficients:
    if p == 1:
        return 0.0, 0.0, 0.0
    depth = math.ceil(math.log2(p))
    return 2.0 * depth, 2.0 * depth * n, float(depth * n)


TREE_COST = CostForm("tree", _tree_cost, "2*ceil(log2 p)*(a + n*b) + ceil(log2 p)*n*g")
register("tree", tree, cost=TREE_COST)
