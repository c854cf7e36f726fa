"""The ranks' agreement on an adaptive encoder's level, around one aggregation call.

The encoder (:mod:`hpcopt.encoders.adaptive`) measures and proposes; here every rank's
proposal is combined by one 8-byte Allreduce (MAX for the time rule: the slowest link sets
the level; MIN for the residual rule), counted in the bytes and the communicate time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation.base import Result
from hpcopt.encoders.adaptive import Adaptive

__all__ = ["Adaptive", "adaptive_of", "run_adaptive"]


def adaptive_of(codec: Any) -> Adaptive | None:
    """The adaptive encoder inside ``codec`` (itself or under error feedback), else None."""
    inner = getattr(codec, "encoder", codec)
    return inner if isinstance(inner, Adaptive) else None


def run_adaptive(
    comm: MPI.Comm, x: Any, codec: Any, adaptive: Adaptive, step: int,
    compute_s: float | None, call: Callable[[], Result],
) -> Result:  # fmt: skip
    """Agree on the level, run ``call``, observe it; the agreement is counted in the result."""
    t0 = MPI.Wtime()
    level, signal = adaptive.propose(x.size, compute_s)
    op = MPI.MIN if adaptive.rule == "residual" else MPI.MAX
    agreed = np.array([level], dtype=np.int64)
    if comm.size > 1:
        comm.Allreduce(MPI.IN_PLACE, agreed, op)
    adaptive.level = int(agreed[0])
    adaptive.history.append((step, adaptive.level, signal))
    spent = MPI.Wtime() - t0
    result = call()
    adaptive.observe(x, codec, result.nbytes, result.times.get("communicate", 0.0))
    times = dict(result.times)
    times["communicate"] = times.get("communicate", 0.0) + spent
    extra = agreed.nbytes if comm.size > 1 else 0
    return Result(result.out, result.nbytes + extra, times, getattr(result, "links", None))
