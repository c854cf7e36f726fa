"""The vote path: majority vote of sign payloads, p·mean(scale)·sign(Σ signs); ties give 0."""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation.base import Clock, Result
from hpcopt.aggregation.gather import encode_gather, payloads
from hpcopt.backend import Scratch, array_module
from hpcopt.encoders import Codec
from hpcopt.encoders.base import DECODE_BLOCK
from hpcopt.encoders.sign import add_votes

__all__ = ["vote"]


def vote(
    comm: MPI.Comm, x: Any, codec: Codec, *, step: int = 0, scratch: Scratch | None = None
) -> Result:
    """Allgather the sign payloads, add the ±1 votes block by block, take the majority."""
    xp = array_module(x)
    scratch = scratch or Scratch(xp)
    clock = Clock()
    gathered, nbytes = encode_gather(comm, x, codec, step, scratch, clock)
    ballots = payloads(codec, gathered, tuple(x.shape), step)
    total = np.float32(sum(float(b.buffers[0][0]) for b in ballots) if x.size else 0.0)
    out = scratch.get("votes", x.size, np.float32)  # ±1 sums are exact below 2**24 ranks
    block = DECODE_BLOCK if xp is np else max(x.size, 1)
    for lo in range(0, x.size, block):
        part = out[lo : lo + block]
        part[...] = 0
        for ballot in ballots:
            add_votes(ballot, part, lo)
        xp.sign(part, out=part)
        xp.multiply(part, total, out=part)
    clock.lap("decode")
    return Result(out.reshape(x.shape), nbytes, clock.times)
