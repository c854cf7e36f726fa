"""What each collective operation is: its buffers, its exact result, its bus factor, its bound.

Sizes follow OSU and IMB: ``size_bytes`` is the per-rank message (allgather and gather: each
rank's contribution; scatter: each rank's piece; alltoall: the block sent to each peer;
allreduce, reduce and bcast: the buffer), except reduce_scatter, whose size is the whole vector
that is reduced (p blocks). nccl-tests' size (the whole buffer of one rank) is
``size_bytes × ranks`` for allgather, alltoall, gather and scatter; algbw is computed from it.

Buffers come in blocks of ``n`` elements. A rank's input ``x_r`` is ``input_blocks(p)`` blocks,
block b of rank q being ``data(q, b)``; :meth:`Operation.expected` gives what rank r must hold
afterwards, computed locally from everyone's data and never by MPI.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hpcopt.collectives.cost import Coefficients, CostForm

__all__ = [
    "FORMS",
    "OPERATIONS",
    "BlockData",
    "Layout",
    "Operation",
    "lower_bound_form",
    "operation",
]

# How an algorithm lays out its buffers: MPI's in-place form, MPI's out-of-place form, or
# in place over p blocks with rank r's result left at block r (own reduce-scatter algorithms).
FORMS = ("in-place", "out-of-place", "block-r")

BlockData = Callable[[int, int], np.ndarray]  # data(rank, block) -> n elements
Reduce = Callable[[Sequence[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Layout:
    """One rank's buffers for one form, in blocks: where the input goes and the result is."""

    send: int
    recv: int
    input_side: str  # "send" or "recv"
    input_block: int  # first block of the input on that side
    result_side: str  # "send", "recv" or "" (no result on this rank)
    result_block: int
    result_blocks: int


