"""The allgather path: every rank gathers every payload and sums the decoded vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation.base import Clock, Result
from hpcopt.aggregation.wire import as_bytes, gather_bytes
from hpcopt.backend import Scratch, array_module
from hpcopt.encoders import Codec

__all__ = ["allgather", "decode_sum", "encode_gather", "gathered"]


def gathered(
    comm: MPI.Comm, x: Any, codec: Codec, step: int, scratch: Scratch | None
) -> tuple[Any, Scratch, Clock, Any, np.ndarray, int]:
    """Start a gather-based path: (xp, scratch, clock, received, table, bytes sent)."""
    xp = array_module(x)
    scratch = scratch or Scratch(xp)
    clock = Clock()
    return (xp, scratch, clock, *encode_gather(comm, x, codec, step, scratch, clock))


def encode_gather(
    comm: MPI.Comm, x: Any, codec: Codec, step: int, scratch: Scratch, clock: Clock
) -> tuple[Any, np.ndarray, int]:
    """Encode ``x`` and Allgatherv every rank's payload bytes (as ``wire.gather_bytes``)."""
    own = as_bytes(codec.encode(x, step), scratch)
    clock.lap("encode")
    gathered = gather_bytes(comm, own, scratch)
    clock.lap("communicate")
    return gathered


def decode_sum(
    codec: Codec, recv: Any, table: np.ndarray, shape: tuple[int, ...], step: int, out: Any,
    work: Any,
) -> Any:  # fmt: skip
    """``out`` = sum of the decoded payloads in ``recv`` (rank order, so the same everywhere)."""
    xp = array_module(out)
    out[...] = 0
    for start, size in table.T:
        payload = codec.from_bytes(recv[start : start + size], shape, step)
        xp.add(out, codec.decode(payload, out=work).reshape(-1), out=out)
    return out


def allgather(
    comm: MPI.Comm, x: Any, codec: Codec, *, step: int = 0, scratch: Scratch | None = None
) -> Result:
    """Allgatherv of sizes and payload bytes, then decode and sum in rank order."""
    xp, scratch, clock, recv, table, nbytes = gathered(comm, x, codec, step, scratch)
    out = xp.empty(x.size, dtype=np.float32)
    decode_sum(codec, recv, table, tuple(x.shape), step, out, scratch.get("w", x.size, "f4"))
    clock.lap("decode")
    return Result(out.reshape(x.shape), nbytes, clock.times)
