"""MPI's own call of every operation, in place (``native``) and out of place (``native-oop``).

Operations without an in-place form (bcast, barrier) have ``native`` only. The timed form is
the bare mpi4py call with its buffer specifications built once (:func:`bind_native`), which is
what the C timing core times as well.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch, array_module, is_device_array, sync
from hpcopt.collectives._p2p import scratch_for
from hpcopt.collectives.cost import GENERIC
from hpcopt.collectives.operations import Operation
from hpcopt.collectives.registry import ALLREDUCE, COLLECTIVES, Binder

__all__ = ["bind_native", "native_in_place", "native_out_of_place", "native_spec"]


def native_spec(buf: Any, count: int) -> Any:
    """``[memory, count, datatype]`` for a host array (``count`` elements per block; mpi4py
    parses it ~3x faster than the array), None for no buffer, device arrays as they are."""
    if buf is None or is_device_array(buf) or not buf.flags.c_contiguous:
        return buf
    try:
        datatype = MPI.Datatype.fromcode(buf.dtype.char)
    except (KeyError, ValueError):
        return buf
    return [memoryview(buf.reshape(-1)).cast("B"), count, datatype]


def _call(
    name: str, comm: MPI.Comm, s: Any, r: Any, op: MPI.Op, root: int
) -> Callable[[], Any]:  # fmt: skip
    partial = functools.partial
    calls: dict[str, Callable[[], Any]] = {
        "allreduce": lambda: partial(comm.Allreduce, s, r, op),
        "allgather": lambda: partial(comm.Allgather, s, r),
        "reduce_scatter": lambda: partial(comm.Reduce_scatter_block, s, r, op),
        "reduce": lambda: partial(comm.Reduce, s, r, op, root),
        "bcast": lambda: partial(comm.Bcast, r, root),
        "alltoall": lambda: partial(comm.Alltoall, s, r),
        "gather": lambda: partial(comm.Gather, s, r, root),
        "scatter": lambda: partial(comm.Scatter, s, r, root),
        "barrier": lambda: comm.Barrier,
    }
    return calls[name]()


def bind_native(spec: Operation, in_place: bool) -> Binder:
    """The binder of MPI's own ``spec`` operation: ``(comm, send, recv, count=, op=, root=)``
    to a zero-argument call on those buffers (None where a rank has no such buffer), with
    ``count`` elements per block."""

    def bind(
        comm: MPI.Comm, send: Any, recv: Any, *, count: int, op: MPI.Op, root: int
    ) -> Callable:
        here = in_place and (spec.in_place == "all" or comm.rank == root)
        s, r = native_spec(send, count), native_spec(recv, count)
        if here and spec.name == "scatter":
            r = MPI.IN_PLACE
        elif here:
            s = MPI.IN_PLACE
        return _call(spec.name, comm, s, r, op, root)

    return bind


def _block_count(spec: Operation, p: int, send: Any, recv: Any, in_place: bool) -> int:
    """Elements per block, from whichever buffer this rank has."""
    sides = [(send, spec.input_blocks(p)), (recv, spec.output_blocks(p))]
    if in_place and spec.name != "scatter":
        sides[1] = (recv, max(spec.input_blocks(p), spec.output_blocks(p)))
    for buf, blocks in sides:
        if buf is not None and blocks:
            return int(buf.size) // blocks
    return 0


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


def _generic(spec: Operation, in_place: bool) -> Callable[..., int]:
    """MPI's own call as a library function ``fn(comm, send, recv, *, op, root) -> bytes``."""
    bind = bind_native(spec, in_place)

    def run(comm: MPI.Comm, send: Any, recv: Any, *, op: MPI.Op = MPI.SUM, root: int = 0,
            scratch: Scratch | None = None) -> int:  # fmt: skip
        for buf in (send, recv):
            if buf is not None:
                sync(buf)
        count = _block_count(spec, comm.size, send, recv, in_place)
        bind(comm, send, recv, count=count, op=op, root=root)()
        handed = send if send is not None and not in_place else recv
        return int(handed.nbytes) if handed is not None and comm.size > 1 else 0

    run.__doc__ = f"MPI's own {spec.name} ({'in place' if in_place else 'out of place'})."
    return run


def _register() -> None:
    allreduce = ALLREDUCE.operation
    ALLREDUCE.add("native", native_in_place, cost=GENERIC, native=True,
                  binder=bind_native(allreduce, True))  # fmt: skip
    ALLREDUCE.add("native-oop", native_out_of_place, cost=GENERIC, native=False,
                  binder=bind_native(allreduce, False), out_of_place=True)  # fmt: skip
    for name, owner in COLLECTIVES.items():
        if name == "allreduce":
            continue
        spec = owner.operation
        if spec.in_place != "none":
            owner.add("native", _generic(spec, True), cost=GENERIC, native=True,
                      binder=bind_native(spec, True))  # fmt: skip
        oop = "native-oop" if spec.in_place != "none" else "native"
        owner.add(oop, _generic(spec, False), cost=GENERIC, native=False,
                  binder=bind_native(spec, False))  # fmt: skip


_register()
