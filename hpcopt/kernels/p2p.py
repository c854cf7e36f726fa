"""The p2p kernel: two-rank ping-pong latency and windowed streaming bandwidth."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.backend import Backend, sync, to_host
from hpcopt.bench.harness import Case, Prepared
from hpcopt.bench.program import KernelParser, common_parser, run_sweep_kernel
from hpcopt.bench.verify import count_mismatches, fill_check_data
from hpcopt.errors import UsageError
from hpcopt.specs import no_repeats

__all__ = ["PATTERNS", "PingPongCase", "StreamCase", "cases", "main", "parser", "stream_window"]

KERNEL = "p2p"
DESCRIPTION = (
    "Two-rank point-to-point: ping-pong latency (half the round trip) and streaming "
    "bandwidth (a window of messages in flight), over a size sweep."
)

WINDOW = 64
WINDOW_BYTES_CAP = 64 << 20


def stream_window(size_bytes: int) -> int:
    """Messages in flight per streaming iteration: 64, fewer when they would pass 64 MiB."""
    return max(1, min(WINDOW, WINDOW_BYTES_CAP // max(size_bytes, 1)))


class _Staging(Prepared):
    """A device buffer and, when MPI cannot take it, the host copy that MPI sees instead."""

    def __init__(self, backend: Backend, shape: tuple[int, ...]) -> None:
        self.buf = backend.xp.zeros(shape, dtype=np.uint8)
        self.staged = backend.stage_through_host()
        self.wire = np.zeros(shape, dtype=np.uint8) if self.staged else self.buf

    def to_wire(self) -> None:
        if self.staged:
            self.buf.get(out=self.wire)
        else:
            sync(self.buf)

    def from_wire(self) -> None:
        if self.staged:
            self.buf.set(self.wire)


class _PingPong(_Staging):
    """Rank 0 sends, rank 1 echoes; one sample is half a round trip (one-way latency)."""

    def __init__(self, comm: MPI.Comm, backend: Backend, size_bytes: int) -> None:
        super().__init__(backend, (size_bytes,))
        self.comm, self.count, self.size_bytes = comm, size_bytes, size_bytes
        self.messages_per_call = 2

    def run(self) -> int:
        comm, wire = self.comm, self.wire
        if comm.rank == 0:
            self.to_wire()
            comm.Send(wire, 1, 0)
            comm.Recv(wire, 1, 0)
            self.from_wire()
        else:
            comm.Recv(wire, 0, 0)
            self.from_wire()
            self.to_wire()
            comm.Send(wire, 0, 0)
        return wire.nbytes

    def sync(self) -> None:
        sync(self.buf)

    def check(self) -> dict[str, Any]:
        """Rank 0's pattern must reach rank 1 and come back unchanged."""
        expected = np.empty(self.count, np.uint8)
        fill_check_data(expected, 0)
        if self.comm.rank == 0:
            fill_check_data(self.buf, 0)
        else:
            self.buf[...] = 0
        self.run()
        self.sync()
        return {"wrong": count_mismatches(to_host(self.buf), expected)}


class _Stream(_Staging):
    """Rank 0 keeps a window of sends in flight to rank 1, which acknowledges each window."""

    def __init__(self, comm: MPI.Comm, backend: Backend, size_bytes: int) -> None:
        window = stream_window(size_bytes)
        super().__init__(backend, (window, size_bytes))
        self.comm, self.count, self.size_bytes = comm, size_bytes, size_bytes
        self.window = self.messages_per_call = window
        self.ack = np.zeros(1, dtype=np.uint8)
        if comm.rank == 0:
            self.reqs = [comm.Send_init(self.wire[i], 1, 1) for i in range(window)]
        else:
            self.reqs = [comm.Recv_init(self.wire[i], 0, 1) for i in range(window)]

    def run(self) -> int:
        if self.comm.rank == 0:
            self.to_wire()
        MPI.Prequest.Startall(self.reqs)
        MPI.Request.Waitall(self.reqs)
        if self.comm.rank == 0:
            self.comm.Recv(self.ack, 1, 2)
            return self.size_bytes * self.window
        self.from_wire()
        self.comm.Send(self.ack, 0, 2)
        return 0

    def sync(self) -> None:
        sync(self.buf)

    def check(self) -> dict[str, Any]:
        """Every slot of the window must arrive intact."""
        for row in range(self.window):
            fill_check_data(self.buf[row], row)
        if self.comm.rank == 1:
            self.buf[...] = 0
        self.run()
        self.sync()
        expected = np.empty(self.size_bytes, np.uint8)
        wrong = 0
        for row in range(self.window):
            fill_check_data(expected, row)
            wrong += count_mismatches(to_host(self.buf[row]), expected)
        return {"wrong": wrong}

    def iteration_bytes(self) -> int:
        return self.window * self.size_bytes

    def __del__(self) -> None:
        for req in getattr(self, "reqs", []):
            req.Free()


class _P2PCase(Case):
    """A two-rank pattern: ``prepared`` builds its buffers, ``time_unit`` names a sample."""

    kernel = KERNEL
    time_unit = ""
    prepared: type[_PingPong] | type[_Stream]

    def __init__(self, comm: MPI.Comm, backend: Backend) -> None:
        self.comm, self.backend = comm, backend

    def record_fields(self) -> dict[str, Any]:
        return {"device": self.backend.device, "time_unit": self.time_unit}

    def footprint(self, size_bytes: int) -> int:
        """The messages in flight (device and host copies) and the expected pattern."""
        window = stream_window(size_bytes) if self.prepared is _Stream else 1
        return (4 * window + 1) * size_bytes

    def prepare(self, size_bytes: int) -> _PingPong | _Stream:
        return self.prepared(self.comm, self.backend, size_bytes)


class PingPongCase(_P2PCase):
    """OSU-style latency: half the round-trip time of a ping-pong."""

    algo, time_unit, prepared = "pingpong", "one-way message", _PingPong


class StreamCase(_P2PCase):
    """OSU-style bandwidth: a window of messages in flight; times are per message."""

    algo, time_unit, prepared = "stream", "message in a window", _Stream


PATTERNS: dict[str, type[_P2PCase]] = {"pingpong": PingPongCase, "stream": StreamCase}


def parser() -> KernelParser:
    """Common flags plus --pattern."""
    ps = common_parser(KERNEL, DESCRIPTION)
    # A ping-pong is timed back to back (as OSU does): after a barrier the two ranks
    # leave one link latency apart, which would skew a per-iteration barrier's samples.
    ps.set_defaults(barrier="none")
    ps.add_argument(
        "--pattern", default="pingpong,stream",
        help=f"comma list of {', '.join(PATTERNS)} (default pingpong,stream)",
    )  # fmt: skip
    return ps


def cases(comm: MPI.Comm, args: argparse.Namespace, backend: Backend) -> Sequence[Case]:
    """Ping-pong and/or streaming cases; exactly two ranks."""
    if comm.size != 2:
        raise UsageError(f"p2p needs exactly 2 ranks, got {comm.size} (mpiexec -n 2)")
    names = no_repeats([n.strip() for n in args.pattern.split(",") if n.strip()], "pattern")
    unknown = [n for n in names if n not in PATTERNS]
    if unknown or not names:
        known = ",".join(PATTERNS)
        raise UsageError(f"unknown pattern {','.join(unknown) or '(none)'}; use {known}")
    return [PATTERNS[n](comm, backend) for n in names]


def main(argv: Sequence[str] | None = None) -> int:
    """Validate on every rank, sweep, log; the exit status (2 bad input, 1 wrong results)."""
    return run_sweep_kernel(KERNEL, parser(), cases, argv)
