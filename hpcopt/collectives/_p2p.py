"""Point-to-point building blocks shared by the hand-written allreduce algorithms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt import halfcast
from hpcopt.backend import Scratch, array_module, is_device_array, sync

__all__ = [
    "Reducer",
    "buffer_key",
    "chunk_bounds",
    "mpi_spec",
    "op_by_name",
    "op_name",
    "recv",
    "reducer",
    "scratch_for",
    "send",
    "sendrecv",
]

Reducer = Callable[[Any, Any], None]

_UFUNCS = {"sum": "add", "max": "maximum", "min": "minimum", "prod": "multiply"}
_OPS = (("sum", MPI.SUM), ("max", MPI.MAX), ("min", MPI.MIN), ("prod", MPI.PROD))


def op_name(op: MPI.Op) -> str:
    """The lower-case name of a predefined reduction operation."""
    for name, known in _OPS:
        if op == known:
            return name
    raise ValueError(f"unsupported reduction operation {op!r}")


def op_by_name(name: str) -> MPI.Op:
    """The predefined reduction operation called ``name`` (sum, max, min, prod)."""
    for known_name, op in _OPS:
        if known_name == name:
            return op
    raise ValueError(f"unsupported reduction operation {name!r}")


def reducer(op: MPI.Op, like: Any) -> Reducer:
    """``f(dst, src)``: dst <- dst (op) src in place, with ``like``'s array module."""
    name = op_name(op)
    if name == "sum" and like.dtype == np.float16 and halfcast.fast(like):
        return halfcast.add_half  # NumPy adds float16 one element at a time
    ufunc = getattr(array_module(like), _UFUNCS[name])

    def reduce_into(dst: Any, src: Any) -> None:
        ufunc(dst, src, out=dst)

    return reduce_into


def mpi_spec(arr: Any) -> Any:
    """``[memory, count, datatype]`` for a host array: mpi4py parses it ~3x faster than
    the array itself. Device arrays (and types without a predefined datatype) as they are.
    """
    if is_device_array(arr) or not arr.flags.c_contiguous:
        return arr
    try:
        datatype = MPI.Datatype.fromcode(arr.dtype.char)
    except (KeyError, ValueError):
        return arr
    return [memoryview(arr.reshape(-1)).cast("B"), arr.size, datatype]


def buffer_key(comm: MPI.Comm, buf: Any, op: MPI.Op | None) -> tuple:
    """Identity of (communicator, buffer memory, op) for cached schedules.

    The buffer counts by its memory (address, length, dtype), so a new view of the same
    memory (a reshape, a scratch slice) finds its schedule again. A schedule built for
    the key holds references to all three, so neither the ids nor the memory can be
    reused by another object while the schedule is cached.
    """
    address = buf.data.ptr if is_device_array(buf) else buf.__array_interface__["data"][0]
    return (id(comm), address, buf.size, buf.dtype.str, buf.strides, id(op))


def chunk_bounds(count: int, parts: int) -> list[int]:
    """Offsets of ``parts`` near-equal contiguous chunks of ``count`` elements."""
    base, extra = divmod(count, parts)
    bounds = [0]
    for i in range(parts):
        bounds.append(bounds[-1] + base + (1 if i < extra else 0))
    return bounds


def scratch_for(scratch: Scratch | None, buf: Any) -> Scratch:
    """The caller's scratch, or a fresh one on ``buf``'s array module."""
    return scratch if scratch is not None else Scratch(array_module(buf))


def send(comm: MPI.Comm, buf: Any, dest: int) -> int:
    """Blocking send; returns the bytes handed to MPI."""
    sync(buf)
    comm.Send(buf, dest)
    return buf.nbytes


def recv(comm: MPI.Comm, buf: Any, source: int) -> None:
    """Blocking receive into ``buf``."""
    sync(buf)
    comm.Recv(buf, source)


def sendrecv(comm: MPI.Comm, sbuf: Any, dest: int, rbuf: Any, source: int) -> int:
    """Combined send/receive; returns the bytes sent."""
    sync(sbuf)
    comm.Sendrecv(sbuf, dest, 0, rbuf, source, 0)
    return sbuf.nbytes
