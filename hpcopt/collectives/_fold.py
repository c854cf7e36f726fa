"""The standard fold that lets power-of-two algorithms run on any rank count.

With ``pof2`` the largest power of two <= p and ``rem = p - pof2``, the first
``2*rem`` ranks pair up: each even rank hands its vector to the odd rank above it
and sits out; the odd rank continues as ``r // 2``. Ranks >= 2*rem continue as
``r - rem``. Afterwards the odd ranks hand the result back.

Block-wise operations (reduce-scatter, allgather) fold the same way over p blocks: new
rank i stands for the blocks of the real ranks it replaces, a contiguous range
(:func:`merged_bounds`), and only blocks cross the fold where whole vectors need not.
"""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.collectives._p2p import recv, reducer, send

__all__ = [
    "fold_block_in",
    "fold_block_out",
    "fold_in",
    "fold_out",
    "largest_pof2",
    "merged_bounds",
    "real_rank",
]


def largest_pof2(p: int) -> int:
    """The largest power of two not above ``p``."""
    return 1 << (p.bit_length() - 1)


def real_rank(newrank: int, rem: int) -> int:
    """The communicator rank that plays ``newrank`` after the fold."""
    return newrank * 2 + 1 if newrank < rem else newrank + rem


def fold_in(comm: MPI.Comm, buf: Any, op: MPI.Op, scratch: Scratch) -> tuple[int, int]:
    """Fold the extra ranks in; returns (newrank or -1 when sitting out, bytes sent)."""
    p, r = comm.size, comm.rank
    rem = p - largest_pof2(p)
    if r >= 2 * rem:
        return r - rem, 0
    if r % 2 == 0:
        return -1, send(comm, buf, r + 1)
    tmp = scratch.get("fold", buf.size, buf.dtype)
    recv(comm, tmp, r - 1)
    reducer(op, buf)(buf, tmp)
    return r // 2, 0


def fold_out(comm: MPI.Comm, buf: Any) -> int:
    """Hand the result back to the ranks that sat out; returns bytes sent."""
    p, r = comm.size, comm.rank
    rem = p - largest_pof2(p)
    if r >= 2 * rem:
        return 0
    if r % 2 == 1:
        return send(comm, buf, r - 1)
    recv(comm, buf, r + 1)
    return 0


def merged_bounds(bounds: list[int], p: int) -> list[int]:
    """Element bounds of the pof2 new ranks over the p blocks of ``bounds``: new rank
    i < rem covers the blocks of real ranks 2i and 2i+1, the others the block of i + rem."""
    pof2 = largest_pof2(p)
    rem = p - pof2
    return [bounds[2 * i if i < rem else i + rem] for i in range(pof2)] + [bounds[p]]


def fold_block_in(comm: MPI.Comm, buf: Any, bounds: list[int]) -> tuple[int, int]:
    """Allgather's fold: each even rank below 2·rem hands its own block to the odd rank
    above it; returns (newrank or -1 when sitting out, bytes sent)."""
    p, r = comm.size, comm.rank
    rem = p - largest_pof2(p)
    if r >= 2 * rem:
        return r - rem, 0
    if r % 2 == 0:
        return -1, send(comm, buf[bounds[r] : bounds[r + 1]], r + 1)
    recv(comm, buf[bounds[r - 1] : bounds[r]], r - 1)
    return r // 2, 0


def fold_block_out(comm: MPI.Comm, buf: Any, bounds: list[int]) -> int:
    """Reduce-scatter's fold back: each odd rank below 2·rem hands the even rank its block."""
    p, r = comm.size, comm.rank
    rem = p - largest_pof2(p)
    if r >= 2 * rem:
        return 0
    if r % 2 == 1:
        return send(comm, buf[bounds[r - 1] : bounds[r]], r - 1)
    recv(comm, buf[bounds[r] : bounds[r + 1]], r + 1)
    return 0
