"""Recursive halving: reduce-scatter in log2(p) exchanges of halving ranges, any p (fold)."""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.collectives._fold import fold_block_out, fold_in, merged_bounds, real_rank
from hpcopt.collectives._p2p import chunk_bounds, reducer, scratch_for, sendrecv
from hpcopt.collectives.cost import Coefficients, CostForm, fold_split
from hpcopt.collectives.registry import REDUCE_SCATTER

__all__ = ["halving_reduce_scatter", "recursive_halving"]


def halving_reduce_scatter(
    comm: MPI.Comm, buf: Any, bounds: list[int], newrank: int, op: MPI.Op, scratch: Scratch
) -> int:
    """Reduce-scatter among the pof2 new ranks (``len(bounds) - 1`` of them): new rank i ends
    with ``buf[bounds[i]:bounds[i+1]]`` reduced over all of them. Returns bytes sent."""
    pof2, rem = len(bounds) - 1, comm.size - (len(bounds) - 1)
    half = pof2 // 2
    widest = max(bounds[half] - bounds[0], bounds[pof2] - bounds[half]) if pof2 > 1 else 0
    tmp = scratch.get("recursive-halving", widest, buf.dtype)
    reduce_into = reducer(op, buf)
    lo, hi, sent = 0, pof2, 0
    mask = pof2 >> 1
    while mask:
        mid = (lo + hi) // 2
        keep, give = ((lo, mid), (mid, hi)) if newrank & mask == 0 else ((mid, hi), (lo, mid))
        kept = buf[bounds[keep[0]] : bounds[keep[1]]]
        landing = tmp[: kept.size]
        partner = real_rank(newrank ^ mask, rem)
        sent += sendrecv(comm, buf[bounds[give[0]] : bounds[give[1]]], partner, landing, partner)
        reduce_into(kept, landing)
        lo, hi = keep
        mask >>= 1
    return sent


def recursive_halving(
    comm: MPI.Comm, buf: Any, *, op: MPI.Op = MPI.SUM, scratch: Scratch | None = None
) -> int:
    """Reduce-scatter in place over p blocks, rank r's result at block r, with the fold for
    any p: extra ranks hand their vector in first and get their block back at the end."""
    p = comm.size
    if p == 1 or buf.size == 0:
        return 0
    scratch = scratch_for(scratch, buf)
    bounds = chunk_bounds(buf.size, p)
    newrank, sent = fold_in(comm, buf, op, scratch)
    if newrank >= 0:
        sent += halving_reduce_scatter(comm, buf, merged_bounds(bounds, p), newrank, op, scratch)
    return sent + fold_block_out(comm, buf, bounds)


def _halving_cost(p: int, n: float) -> Coefficients:
    if p == 1:
        return 0.0, 0.0, 0.0
    k, extra = fold_split(p)  # the fold: the whole vector in, one block out
    inner = ((1 << k) - 1) / (1 << k) * n
    return float(k + 2 * extra), inner + extra * (n + n / p), inner + extra * n


REDUCE_SCATTER.add(
    "recursive-halving",
    recursive_halving,
    cost=CostForm("reduce_scatter-recursive-halving", _halving_cost,
                  "log2 p*a + (p-1)/p*n*(b + g), plus the fold"),
)  # fmt: skip
