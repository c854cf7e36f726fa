"""Binomial trees: reduce to a root, broadcast from a root, and allreduce as the two."""

from __future__ import annotations

import math
from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.collectives._p2p import recv, reducer, scratch_for, send
from hpcopt.collectives.cost import Coefficients, CostForm
from hpcopt.collectives.registry import BCAST, register

__all__ = ["TREE_COST", "binomial_bcast", "binomial_links", "binomial_reduce", "tree"]


def binomial_links(p: int, vr: int) -> tuple[int, list[int]]:
    """Relative rank ``vr``'s place in a binomial tree over p ranks rooted at 0: the mask m
    at which it receives from vr − m (0 at the root), and the masks m of its children
    vr + m, largest first. The subtree of vr + m spans m ranks."""
    mask = 1
    while mask < p and not vr & mask:
        mask <<= 1
    parent = mask if mask < p else 0
    below = (parent or mask) >> 1
    children = []
    while below:
        if vr + below < p:
            children.append(below)
        below >>= 1
    return parent, children


def binomial_reduce(
    comm: MPI.Comm, buf: Any, op: MPI.Op, scratch: Scratch, root: int = 0
) -> int:  # fmt: skip
    """Reduce every rank's ``buf`` into the root's ``buf``; returns bytes sent."""
    p, vr = comm.size, (comm.rank - root) % comm.size
    tmp = scratch.get("tree", buf.size, buf.dtype)
    reduce_into = reducer(op, buf)
    mask = 1
    while mask < p:
        if vr & mask:
            return send(comm, buf, (vr - mask + root) % p)
        if vr + mask < p:
            recv(comm, tmp, (vr + mask + root) % p)
            reduce_into(buf, tmp)
        mask <<= 1
    return 0


def binomial_bcast(
    comm: MPI.Comm, buf: Any, *, root: int = 0, scratch: Scratch | None = None
) -> int:
    """Broadcast the root's ``buf`` to every rank down a binomial tree; returns bytes sent."""
    p, vr = comm.size, (comm.rank - root) % comm.size
    parent, children = binomial_links(p, vr)
    if parent:
        recv(comm, buf, (vr - parent + root) % p)
    return sum(send(comm, buf, (vr + m + root) % p) for m in children)


def tree(comm: MPI.Comm, buf: Any, *, op: MPI.Op = MPI.SUM, scratch: Scratch | None = None) -> int:
    """In-place allreduce as binomial reduce + binomial broadcast (latency-friendly)."""
    if comm.size == 1 or buf.size == 0:
        return 0
    sent = binomial_reduce(comm, buf, op, scratch_for(scratch, buf))
    return sent + binomial_bcast(comm, buf)


def _depth(p: int) -> int:
    return math.ceil(math.log2(p)) if p > 1 else 0


def _tree_cost(p: int, n: float) -> Coefficients:
    depth = _depth(p)
    return 2.0 * depth, 2.0 * depth * n, float(depth * n)


def _bcast_cost(p: int, n: float) -> Coefficients:
    return float(_depth(p)), _depth(p) * n, 0.0


TREE_COST = CostForm("tree", _tree_cost, "2*ceil(log2 p)*(a + n*b) + ceil(log2 p)*n*g")
register("tree", tree, cost=TREE_COST)
BCAST.add("binomial", binomial_bcast,
          cost=CostForm("bcast-binomial", _bcast_cost, "ceil(log2 p)*(a + n*b)"))  # fmt: skip