def _concat(parts: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(list(parts)) if parts else np.empty(0)


@dataclass(frozen=True)
class Operation:
    """One collective operation: layout, exact result, nccl-tests factors, lower bound."""

    name: str
    c_name: str  # the operation's name in the C timing core
    summary: str
    size_meaning: str  # what size_bytes is, for the printed header
    factor: Callable[[int], float]  # nccl-tests bus factor
    whole_buffer: bool = False  # nccl-tests size = size_bytes × ranks
    blocks_in_size: bool = False  # size_bytes counts p blocks (reduce_scatter)
    reduces: bool = False
    rooted: bool = False
    per_peer_input: bool = False  # the input has a block per rank (reduce_scatter, alltoall)
    gathers: bool = False  # the result has a block per rank (allgather, alltoall, gather)
    in_place: str = "all"  # where MPI_IN_PLACE exists: all, root, none
    send_at: str = "all"  # ranks with a send buffer: all, root, none
    recv_at: str = "all"  # ranks with a receive buffer: all, root, none
    own_form: str = "in-place"
    own_buffers: tuple[str, ...] = ("recv",)  # what own algorithms take, positionally
    own_keywords: tuple[str, ...] = ()  # and by keyword, of "op" and "root"
    bound: Callable[[int, float], Coefficients] | None = None

    def bus_factor(self, ranks: int) -> float:
        """busbw = algbw × this factor (nccl-tests)."""
        return self.factor(ranks) if ranks > 0 else 0.0

    def algbw_bytes(self, size_bytes: int, ranks: int) -> int:
        """nccl-tests' size for algbw: the whole buffer of one rank."""
        return size_bytes * ranks if self.whole_buffer else size_bytes

    def block_items(self, size_bytes: int, itemsize: int, ranks: int) -> int:
        """Elements per block at ``size_bytes`` (whole blocks only)."""
        return size_bytes // (itemsize * (ranks if self.blocks_in_size else 1))

    @property
    def moves_data(self) -> bool:
        """False for the barrier: no payload, one record at 0 B."""
        return self.name != "barrier"

    def input_blocks(self, p: int) -> int:
        return p if self.per_peer_input else 1

    def output_blocks(self, p: int) -> int:
        return p if self.gathers else int(self.moves_data)

    def call_blocks(self, p: int) -> int:
        """The larger of a rank's input and result, in blocks (the same on every rank)."""
        return max(self.input_blocks(p), self.output_blocks(p))

    def layout(self, form: str, rank: int, root: int, p: int) -> Layout:
        """Rank ``rank``'s buffers (in blocks) for ``form`` with root ``root``."""
        is_root = rank == root
        here = {"all": True, "root": is_root, "none": False}
        out_blocks = self.output_blocks(p)
        result_side = "recv" if here[self.recv_at] and out_blocks else ""
        if self.name == "bcast":
            return Layout(0, 1, "recv", 0, "recv", 0, 1)
        in_place = form != "out-of-place" and here[self.in_place]
        if not in_place:
            send = self.input_blocks(p) if here[self.send_at] else 0
            recv = out_blocks if result_side else 0
            return Layout(send, recv, "send", 0, result_side, 0, out_blocks)
        if self.name == "scatter":  # the root keeps its own piece in its send buffer
            return Layout(p, 0, "send", 0, "send", root, 1)
        recv = max(self.input_blocks(p), out_blocks)
        at = rank if self.gathers and not self.per_peer_input else 0
        result_block = rank if form == "block-r" else 0
        return Layout(0, recv, "recv", at, "recv", result_block, out_blocks)

    def rank_input(self, data: BlockData, rank: int, p: int) -> np.ndarray:
        """The input ``x_r`` of rank ``rank``: its blocks in order."""
        return _concat([data(rank, b) for b in range(self.input_blocks(p))])

    def expected(
        self, data: BlockData, reduce: Reduce, rank: int, root: int, p: int
    ) -> np.ndarray | None:
        """What rank ``rank`` must hold afterwards (None: nothing is defined there)."""
        own = self.per_peer_input
        if self.rooted and self.recv_at == "root" and rank != root:
            return None
        if not self.moves_data:
            return None
        if self.name in ("bcast", "scatter"):
            return data(root, rank if own else 0)
        blocks = [data(q, rank if own else 0) for q in range(p)]
        return _concat(blocks) if self.gathers else reduce(blocks)


def _share(p: int) -> float:
    return (p - 1) / p


def _log2(p: int) -> int:
    return (p - 1).bit_length()


def _allreduce_bound(p: int, n: float) -> Coefficients:
    return float(_log2(p)), 2 * _share(p) * n, _share(p) * n


def _gather_bound(p: int, n: float) -> Coefficients:
    return float(_log2(p)), (p - 1) * n, 0.0


def _scatter_bound(p: int, n: float) -> Coefficients:
    return float(_log2(p)), _share(p) * n, _share(p) * n


def _bcast_bound(p: int, n: float) -> Coefficients:
    return float(_log2(p)), float(n) if p > 1 else 0.0, 0.0


def _reduce_bound(p: int, n: float) -> Coefficients:
    return float(_log2(p)), float(n) if p > 1 else 0.0, _share(p) * n


def _barrier_bound(p: int, n: float) -> Coefficients:
    return float(_log2(p)), 0.0, 0.0


def _one(p: int) -> float:
    return 1.0


_WHOLE = "; algbw = size x ranks / time (nccl-tests' whole buffer)"
_OPS = (
    Operation("allreduce", "allreduce", "every rank gets the reduction of every rank's vector",
              "size: the vector each rank reduces", lambda p: 2 * _share(p), reduces=True,
              own_keywords=("op",), bound=_allreduce_bound),
    Operation("allgather", "allgather", "every rank gets every rank's block",
              "size: each rank's contribution (OSU, IMB)" + _WHOLE, _share, whole_buffer=True,
              gathers=True, bound=_gather_bound),
    Operation("reduce_scatter", "reduce_scatter_block",
              "rank r gets block r of the reduction of every rank's vector",
              "size: the whole vector each rank reduces, ranks x the block it gets (OSU, IMB, "
              "nccl-tests)", _share, blocks_in_size=True, reduces=True, per_peer_input=True,
              own_form="block-r", own_keywords=("op",), bound=_scatter_bound),
    Operation("reduce", "reduce", "the root gets the reduction of every rank's vector",
              "size: the vector each rank reduces", _one, reduces=True, rooted=True,
              in_place="root", recv_at="root", bound=_reduce_bound),
    Operation("bcast", "bcast", "every rank gets the root's buffer", "size: the buffer", _one,
              rooted=True, in_place="none", send_at="none", own_keywords=("root",),
              bound=_bcast_bound),
    Operation("alltoall", "alltoall", "rank r gets block r of every rank's buffer",
              "size: the block each rank sends to each peer (OSU, IMB)" + _WHOLE, _share,
              whole_buffer=True, per_peer_input=True, gathers=True, own_form="out-of-place",
              own_buffers=("send", "recv"), bound=_gather_bound),
    Operation("gather", "gather", "the root gets every rank's block",
              "size: each rank's contribution (OSU, IMB)" + _WHOLE, _share, whole_buffer=True,
              rooted=True, gathers=True, in_place="root", recv_at="root", bound=_gather_bound),
    Operation("scatter", "scatter", "rank r gets block r of the root's buffer",
              "size: each rank's piece (OSU, IMB)" + _WHOLE, _share, whole_buffer=True,
              rooted=True, per_peer_input=True, in_place="root", send_at="root",
              bound=_gather_bound),
    Operation("barrier", "barrier", "no rank leaves before every rank has entered",
              "no payload: one record of size 0", _one, in_place="none", send_at="none",
              recv_at="none", bound=_barrier_bound),
)  # fmt: skip
OPERATIONS: dict[str, Operation] = {op.name: op for op in _OPS}


def operation(name: str) -> Operation:
    """The operation called ``name``; KeyError for an unknown one."""
    return OPERATIONS[name]


def lower_bound_form(op: Operation) -> CostForm | None:
    """No algorithm of ``op`` beats this α–β–γ form."""
    return CostForm(f"{op.name}-bound", op.bound, "lower bound") if op.bound else None
