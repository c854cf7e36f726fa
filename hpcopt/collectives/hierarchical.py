"""Two-level allreduce: reduce inside each node, allreduce among node leaders, broadcast.

The node communicators are built once per communicator and cached on it as an MPI
attribute. ``ranks_per_node`` splits by consecutive rank blocks instead of shared
memory, which emulates several nodes on one machine.
"""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.collectives._p2p import scratch_for
from hpcopt.collectives.cost import GENERIC
from hpcopt.collectives.registry import register
from hpcopt.collectives.ring import ring
from hpcopt.collectives.tree import binomial_bcast, binomial_reduce
from hpcopt.registry import Option
from hpcopt.specs import positive_int

__all__ = ["hierarchical", "node_comms"]

_KEYVAL: dict[int, int] = {}


def _split(comm: MPI.Comm, ranks_per_node: int) -> tuple[MPI.Comm, MPI.Comm]:
    if ranks_per_node > 0:
        node = comm.Split(comm.rank // ranks_per_node, comm.rank)
    else:
        node = comm.Split_type(MPI.COMM_TYPE_SHARED, comm.rank)
    color = 0 if node.rank == 0 else MPI.UNDEFINED
    leaders = comm.Split(color, comm.rank)
    return node, leaders


def node_comms(comm: MPI.Comm, ranks_per_node: int = 0) -> tuple[MPI.Comm, MPI.Comm]:
    """(node-local communicator, leaders communicator or COMM_NULL), cached on ``comm``."""
    keyval = _KEYVAL.get(ranks_per_node)
    if keyval is None:
        keyval = _KEYVAL[ranks_per_node] = MPI.Comm.Create_keyval()
    cached: tuple[MPI.Comm, MPI.Comm] | None = comm.Get_attr(keyval)  # type: ignore[assignment]
    if cached is None:
        cached = _split(comm, ranks_per_node)
        comm.Set_attr(keyval, cached)
    return cached


def hierarchical(
    comm: MPI.Comm,
    buf: Any,
    *,
    op: MPI.Op = MPI.SUM,
    scratch: Scratch | None = None,
    ranks_per_node: int = 0,
) -> int:
    """In-place allreduce: binomial reduce in the node, ring among leaders, binomial bcast."""
    if comm.size == 1 or buf.size == 0:
        return 0
    scratch = scratch_for(scratch, buf)
    node, leaders = node_comms(comm, ranks_per_node)
    sent = binomial_reduce(node, buf, op, scratch) if node.size > 1 else 0
    if leaders != MPI.COMM_NULL and leaders.size > 1:
        sent += ring(leaders, buf, op=op, scratch=scratch)
    if node.size > 1:
        sent += binomial_bcast(node, buf)
    return sent


register(
    "hierarchical",
    hierarchical,
    cost=GENERIC,
    options=(
        Option("ppn", positive_int, 0, "ranks per emulated node (default: shared memory)",
               arg="ranks_per_node"),
    ),
)  # fmt: skip
