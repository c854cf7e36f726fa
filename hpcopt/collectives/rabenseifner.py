"""Rabenseifner's allreduce: recursive-halving reduce-scatter + recursive-doubling allgather."""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.collectives._fold import fold_in, fold_out, largest_pof2
from hpcopt.collectives._p2p import chunk_bounds, scratch_for
from hpcopt.collectives.cost import Coefficients, CostForm, fold_split
from hpcopt.collectives.recursive_doubling import doubling_allgather
from hpcopt.collectives.recursive_halving import halving_reduce_scatter
from hpcopt.collectives.registry import register

__all__ = ["RABENSEIFNER_COST", "rabenseifner"]


def rabenseifner(
    comm: MPI.Comm, buf: Any, *, op: MPI.Op = MPI.SUM, scratch: Scratch | None = None
) -> int:
    """In-place allreduce, bandwidth-optimal in 2·log2(p) steps, with the fold for any p."""
    if comm.size == 1 or buf.size == 0:
        return 0
    scratch = scratch_for(scratch, buf)
    newrank, sent = fold_in(comm, buf, op, scratch)
    if newrank >= 0:
        bounds = chunk_bounds(buf.size, largest_pof2(comm.size))
        sent += halving_reduce_scatter(comm, buf, bounds, newrank, op, scratch)
        sent += doubling_allgather(comm, buf, bounds, newrank)
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
