"""Rabenseifner's allreduce: recursive-halving reduce-scatter + recursive-doubling allgather."""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.collectives._fold import fold_in, fold_out, largest_pof2, real_rank
from hpcopt.collectives._p2p import chunk_bounds, reducer, scratch_for, sendrecv
from hpcopt.collectives.cost import Coefficients, CostForm, fold_split
from hpcopt.collectives.registry import register

__all__ = ["RABENSEIFNER_COST", "rabenseifner"]


def _halving(comm: MPI.Comm, buf: Any, newrank: int, op: MPI.Op, scratch: Scratch) -> int:
    """Recursive-halving reduce-scatter among the pof2 active ranks; newrank owns chunk newrank."""
    pof2, rem = largest_pof2(comm.size), comm.size - largest_pof2(comm.size)
    bounds = chunk_bounds(buf.size, pof2)
    tmp = scratch.get("rabenseifner", bounds[pof2 // 2] if pof2 > 1 else 0, buf.dtype)
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


def _doubling_allgather(comm: MPI.Comm, buf: Any, newrank: int) -> int:
    """Recursive-doubling allgather of the chunks owned after the halving."""
    pof2, rem = largest_pof2(comm.size), comm.size - largest_pof2(comm.size)
    bounds = chunk_bounds(buf.size, pof2)
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


def rabenseifner(
    comm: MPI.Comm, buf: Any, *, op: MPI.Op = MPI.SUM, scratch: Scratch | None = None
) -> int:
    """In-place allreduce, bandwidth-optimal in 2·log2(p) steps, with the fold for any p."""
    if comm.size == 1 or buf.size == 0:
        return 0
    scratch = scratch_for(scratch, buf)
    newrank, sent = fold_in(comm, buf, op, scratch)
    if newrank >= 0:
        sent += _halving(comm, buf, newrank, op, scratch)
        sent += _doubling_allgather(comm, buf, newrank)
    return sent + fold_out(comm, buf)


def _rabenseifner_cost(p: int, n: float) -> Coefficients:
    if p == 1:
        return 0.0, 0.0, 0.0
    k, extra = fold_split(p)
    inner = ((1 << k) - 1) / (1 << k)
    return 2.0 * k + 2 * extra, (2 * inner + 2 * extra) * n, (inner + extra) * n


RABENSEIFNER_COST = CostForm(
    "rabenseifner", _rabenseifner_cost, "2*log2 p*a + 2(p-1)/p*n*b + (p-1)/p*n*g, plus the fold"
)
register("rabenseifner", rabenseifner, cost=RABENSEIFNER_COST)
