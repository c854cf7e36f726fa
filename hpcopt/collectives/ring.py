"""Ring allreduce: reduce-scatter then allgather around a ring (bandwidth-optimal)."""

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
from hpcopt.collectives.registry import register

__all__ = ["RING_COST", "ring"]


class _RingPlan(NamedTuple):
    """What every step uses, built once per buffer: MPI buffer specs, views, byte counts."""

    reduce_scatter: list[tuple[Any, Any, Any, Any, int]]  # send, recv, landing, target, bytes
    allgather: list[tuple[Any, Any, int]]  # send, recv, bytes
    reduce_into: Reducer
    device: bool
    keep: tuple  # the communicator, buffer and op whose ids key this plan


def _plan(comm: MPI.Comm, buf: Any, op: MPI.Op, scratch: Scratch) -> _RingPlan:
    p, r = comm.size, comm.rank
    bounds = chunk_bounds(buf.size, p)
    widest = max(bounds[i + 1] - bounds[i] for i in range(p))
    tmp = scratch.get("ring", widest, buf.dtype)

    def chunk(i: int) -> Any:
        return buf[bounds[i % p] : bounds[i % p + 1]]

    steps = range(p - 1)
    rs = []
    for s in steps:
        out, target = chunk(r - s), chunk(r - s - 1)
        landing = tmp[: target.size]
        rs.append((mpi_spec(out), mpi_spec(landing), landing, target, out.nbytes))
    ag = [(mpi_spec(chunk(r + 1 - s)), mpi_spec(chunk(r - s)), chunk(r + 1 - s).nbytes)
          for s in steps]  # fmt: skip
    return _RingPlan(rs, ag, reducer(op, buf), is_device_array(buf), (comm, buf, op))


def ring(comm: MPI.Comm, buf: Any, *, op: MPI.Op = MPI.SUM, scratch: Scratch | None = None) -> int:
    """In-place ring allreduce; p-1 reduce-scatter steps, then p-1 allgather steps."""
    p, r = comm.size, comm.rank
    if p == 1 or buf.size == 0:
        return 0
    scratch = scratch_for(scratch, buf)
    plan = scratch.plan(("ring", *buffer_key(comm, buf, op)), lambda: _plan(comm, buf, op, scratch))
    right, left = (r + 1) % p, (r - 1) % p
    sendrecv, sent = comm.Sendrecv, 0
    for out, into, landing, target, nbytes in plan.reduce_scatter:
        if plan.device:
            sync(landing)
        sendrecv(out, right, 0, into, left, 0)
        plan.reduce_into(target, landing)
        sent += nbytes
    for out, into, nbytes in plan.allgather:
        if plan.device:
            sync(into)
        sendrecv(out, right, 0, into, left, 0)
        sent += nbytes
    return sent


def _ring_cost(p: int, n: float) -> Coefficients:
    if p == 1:
        return 0.0, 0.0, 0.0
    share = (p - 1) / p
    return 2.0 * (p - 1), 2 * share * n, share * n


RING_COST = CostForm("ring", _ring_cost, "2(p-1)a + 2(p-1)/p*n*b + (p-1)/p*n*g")
register("ring", ring, cost=RING_COST)
