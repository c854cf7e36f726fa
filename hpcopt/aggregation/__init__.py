"""Aggregation of compressed payloads: the sum over ranks of what each rank encoded.

:func:`plan` decides the path for an encoder (or refuses the combination);
:func:`aggregate` runs it. Every path returns :class:`Result` ``(out, nbytes, times)``:
``out`` estimates the **sum** over ranks (divide by ``comm.size`` for the mean) and is
the same on every rank; ``nbytes`` counts the bytes this rank handed to MPI sends;
``times`` splits the call into encode, communicate and decode (MPI.Wtime).

Byte counting: a point-to-point call or a core algorithm counts what it hands to MPI
sends. A collective made through MPI (Allgather/Allgatherv/Alltoall) counts this rank's
own contribution × (p−1), the bytes that must leave the rank whatever the algorithm
inside MPI (Alltoallv counts exactly what goes to the other ranks). The size exchanges
before a variable-size gather are counted too (8 bytes per peer). Payloads always
travel as raw bytes through uppercase (buffer) calls.

Paths, one module each: ``summable`` (one core allreduce of the encoded buffer),
``allgather`` (gather every payload, decode and sum in rank order), ``two-phase``
(compressed reduce-scatter, then allgather of re-compressed sums), ``vote`` (majority
vote of signs), ``powersgd`` (two core allreduces, P then Q), ``root`` (payloads
sent to a root that sums them and broadcasts the sum; :class:`RootSum` lets a rank send
nothing, for lazy aggregation and round deadlines), ``hierarchical`` (node sums, one of
those among node leaders, node broadcasts) and ``secure`` (secure aggregation). An
``adaptive`` encoder has its level chosen before each call (:mod:`.adaptive`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from mpi4py import MPI

from hpcopt.aggregation.adaptive import adaptive_of, run_adaptive
from hpcopt.aggregation.base import PHASES, Clock, Result
from hpcopt.aggregation.gather import allgather
from hpcopt.aggregation.hierarchical import hierarchical
from hpcopt.aggregation.plan import METHODS, Plan, plan
from hpcopt.aggregation.powersgd import powersgd
from hpcopt.aggregation.root import RootSum, root
from hpcopt.aggregation.secure import secure
from hpcopt.aggregation.summable import summable
from hpcopt.aggregation.two_phase import two_phase
from hpcopt.aggregation.vote import vote
from hpcopt.backend import Scratch
from hpcopt.encoders import Codec

__all__ = [
    "METHODS",
    "PATHS",
    "PHASES",
    "Clock",
    "Plan",
    "Result",
    "RootSum",
    "aggregate",
    "plan",
    "run_path",
]

PATHS: dict[str, Callable[..., Result]] = {
    "summable": summable,
    "allgather": allgather,
    "two-phase": two_phase,
    "vote": vote,
    "powersgd": powersgd,
    "root": root,
    "hierarchical": hierarchical,
    "secure": secure,
}


def aggregate(
    comm: MPI.Comm, x: Any, codec: Codec, chosen: Plan, *, step: int = 0,
    scratch: Scratch | None = None, compute_s: float | None = None,
) -> Result:  # fmt: skip
    """Sum ``x`` over ranks through ``codec`` along the ``chosen`` plan's path.

    ``compute_s``: the caller's compute seconds so far, which an adaptive encoder's time
    rule compares with the link time (default: the wall time between calls).
    """
    adaptive = adaptive_of(codec)
    if adaptive is not None:
        call = functools.partial(run_path, comm, x, codec, chosen, step, scratch)
        return run_adaptive(comm, x, codec, adaptive, step, compute_s, call)
    return run_path(comm, x, codec, chosen, step, scratch)


def run_path(
    comm: MPI.Comm, x: Any, codec: Codec, chosen: Plan, step: int, scratch: Scratch | None
) -> Result:
    """One call of the plan's path, without the adaptive encoder's control around it."""
    kwargs: dict[str, Any] = {"step": step, "scratch": scratch, **chosen.method_options}
    if chosen.stages:
        kwargs["algorithm"] = chosen.algorithm
    if chosen.inner is not None:
        kwargs["inner"] = chosen.inner
    return PATHS[chosen.path](comm, x, codec, **kwargs)
