"""What every aggregation path returns, and the clock that splits its time into phases."""

from __future__ import annotations

from typing import Any, NamedTuple

from mpi4py import MPI

__all__ = ["PHASES", "Clock", "Result"]

PHASES = ("encode", "communicate", "decode")


class Result(NamedTuple):
    """The estimated sum (same on every rank), bytes sent by this rank, time per phase (s),
    and, where the path knows them, the bytes sent per link class (hierarchical: intra, inter).
    """

    out: Any
    nbytes: int
    times: dict[str, float]
    links: dict[str, int] | None = None


class Clock:
    """Accumulates MPI.Wtime intervals into the phases."""

    __slots__ = ("t", "times")

    def __init__(self) -> None:
        self.times = dict.fromkeys(PHASES, 0.0)
        self.t = MPI.Wtime()

    def lap(self, phase: str) -> None:
        now = MPI.Wtime()
        self.times[phase] += now - self.t
        self.t = now
