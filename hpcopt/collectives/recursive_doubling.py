"""Recursive doubling: allreduce by log2(p) full-vector exchanges (latency-optimal), and
allgather by log2(p) exchanges of doubling ranges. Both fold extra ranks for any p."""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.collectives._fold import (
    fold_block_in,
    fold_in,
    fold_out,
    largest_pof2,
    merged_bounds,
    real_rank,
)
from hpcopt.collectives._p2p import chunk_bounds, reducer, scratch_for, sendrecv
from hpcopt.collectives.cost import Coefficients, CostForm, fold_split
from hpcopt.collectives.registry import ALLGATHER, register

__all__ = [
    "RECURSIVE_DOUBLING_COST",
    "doubling_allgather",
    "recursive_doubling",
    "recursive_doubling_allgather",
]


def recursive_doubling(
    comm: MPI.Comm, buf: Any, *, op: MPI.Op = MPI.SUM, scratch: Scratch | None = None
) -> int:
    """In-place allreduce by pairwise exchange with partners at distance 1, 2, 4, ..."""
    p = comm.size
    if p == 1 or buf.size == 0:
        return 0
    scratch = scratch_for(scratch, buf)
    newrank, sent = fold_in(comm, buf, op, scratch)
    if newrank >= 0:
        pof2, rem = largest_pof2(p), p - largest_pof2(p)
        tmp = scratch.get("recursive-doubling", buf.size, buf.dtype)
        reduce_into = reducer(op, buf)
        mask = 1
        while mask < pof2:
            partner = real_rank(newrank ^ mask, rem)
            sent += sendrecv(comm, buf, partner, tmp, partner)
            reduce_into(buf, tmp)
            mask <<= 1
    return sent + fold_out(comm, buf)


def doubling_allgather(comm: MPI.Comm, buf: Any, bounds: list[int], newrank: int) -> int:
    """Allgather among the pof2 new ranks (``len(bounds) - 1`` of them): new rank i holds
    ``buf[bounds[i]:bounds[i+1]]`` on entry and every range on exit. Returns bytes sent."""
    pof2, rem = len(bounds) - 1, comm.size - (len(bounds) - 1)
    lo, hi, sent = newrank, newrank + 1, 0
    mask = 1
    while mask < pof2:
        width = hi - lo
        other = (hi, hi + width) if newrank & mask == 0 else (lo - width, lo)
        partner = real_rank(newrank ^ mask, rem)
        mine = buf[bounds[lo] : bounds[hi]]
        sent += sendrecv(comm, mine, partner, buf[bounds[other[0]] : bounds[other[1]]], partner)
        lo, hi = min(lo, other[0]), max(hi, other[1])
        mask <<= 1
    return sent


def recursive_doubling_allgather(
    comm: MPI.Comm, buf: Any, *, scratch: Scratch | None = None
) -> int:
    """Allgather in place over p blocks (block r is this rank's), with the fold for any p:
    extra ranks hand their block in first and get the whole vector back at the end."""
    p = comm.size
    if p == 1 or buf.size == 0:
        return 0
    bounds = chunk_bounds(buf.size, p)
    newrank, sent = fold_block_in(comm, buf, bounds)
    if newrank >= 0:
        sent += doubling_allgather(comm, buf, merged_bounds(bounds, p), newrank)
    return sent + fold_out(comm, buf)


def _recursive_doubling_cost(p: int, n: float) -> Coefficients:
    if p == 1:
        return 0.0, 0.0, 0.0
    # Power of two: log2 p exchanges; otherwise fold in and out (2 sends, 1 sum more).
    k, extra = fold_split(p)
    return float(k + 2 * extra), float((k + 2 * extra) * n), float((k + extra) * n)


def _doubling_allgather_cost(p: int, n: float) -> Coefficients:
    if p == 1:
        return 0.0, 0.0, 0.0
    k, extra = fold_split(p)  # the fold: one block in, the whole vector (p blocks) out
    return float(k + 2 * extra), (p - 1) * n + extra * (p + 1) * n, 0.0


RECURSIVE_DOUBLING_COST = CostForm(
    "recursive-doubling", _recursive_doubling_cost, "log2 p*(a + n*b + n*g), plus the fold"
)
register("recursive-doubling", recursive_doubling, cost=RECURSIVE_DOUBLING_COST)
ALLGATHER.add(
    "recursive-doubling",
    recursive_doubling_allgather,
    cost=CostForm("allgather-recursive-doubling", _doubling_allgather_cost,
                  "log2 p*a + (p-1)n*b, plus the fold"),
)  # fmt: skip
