"""The summable path: encode, sum the single encoded buffer with a core allreduce, decode.

float32 sums with MPI.SUM; float16 sums in float16 (a point-to-point core adds float16
arrays locally; MPI's own Allreduce needs a user op); bfloat16 (carried as uint16) sums
through a user op that widens to float32, adds and rounds back. MPI user ops only run
inside MPI's own Allreduce, on host buffers; :mod:`hpcopt.aggregation.plan` refuses
the other combinations before anything runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt import halfcast
from hpcopt.aggregation.base import Clock, Result
from hpcopt.backend import Scratch, array_module, sync
from hpcopt.collectives import get_algorithm
from hpcopt.encoders import Codec
from hpcopt.encoders.bf16 import bf16_round, bf16_widen

__all__ = ["core_allreduce", "sum_op", "summable"]

_USER_OPS: dict[str, MPI.Op] = {}
_OP_SCRATCH = Scratch(np)  # the bfloat16 op's work arrays, kept between calls


def _fp16_sum(inbuf: Any, inoutbuf: Any, datatype: MPI.Datatype) -> None:
    """MPI user op: float16 sum of uint16-typed buffers."""
    src = np.frombuffer(inbuf, dtype=np.float16)
    dst = np.frombuffer(inoutbuf, dtype=np.float16)
    halfcast.add_half(dst, src)


def _bf16_sum(inbuf: Any, inoutbuf: Any, datatype: MPI.Datatype) -> None:
    """MPI user op: bfloat16 sum (widen, add in float32, round to nearest even)."""
    src = np.frombuffer(inbuf, dtype=np.uint16)
    dst = np.frombuffer(inoutbuf, dtype=np.uint16)
    n = dst.size
    a = bf16_widen(dst, _OP_SCRATCH.get("a", n, np.uint32)).view(np.float32)
    b = bf16_widen(src, _OP_SCRATCH.get("b", n, np.uint32)).view(np.float32)
    np.add(a, b, out=a)
    bf16_round(a.view(np.uint32), dst, _OP_SCRATCH.get("w", n, np.uint32))


def _user_op(sum_dtype: str) -> MPI.Op:
    op = _USER_OPS.get(sum_dtype)
    if op is None:
        fn = _fp16_sum if sum_dtype == "float16" else _bf16_sum
        op = _USER_OPS[sum_dtype] = MPI.Op.Create(fn, commute=True)
    return op


def sum_op(sum_dtype: str) -> tuple[MPI.Op, MPI.Datatype]:
    """The MPI op and datatype that sum a payload buffer of ``sum_dtype`` in MPI's own
    (blocking or non-blocking) Allreduce."""
    if sum_dtype == "float32":
        return MPI.SUM, MPI.FLOAT
    return _user_op(sum_dtype), MPI.UINT16_T


def core_allreduce(
    comm: MPI.Comm, buf: Any, algorithm: str, scratch: Scratch | None, sum_dtype: str = "float32"
) -> int:
    """Sum ``buf`` in place over ranks as ``sum_dtype`` with a core algorithm; bytes sent."""
    if sum_dtype == "float32" or (sum_dtype == "float16" and algorithm != "native"):
        return get_algorithm(algorithm).run(comm, buf, op=MPI.SUM, scratch=scratch)
    sync(buf)
    comm.Allreduce(MPI.IN_PLACE, [buf, MPI.UINT16_T], _user_op(sum_dtype))
    return buf.nbytes if comm.size > 1 else 0


def summable(
    comm: MPI.Comm, x: Any, codec: Codec, *, step: int = 0, algorithm: str = "native",
    scratch: Scratch | None = None,
) -> Result:  # fmt: skip
    """Encode, sum the single encoded buffer with a core allreduce, decode."""
    scratch = scratch or Scratch(array_module(x))
    clock = Clock()
    payload = codec.encode(x, step)
    (buf,) = payload.buffers
    clock.lap("encode")
    nbytes = core_allreduce(comm, buf, algorithm, scratch, codec.sum_dtype)
    clock.lap("communicate")
    out = codec.decode(payload, out=scratch.get("out", payload.size, np.float32))
    clock.lap("decode")
    return Result(out, nbytes, clock.times)
