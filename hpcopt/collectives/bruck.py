"""Bruck's algorithms: allgather and alltoall in ⌈log2 p⌉ steps at any rank count.

Both rotate the blocks so that each rank's own comes first, exchange with the ranks at
distance 1, 2, 4, ... and rotate back: few messages (latency-friendly) for small blocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.backend import Scratch, array_module
from hpcopt.collectives._p2p import scratch_for, sendrecv
from hpcopt.collectives.cost import Coefficients, CostForm
from hpcopt.collectives.registry import ALLGATHER, ALLTOALL

__all__ = ["bruck_allgather", "bruck_alltoall", "equal_blocks"]


def equal_blocks(buf: Any, p: int) -> int:
    """Elements per block of a buffer of p equal blocks; ValueError otherwise."""
    if buf.size % p:
        raise ValueError(f"{buf.size} elements are not {p} equal blocks")
    return int(buf.size) // p


def bruck_allgather(comm: MPI.Comm, buf: Any, *, scratch: Scratch | None = None) -> int:
    """Allgather in place over p equal blocks (block r is this rank's): step k sends the
    blocks gathered so far to rank r − 2^k and receives as many from rank r + 2^k."""
    p, r = comm.size, comm.rank
    if p == 1 or buf.size == 0:
        return 0
    n, xp = equal_blocks(buf, p), array_module(buf)
    tmp = scratch_for(scratch, buf).get("bruck", buf.size, buf.dtype)
    xp.copyto(tmp[:n], buf[r * n : (r + 1) * n])
    dist, sent = 1, 0
    while dist < p:
        cnt = min(dist, p - dist)
        into = tmp[dist * n : (dist + cnt) * n]
        sent += sendrecv(comm, tmp[: cnt * n], (r - dist) % p, into, (r + dist) % p)
        dist <<= 1
    xp.copyto(buf[r * n :], tmp[: (p - r) * n])  # tmp block i is rank (r + i)'s block
    xp.copyto(buf[: r * n], tmp[(p - r) * n :])
    return sent


def _alltoall_plan(xp: Any, p: int, r: int) -> tuple[list[tuple[int, Any]], Any]:
    """Per step: its distance and the block indices that move; and the final order."""
    steps, dist = [], 1
    while dist < p:
        steps.append((dist, xp.asarray([i for i in range(p) if i & dist], dtype=np.intp)))
        dist <<= 1
    return steps, xp.asarray([(r - j) % p for j in range(p)], dtype=np.intp)


def bruck_alltoall(comm: MPI.Comm, send: Any, recv: Any, *, scratch: Scratch | None = None) -> int:
    """Alltoall of p equal blocks, out of place: rotate, exchange the blocks whose index
    has bit k set with ranks r ± 2^k, rotate back into ``recv``."""
    p, r = comm.size, comm.rank
    n, xp = equal_blocks(send, p), array_module(send)
    if p == 1 or n == 0:
        xp.copyto(recv, send)
        return 0
    scratch = scratch_for(scratch, send)
    steps, order = scratch.plan(("bruck-alltoall", p, r), lambda: _alltoall_plan(xp, p, r))
    tmp = scratch.get("bruck", send.size, send.dtype)
    xp.copyto(tmp[: (p - r) * n], send[r * n :])  # block i is for rank (r + i)
    xp.copyto(tmp[(p - r) * n :], send[: r * n])
    blocks, sent = tmp.reshape(p, n), 0
    for dist, moving in steps:
        out = scratch.get("bruck-out", moving.size * n, send.dtype).reshape(-1, n)
        into = scratch.get("bruck-in", moving.size * n, send.dtype).reshape(-1, n)
        xp.take(blocks, moving, axis=0, out=out)
        sent += sendrecv(comm, out, (r + dist) % p, into, (r - dist) % p)
        blocks[moving] = into
    xp.take(blocks, order, axis=0, out=recv.reshape(p, n))  # block j came from rank j
    return sent


def _log2(p: int) -> int:
    return (p - 1).bit_length()


def _allgather_cost(p: int, n: float) -> Coefficients:
    return float(_log2(p)), (p - 1) * n, 0.0


def _alltoall_cost(p: int, n: float) -> Coefficients:
    moved = sum(sum(1 for i in range(p) if i & (1 << k)) for k in range(_log2(p)))
    return float(_log2(p)), moved * n, 0.0


GATHER_COST = CostForm("allgather-bruck", _allgather_cost, "ceil(log2 p)*a + (p-1)n*b")
ALLTOALL_COST = CostForm("alltoall-bruck", _alltoall_cost, "ceil(log2 p)*a + moved*n*b")
ALLGATHER.add("bruck", bruck_allgather, cost=GATHER_COST)
ALLTOALL.add("bruck", bruck_alltoall, cost=ALLTOALL_COST)
