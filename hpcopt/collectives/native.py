"""MPI's own Allreduce, in place and out of place."""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch, array_module, sync
from hpcopt.collectives._p2p import scratch_for

__all__ = ["native_in_place", "native_out_of_place"]


def native_in_place(
    comm: MPI.Comm, buf: Any, *, op: MPI.Op = MPI.SUM, scratch: Scratch | None = None
) -> int:
    """``Allreduce(MPI.IN_PLACE, buf)``; counts the buffer handed to MPI as sent."""
    sync(buf)
    comm.Allreduce(MPI.IN_PLACE, buf, op)
    return buf.nbytes if comm.size > 1 else 0


def native_out_of_place(
    comm: MPI.Comm,
    buf: Any,
    *,
    op: MPI.Op = MPI.SUM,
    scratch: Scratch | None = None,
    out: Any = None,
) -> int:
    """``Allreduce(buf, out)``; without ``out`` the result is copied back into ``buf``."""
    sync(buf)
    if out is not None:
        comm.Allreduce(buf, out, op)
    else:
        result = scratch_for(scratch, buf).get("native-oop", buf.size, buf.dtype)
        comm.Allreduce(buf, result, op)
        array_module(buf).copyto(buf, result)
    return buf.nbytes if comm.size > 1 else 0
