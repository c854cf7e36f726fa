"""Allreduce algorithms over mpi4py, each one function over (communicator, buffer).

Every algorithm reduces a contiguous 1-D NumPy or CuPy array in place and returns
the number of bytes this rank handed to MPI send calls. Algorithms are looked up by
spec strings such as ``ring`` or ``ring-pipelined:segment=64K``; :func:`register`
adds new ones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mpi4py import MPI

from hpcopt.collectives.hierarchical import hierarchical
from hpcopt.collectives.native import bind_native, native_in_place, native_out_of_place
from hpcopt.collectives.rabenseifner import rabenseifner
from hpcopt.collectives.recursive_doubling import recursive_doubling
from hpcopt.collectives.ring import ring
from hpcopt.collectives.ring_pipelined import ring_pipelined
from hpcopt.collectives.tree import tree
from hpcopt.errors import UsageError
from hpcopt.specs import parse_size, parse_spec

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "BoundAlgorithm",
    "get_algorithm",
    "parse_algorithms",
    "register",
]

AllreduceFn = Callable[..., int]


# binder(comm, buf, op=, out=) -> a zero-argument call of the same operation, or None
Binder = Callable[..., Callable[[], Any] | None]


@dataclass(frozen=True)
class Algorithm:
    """A registered allreduce: its function, option parsers and calling convention."""

    name: str
    fn: AllreduceFn
    options: dict[str, tuple[str, Callable[[str], Any]]] = field(default_factory=dict)
    out_of_place: bool = False
    binder: Binder | None = None


@dataclass(frozen=True)
class BoundAlgorithm:
    """An algorithm with its options fixed; ``label`` is the spec it was made from."""

    label: str
    name: str
    run: AllreduceFn
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


ALGORITHMS: dict[str, Algorithm] = {}


def register(
    name: str,
    fn: AllreduceFn,
    *,
    options: dict[str, tuple[str, Callable[[str], Any]]] | None = None,
    out_of_place: bool = False,
    binder: Binder | None = None,
) -> None:
    """Add an allreduce ``fn(comm, buf, *, op, scratch[, out]) -> bytes_sent``.

    ``options`` maps a spec key to (keyword argument, parser of the value string);
    ``binder(comm, buf, op=, out=)`` may return a leaner zero-argument call for timed
    loops (or None to use ``fn``).
    """
    ALGORITHMS[name] = Algorithm(name, fn, dict(options or {}), out_of_place, binder)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


register("native", native_in_place, binder=bind_native)
register("native-oop", native_out_of_place, out_of_place=True, binder=bind_native)
register("ring", ring)
register(
    "ring-pipelined",
    ring_pipelined,
    options={"segment": ("segment_bytes", parse_size), "window": ("window", _positive_int)},
)
register("tree", tree)
register("recursive-doubling", recursive_doubling)
register("rabenseifner", rabenseifner)
register("hierarchical", hierarchical, options={"ppn": ("ranks_per_node", _positive_int)})


def get_algorithm(spec: str) -> BoundAlgorithm:
    """The algorithm named by ``spec`` with its options bound; UsageError if unknown."""
    name, raw = parse_spec(spec, "algorithm")
    algo = ALGORITHMS.get(name)
    if algo is None:
        known = ", ".join(ALGORITHMS)
        raise UsageError(f"unknown algorithm {name!r}; choose from: {known} (or all)")
    kwargs: dict[str, Any] = {}
    for key, text in raw.items():
        if key not in algo.options:
            allowed = ", ".join(algo.options) or "none"
            raise UsageError(f"algorithm {name!r} has no option {key!r} (options: {allowed})")
        kwarg, parse = algo.options[key]
        try:
            kwargs[kwarg] = parse(text)
        except (ValueError, UsageError):
            raise UsageError(f"bad value {text!r} for {name} option {key!r}") from None
    run = functools.partial(algo.fn, **kwargs) if kwargs else algo.fn
    return BoundAlgorithm(spec.strip(), name, run, algo.out_of_place, algo.binder)


def parse_algorithms(text: str) -> list[BoundAlgorithm]:
    """A comma list of specs (options after ``:`` use ``;`` between keys) or ``all``."""
    if text.strip() == "all":
        return [get_algorithm(name) for name in ALGORITHMS]
    specs = [part.replace(";", ",") for part in text.split(",") if part.strip()]
    if not specs:
        raise UsageError("no algorithm given")
    return [get_algorithm(spec) for spec in specs]
