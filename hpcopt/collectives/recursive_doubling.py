"""Recursive-doubling allreduce: log2(p) full-vector exchanges (latency-optimal)."""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.collectives._fold import fold_in, fold_out, largest_pof2, real_rank
from hpcopt.collectives._p2p import reducer, scratch_for, sendrecv
from hpcopt.collectives.cost import Coefficients, CostForm, fold_split
from hpcopt.collectives.registry import register

__all__ = ["RECURSIVE_DOUBLING_COST", "recursive_doubling"]


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


def _recursive_doubling_cost(p: int, n: float) -> Coefficients:
    if p == 1:
        return 0.0, 0.0, 0.0
    # Power of two: log2 p exchanges; otherwise fold in and out (2 sends, 1 sum more).
    k, extra = fold_split(p)
    return float(k + 2 * extra), float((k + 2 * extra) * n), float((k + extra) * n)


RECURSIVE_DOUBLING_COST = CostForm(
    "recursive-doubling", _recursive_doubling_cost, "log2 p*(a + n*b + n*g), plus the fold"
)
register("recursive-doubling", recursive_doubling, cost=RECURSIVE_DOUBLING_COST)
