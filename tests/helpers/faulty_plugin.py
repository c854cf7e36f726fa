"""A plugin (HPCOPT_PLUGINS=faulty_plugin) that registers an allgather which corrupts one
element on the last rank, to test that a collective kernel reports wrong results."""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

from hpcopt.collectives import ALLGATHER
from hpcopt.collectives.ring import RING_GATHER_COST, ring_allgather


def corrupting_allgather(comm: MPI.Comm, buf: Any, *, scratch: Any = None) -> int:
    sent = ring_allgather(comm, buf, scratch=scratch)
    if buf.size and comm.rank == comm.size - 1:
        buf[-1] += 1
    return sent


ALLGATHER.add("corrupting", corrupting_allgather, cost=RING_GATHER_COST)
