"""The vote path: majority vote of sign payloads, p·mean(scale)·sign(Σ signs); ties give 0."""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation.base import Result
from hpcopt.aggregation.gather import gathered
from hpcopt.backend import Scratch
from hpcopt.encoders import Codec

__all__ = ["vote"]


def vote(
    comm: MPI.Comm, x: Any, codec: Codec, *, step: int = 0, scratch: Scratch | None = None
) -> Result:
    """Allgather the sign payloads, count the negative votes, take the majority."""
    xp, scratch, clock, recv, table, nbytes = gathered(comm, x, codec, step, scratch)
    votes = scratch.get("votes", x.size, np.int32)
    votes[...] = 0
    total = 0.0
    for start, size in table.T:
        scale, bits = codec.from_bytes(recv[start : start + size], tuple(x.shape)).buffers
        total += float(scale[0])
        xp.add(votes, xp.unpackbits(bits)[: x.size], out=votes)
    out = xp.sign(comm.size - 2 * votes).astype(np.float32) * np.float32(total)
    clock.lap("decode")
    return Result(out.reshape(x.shape), nbytes, clock.times)
