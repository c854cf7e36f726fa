"""The allgather path: every rank gathers every payload and sums the decoded vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation.base import Clock, Result
from hpcopt.aggregation.wire import Gathered, as_bytes, gather_bytes
from hpcopt.backend import Scratch, array_module
from hpcopt.encoders import Codec, Payload
from hpcopt.encoders.base import decode_sum

__all__ = ["allgather", "encode_gather", "payloads"]


def encode_gather(
    comm: MPI.Comm, x: Any, codec: Codec, step: int, scratch: Scratch, clock: Clock
) -> tuple[Gathered, int]:
    """Encode ``x`` and Allgatherv every rank's payload bytes (as ``wire.gather_bytes``)."""
    own = as_bytes(codec.encode(x, step), scratch)
    clock.lap("encode")
    gathered = gather_bytes(comm, own, scratch)
    clock.lap("communicate")
    return gathered


def payloads(codec: Codec, gathered: Gathered, shape: tuple[int, ...], step: int) -> list[Payload]:
    """Every rank's payload (views of the gathered bytes), in rank order."""
    return [codec.from_bytes(raw, shape, step) for raw in gathered.slots()]


def allgather(
    comm: MPI.Comm, x: Any, codec: Codec, *, step: int = 0, scratch: Scratch | None = None
) -> Result:
    """Allgatherv of sizes and payload bytes, then one decode-and-sum in rank order."""
    xp = array_module(x)
    scratch = scratch or Scratch(xp)
    clock = Clock()
    gathered, nbytes = encode_gather(comm, x, codec, step, scratch, clock)
    out = scratch.get("out", x.size, np.float32)
    decode_sum(codec, payloads(codec, gathered, tuple(x.shape), step), out)
    clock.lap("decode")
    return Result(out.reshape(x.shape), nbytes, clock.times)
