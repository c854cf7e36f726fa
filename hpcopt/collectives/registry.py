"""One registry per collective operation: each algorithm's function, options and cost form.

``ALLREDUCE``, ``ALLGATHER``, ... are :class:`Collective` registries: the operation they
perform (``hpcopt.collectives.operations``: buffers, exact result, nccl-tests bus factor)
and its algorithms. MPI's own calls are registered as ``native`` (in place) and
``native-oop`` (out of place) where MPI has both forms, else as ``native``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mpi4py import MPI

from hpcopt.collectives.cost import CostForm
from hpcopt.collectives.operations import OPERATIONS, Operation
from hpcopt.errors import UsageError
from hpcopt.registry import Option, Registry, Selection
from hpcopt.specs import split_specs

__all__ = [
    "ALLGATHER",
    "ALLREDUCE",
    "ALLTOALL",
    "BARRIER",
    "BCAST",
    "COLLECTIVES",
    "GATHER",
    "REDUCE",
    "REDUCE_SCATTER",
    "SCATTER",
    "AllreduceFn",
    "Binder",
    "BoundAlgorithm",
    "Collective",
    "bus_factor",
    "collective",
    "get_algorithm",
    "parse_algorithms",
    "register",
]

AllreduceFn = Callable[..., int]
# binder(comm, send, recv, count=, op=, root=) -> a zero-argument call of MPI's own operation
Binder = Callable[..., Callable[[], Any]]


class Collective(Registry[int]):
    """The algorithms of one operation, and the operation itself (``operation``)."""

    def __init__(self, op: Operation) -> None:
        # Errors say "unknown algorithm" for allreduce (the default), name the others.
        super().__init__("algorithm" if op.name == "allreduce" else f"{op.name} algorithm")
        self.operation = op

    @property
    def name(self) -> str:
        return self.operation.name

    def bus_factor(self, ranks: int) -> float:
        """nccl-tests' bus factor of this operation: busbw = algbw × factor."""
        return self.operation.bus_factor(ranks)

    def add(
        self,
        name: str,
        fn: AllreduceFn,
        *,
        cost: CostForm,
        options: Sequence[Option] = (),
        native: bool | None = None,
        binder: Binder | None = None,
        out_of_place: bool = False,
    ) -> None:
        """Register ``fn``: an own algorithm (``native`` None, in the operation's own form) or
        MPI's call in place (``native`` True) or out of place (False), timed by ``binder``."""
        if native is None:
            form = self.operation.own_form
        else:
            form = "in-place" if native and self.operation.in_place != "none" else "out-of-place"
        self.register(name, fn, options=options, cost=cost, native=native, binder=binder,
                      form=form, out_of_place=out_of_place)  # fmt: skip

    def natives(self) -> list[str]:
        """Names of MPI's own forms of the operation."""
        return [n for n in self.names() if self[n].info["native"] is not None]


COLLECTIVES: dict[str, Collective] = {name: Collective(op) for name, op in OPERATIONS.items()}
ALLREDUCE = COLLECTIVES["allreduce"]
ALLGATHER = COLLECTIVES["allgather"]
REDUCE_SCATTER = COLLECTIVES["reduce_scatter"]
REDUCE = COLLECTIVES["reduce"]
BCAST = COLLECTIVES["bcast"]
ALLTOALL = COLLECTIVES["alltoall"]
GATHER = COLLECTIVES["gather"]
SCATTER = COLLECTIVES["scatter"]
BARRIER = COLLECTIVES["barrier"]


def collective(name: str) -> Collective:
    """The registry of operation ``name``; UsageError for an unknown one."""
    if name not in COLLECTIVES:
        raise UsageError(f"unknown operation {name!r}; choose from: {', '.join(COLLECTIVES)}")
    return COLLECTIVES[name]


def bus_factor(ranks: int) -> float:
    """nccl-tests' allreduce bus factor 2(p−1)/p: busbw = algbw × factor."""
    return ALLREDUCE.bus_factor(ranks)


def register(
    name: str,
    fn: AllreduceFn,
    *,
    cost: CostForm,
    options: Sequence[Option] = (),
    out_of_place: bool = False,
) -> None:
    """Add an allreduce ``fn(comm, buf, *, op, scratch[, out], **options) -> bytes_sent``.

    ``cost`` is its α–β–γ form (``hpcopt.collectives.cost``). Other operations register
    with their own registry's :meth:`Collective.add`.
    """
    ALLREDUCE.add(name, fn, cost=cost, options=options, out_of_place=out_of_place)


@dataclass(frozen=True)
class BoundAlgorithm:
    """An algorithm with its options fixed; ``label`` is the spec it was made from."""

    label: str
    name: str
    run: AllreduceFn
    cost: CostForm
    out_of_place: bool
    collective: str = "allreduce"
    form: str = "in-place"
    native: bool | None = None
    binder: Binder | None = None

    def bind(
        self, comm: MPI.Comm, send: Any, recv: Any, *, count: int, op: MPI.Op, root: int,
        scratch: Any,
    ) -> Callable[[], Any]:  # fmt: skip
        """A zero-argument call of this algorithm on one set of buffers (blocks of ``count``
        elements), everything bound.

        MPI's own forms give the bare mpi4py call (what the C core times); own algorithms
        take the buffers and keywords their operation names and return bytes sent.
        """
        if self.binder is not None:
            return self.binder(comm, send, recv, count=count, op=op, root=root)
        spec = OPERATIONS[self.collective]
        buffers = {"send": send, "recv": recv}
        keywords = {"op": op, "root": root}
        return functools.partial(
            self.run, comm, *(buffers[b] for b in spec.own_buffers), scratch=scratch,
            **{k: keywords[k] for k in spec.own_keywords},
        )  # fmt: skip


def _bound(selection: Selection[int], owner: Collective) -> BoundAlgorithm:
    entry, kwargs = selection.entry, selection.kwargs()
    run = functools.partial(entry.factory, **kwargs) if kwargs else entry.factory
    info = entry.info
    return BoundAlgorithm(
        selection.spec, entry.name, run, info["cost"], info["out_of_place"], owner.name,
        info["form"], info["native"], info["binder"],
    )  # fmt: skip


def get_algorithm(spec: str, owner: Collective = ALLREDUCE) -> BoundAlgorithm:
    """The algorithm named by ``spec`` (``NAME[:key=value,...]``) with its options bound."""
    return _bound(owner.select(spec), owner)


def parse_algorithms(
    text: str, owner: Collective = ALLREDUCE, *, natives_only: bool = False
) -> list[BoundAlgorithm]:
    """A comma list of specs (``ring,ring-pipelined:segment=64K,window=4``) or ``all``
    (with ``natives_only``: every form of MPI's own call, the only ones other modes have)."""
    if text.strip() == "all":
        names = owner.natives() if natives_only else owner.names()
        return [get_algorithm(name, owner) for name in names]
    chosen = [get_algorithm(spec, owner) for spec in split_specs(text, "algorithm")]
    own = [a.label for a in chosen if a.native is None]
    if natives_only and own:
        natives = ", ".join(owner.natives())
        raise UsageError(f"{own[0]} has no such mode: only MPI's own {natives} have one")
    return chosen
