"""The powersgd path: PowerSGD's two dependent sums (P, then Q) with a core allreduce."""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation.base import Clock, Result
from hpcopt.aggregation.summable import core_allreduce
from hpcopt.backend import Scratch, array_module
from hpcopt.encoders import TwoStageCodec

__all__ = ["powersgd"]


def powersgd(
    comm: MPI.Comm, x: Any, codec: TwoStageCodec, *, step: int = 0, algorithm: str = "native",
    scratch: Scratch | None = None,
) -> Result:  # fmt: skip
    """Project, sum P, orthonormalize and reproject, sum Q, reconstruct."""
    clock = Clock()
    p = codec.project(x, step)
    clock.lap("encode")
    nbytes = core_allreduce(comm, p.reshape(-1), algorithm, scratch)
    clock.lap("communicate")
    q = codec.reproject(p)
    clock.lap("encode")
    nbytes += core_allreduce(comm, q.reshape(-1), algorithm, scratch)
    clock.lap("communicate")
    scratch = scratch or Scratch(array_module(x))
    out = codec.reconstruct(q, out=scratch.get("out", x.size, np.float32)).reshape(x.shape)
    clock.lap("decode")
    return Result(out, nbytes, clock.times)
