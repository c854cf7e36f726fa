"""MPI's own Allreduce, in place and out of place."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch, array_module, is_device_array, sync
from hpcopt.collectives._p2p import mpi_spec, scratch_for
from hpcopt.collectives.cost import GENERIC
from hpcopt.collectives.registry import register

__all__ = ["bind_native", "native_in_place", "native_out_of_place"]


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


def bind_native(
    comm: MPI.Comm, buf: Any, *, op: MPI.Op, out: Any = None
) -> Callable[[], Any] | None:
    """The bare mpi4py Allreduce with prebuilt buffer specs (what a C loop times).

    Host buffers only: device buffers need the stream synchronized on every call.
    ``out`` selects the out-of-place form.
    """
    if is_device_array(buf):
        return None
    if out is None:
        return functools.partial(comm.Allreduce, MPI.IN_PLACE, mpi_spec(buf), op)
    return functools.partial(comm.Allreduce, mpi_spec(buf), mpi_spec(out), op)


register("native", native_in_place, cost=GENERIC, binder=bind_native)
register("native-oop", native_out_of_place, cost=GENERIC, out_of_place=True, binder=bind_native)
