"""The hierarchical path: sum inside each node, compressed exchange among node leaders,
broadcast inside each node.

Inside a node the sum is uncompressed (float32, or float16 with ``intra="fp16"``: float16
rounding and range, ±65504, for the node sum), by a binomial reduce to the node leader. The
leaders then aggregate their node sums along a flat path (any encoder; the codec's error
feedback lives at the leaders only, because only they encode), and each leader broadcasts
the float32 result in its node. Nodes are shared-memory domains (``MPI_COMM_TYPE_SHARED``),
or blocks of ``ranks_per_node`` consecutive ranks to emulate nodes on one machine. With a
single node nothing is encoded.

Bytes are counted per link class: ``intra`` (reduce and broadcast inside the node) and
``inter`` (the leaders' exchange, counted by the flat path).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt import halfcast
from hpcopt.aggregation.base import Clock, Result
from hpcopt.backend import Scratch, array_module, sync
from hpcopt.collectives.hierarchical import node_comms
from hpcopt.collectives.tree import binomial_bcast, binomial_reduce
from hpcopt.encoders import Codec

__all__ = ["LINK_CLASSES", "hierarchical"]

LINK_CLASSES = ("intra", "inter")
_DTYPES = {"fp32": np.float32, "fp16": np.float16}
FP16_MAX = 65504.0


def _narrow(x: Any, intra: str, scratch: Scratch) -> Any:
    """``x`` as the node sum's type, in a work array (float16 refuses what it cannot hold)."""
    flat = x.reshape(-1)
    acc = scratch.get("hier-acc", flat.size, _DTYPES[intra])
    if intra == "fp32":
        acc[...] = flat
        return acc
    top, nan = halfcast.to_half(flat, acc)
    if nan or top >= FP16_MAX:
        raise ValueError(f"hierarchical intra=fp16: input beyond ±{FP16_MAX:g} or NaN")
    return acc


def _widen(acc: Any, scratch: Scratch) -> Any:
    """The node sum as float32."""
    if acc.dtype == np.float32:
        return acc
    wide = scratch.get("hier-wide", acc.size, np.float32)
    halfcast.from_half(acc, wide)
    return wide


def hierarchical(
    comm: MPI.Comm, x: Any, codec: Codec, *, step: int = 0, scratch: Scratch | None = None,
    inner: Any, ranks_per_node: int = 0, intra: str = "fp32",
) -> Result:  # fmt: skip
    """Node sum → flat path ``inner`` among leaders → node broadcast; bytes per link class."""
    from hpcopt.aggregation import run_path

    xp = array_module(x)
    scratch = scratch or Scratch(xp)
    node, leaders = node_comms(comm, ranks_per_node)
    clock = Clock()
    acc = _narrow(x, intra, scratch)
    clock.lap("encode")
    intra_bytes = binomial_reduce(node, acc, MPI.SUM, scratch) if node.size > 1 and acc.size else 0
    clock.lap("communicate")
    partial = _widen(acc, scratch)
    clock.lap("decode")
    inter_bytes = 0
    if leaders != MPI.COMM_NULL and leaders.size > 1:
        res = run_path(leaders, partial.reshape(x.shape), codec, inner, step, scratch)
        for phase, seconds in res.times.items():
            clock.times[phase] += seconds
        clock.t = MPI.Wtime()
        out = xp.ascontiguousarray(res.out, dtype=np.float32).reshape(-1)
        inter_bytes = res.nbytes
    elif leaders != MPI.COMM_NULL:  # a single node: its sum is the result
        out = partial.copy()
    else:  # the broadcast fills it
        out = xp.empty(x.size, dtype=np.float32)
    if node.size > 1 and out.size:
        sync(out)
        intra_bytes += binomial_bcast(node, out)
    clock.lap("communicate")
    links = {"intra": intra_bytes, "inter": inter_bytes}
    return Result(out.reshape(x.shape), intra_bytes + inter_bytes, clock.times, links)
