"""The registry of allreduce algorithms: function, options, cost form, calling convention."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mpi4py import MPI

from hpcopt.collectives.cost import CostForm
from hpcopt.registry import Option, Registry, Selection
from hpcopt.specs import split_specs

__all__ = [
    "ALLREDUCE",
    "AllreduceFn",
    "Binder",
    "BoundAlgorithm",
    "bus_factor",
    "get_algorithm",
    "parse_algorithms",
    "register",
]

AllreduceFn = Callable[..., int]
# binder(comm, buf, op=, out=) -> a zero-argument call of the same operation, or None
Binder = Callable[..., Callable[[], Any] | None]

# The registered callables are the algorithms themselves; calling one returns bytes sent.
ALLREDUCE: Registry[int] = Registry("algorithm")


def bus_factor(ranks: int) -> float:
    """nccl-tests' allreduce bus factor 2(p−1)/p: busbw = algbw × factor."""
    return 2 * (ranks - 1) / ranks


def register(
    name: str,
    fn: AllreduceFn,
    *,
    cost: CostForm,
    options: Sequence[Option] = (),
    out_of_place: bool = False,
    binder: Binder | None = None,
) -> None:
    """Add an allreduce ``fn(comm, buf, *, op, scratch[, out], **options) -> bytes_sent``.

    ``cost`` is its α–β–γ form (``hpcopt.collectives.cost``); ``binder(comm, buf, op=,
    out=)`` may return a leaner zero-argument call for timed loops (None: use ``fn``).
    """
    ALLREDUCE.register(
        name, fn, options=options, cost=cost, out_of_place=out_of_place, binder=binder
    )


@dataclass(frozen=True)
class BoundAlgorithm:
    """An algorithm with its options fixed; ``label`` is the spec it was made from."""

    label: str
    name: str
    run: AllreduceFn
    cost: CostForm
    out_of_place: bool
    binder: Binder | None = None

    def call(
        self, comm: MPI.Comm, buf: Any, *, op: MPI.Op, scratch: Any, out: Any = None
    ) -> Callable[[], int]:
        """``run`` on ``buf`` with every argument bound once; returns bytes sent."""
        if self.out_of_place:
            return functools.partial(self.run, comm, buf, op=op, scratch=scratch, out=out)
        return functools.partial(self.run, comm, buf, op=op, scratch=scratch)

    def bind(
        self, comm: MPI.Comm, buf: Any, *, op: MPI.Op, scratch: Any, out: Any = None
    ) -> Callable[[], Any]:
        """The call a timed loop makes: the registered binder's leaner one if it gives one
        (native: the bare mpi4py call), else :meth:`call`. Its return value is not bytes.
        """
        direct = self.binder(comm, buf, op=op, out=out) if self.binder is not None else None
        return direct or self.call(comm, buf, op=op, scratch=scratch, out=out)


def _bound(selection: Selection[int]) -> BoundAlgorithm:
    entry, kwargs = selection.entry, selection.kwargs()
    run = functools.partial(entry.factory, **kwargs) if kwargs else entry.factory
    info = entry.info
    return BoundAlgorithm(
        selection.spec, entry.name, run, info["cost"], info["out_of_place"], info["binder"]
    )


def get_algorithm(spec: str) -> BoundAlgorithm:
    """The algorithm named by ``spec`` (``NAME[:key=value,...]``) with its options bound."""
    return _bound(ALLREDUCE.select(spec))


def parse_algorithms(text: str) -> list[BoundAlgorithm]:
    """A comma list of specs (``ring,ring-pipelined:segment=64K,window=4``) or ``all``."""
    if text.strip() == "all":
        return [get_algorithm(name) for name in ALLREDUCE.names()]
    return [get_algorithm(spec) for spec in split_specs(text, "algorithm")]
