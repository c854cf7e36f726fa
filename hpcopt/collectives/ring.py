"""Ring algorithms: reduce-scatter, allgather, and allreduce as the one followed by the other.

Each works in place on a vector cut into p near-equal chunks (``chunk_bounds``), one step
per neighbour exchange around the ring (bandwidth-optimal, p−1 steps each).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from mpi4py import MPI

from hpcopt.backend import Scratch, is_device_array, sync
from hpcopt.collectives._p2p import (
    Reducer,
    buffer_key,
    chunk_bounds,
    mpi_spec,
    reducer,
    scratch_for,
)
from hpcopt.collectives.cost import Coefficients, CostForm
from hpcopt.collectives.registry import ALLGATHER, REDUCE_SCATTER, register

__all__ = [
    "RING_COST",
    "ring",
    "ring_allgather",
    "ring_reduce_scatter",
]


class _ReducePlan(NamedTuple):
    """Reduce-scatter steps built once per buffer: MPI specs, views, byte counts."""

    steps: list[tuple[Any, Any, Any, Any, int]]  # send, recv, landing, target, bytes
    reduce_into: Reducer
    device: bool
    keep: tuple  # the communicator, buffer and op whose ids key this plan


class _GatherPlan(NamedTuple):
    """Allgather steps built once per buffer."""

    steps: list[tuple[Any, Any, Any, int]]  # send, recv spec, recv view, bytes
    device: bool
    keep: tuple


def _chunks(buf: Any, p: int) -> list[Any]:
    bounds = chunk_bounds(buf.size, p)
    return [buf[bounds[i] : bounds[i + 1]] for i in range(p)]


def _reduce_plan(comm: MPI.Comm, buf: Any, op: MPI.Op, scratch: Scratch) -> _ReducePlan:
    p, r = comm.size, comm.rank
    chunks = _chunks(buf, p)
    tmp = scratch.get("ring", max(c.size for c in chunks), buf.dtype)
    steps = []
    for s in range(p - 1):  # rank r ends with chunk r: it sends r-s-1 and reduces r-s-2
        out, target = chunks[(r - s - 1) % p], chunks[(r - s - 2) % p]
        landing = tmp[: target.size]
        steps.append((mpi_spec(out), mpi_spec(landing), landing, target, out.nbytes))
    return _ReducePlan(steps, reducer(op, buf), is_device_array(buf), (comm, buf, op))


def _gather_plan(comm: MPI.Comm, buf: Any, shift: int) -> _GatherPlan:
    p, r = comm.size, comm.rank
    chunks = _chunks(buf, p)
    steps = []
    for s in range(p - 1):  # rank q owns chunk (q - shift) on entry
        out, into = chunks[(r - s - shift) % p], chunks[(r - s - 1 - shift) % p]
        steps.append((mpi_spec(out), mpi_spec(into), into, out.nbytes))
    return _GatherPlan(steps, is_device_array(buf), (comm, buf))  # keep: ids key the plan


def ring_reduce_scatter(
    comm: MPI.Comm, buf: Any, *, op: MPI.Op = MPI.SUM, scratch: Scratch | None = None
) -> int:
    """In place over p chunks: rank r ends with chunk r reduced over every rank (the other
    chunks hold partial sums). Returns bytes sent."""
    p, r = comm.size, comm.rank
    if p == 1 or buf.size == 0:
        return 0
    scratch = scratch_for(scratch, buf)
    key = ("ring-rs", *buffer_key(comm, buf, op))
    plan = scratch.plan(key, lambda: _reduce_plan(comm, buf, op, scratch))
    right, left = (r + 1) % p, (r - 1) % p
    sendrecv, sent = comm.Sendrecv, 0
    for out, into, landing, target, nbytes in plan.steps:
        if plan.device:
            sync(landing)
        sendrecv(out, right, 0, into, left, 0)
        plan.reduce_into(target, landing)
        sent += nbytes
    return sent


def ring_allgather(
    comm: MPI.Comm, buf: Any, *, scratch: Scratch | None = None, shift: int = 0
) -> int:
    """In place over p chunks: rank q holds chunk (q − shift) mod p on entry, every chunk on
    exit. Returns bytes sent."""
    p, r = comm.size, comm.rank
    if p == 1 or buf.size == 0:
        return 0
    scratch = scratch_for(scratch, buf)
    key = ("ring-ag", shift, *buffer_key(comm, buf, None))
    plan = scratch.plan(key, lambda: _gather_plan(comm, buf, shift))
    right, left = (r + 1) % p, (r - 1) % p
    sendrecv, sent = comm.Sendrecv, 0
    for out, into, view, nbytes in plan.steps:
        if plan.device:
            sync(view)
        sendrecv(out, right, 0, into, left, 0)
        sent += nbytes
    return sent


def ring(comm: MPI.Comm, buf: Any, *, op: MPI.Op = MPI.SUM, scratch: Scratch | None = None) -> int:
    """In-place ring allreduce: ring reduce-scatter, then ring allgather."""
    if comm.size == 1 or buf.size == 0:
        return 0
    scratch = scratch_for(scratch, buf)
    return ring_reduce_scatter(comm, buf, op=op, scratch=scratch) + ring_allgather(
        comm, buf, scratch=scratch
    )


def _ring_cost(p: int, n: float) -> Coefficients:
    if p == 1:
        return 0.0, 0.0, 0.0
    share = (p - 1) / p
    return 2.0 * (p - 1), 2 * share * n, share * n


def _ring_gather_cost(p: int, n: float) -> Coefficients:
    return float(p - 1), (p - 1) * n, 0.0


def _ring_scatter_cost(p: int, n: float) -> Coefficients:
    share = (p - 1) / p
    return float(p - 1), share * n, share * n


RING_COST = CostForm("ring", _ring_cost, "2(p-1)a + 2(p-1)/p*n*b + (p-1)/p*n*g")
RING_GATHER_COST = CostForm("allgather-ring", _ring_gather_cost, "(p-1)a + (p-1)n*b")
RING_SCATTER_COST = CostForm(
    "reduce_scatter-ring", _ring_scatter_cost, "(p-1)a + (p-1)/p*n*b + (p-1)/p*n*g"
)
register("ring", ring, cost=RING_COST)
ALLGATHER.add("ring", ring_allgather, cost=RING_GATHER_COST)
REDUCE_SCATTER.add("ring", ring_reduce_scatter, cost=RING_SCATTER_COST)
