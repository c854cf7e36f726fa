"""The p2p kernel: ping-pong latency, streaming and bidirectional bandwidth, multiple pairs.

Rank r pairs with rank r + p/2 (the lower one starts), as OSU does; every pattern sends from
a send buffer and receives into a separate receive buffer. ``pingpong`` (osu_latency),
``stream`` (osu_bw) and ``bibw`` (osu_bibw) need exactly 2 ranks; ``multi`` runs on p/2
pairs at once and gives two records per size: ``multi``, the one-way latency of every pair
pinging together (osu_multi_lat), and ``stream`` over all pairs, with their aggregate
bandwidth and message rate (osu_mbw_mr).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt import timer as ctimer
from hpcopt.backend import Backend, aligned_full, sync, to_host
from hpcopt.bench.buffers import RotatingSets
from hpcopt.bench.harness import Case
from hpcopt.bench.program import KernelParser, common_parser, run_sweep_kernel
from hpcopt.bench.verify import check_block, count_mismatches
from hpcopt.collectives.native import native_spec
from hpcopt.errors import UsageError
from hpcopt.specs import no_repeats

__all__ = ["PATTERNS", "PatternCase", "cases", "main", "parser", "stream_window"]

KERNEL = "p2p"
DESCRIPTION = (
    "Point-to-point patterns between rank pairs r and r + p/2: ping-pong latency, streaming "
    "and bidirectional bandwidth (a window of messages in flight), many pairs at once."
)
WINDOW = 64
WINDOW_BYTES_CAP = 64 << 20
TAG, ACK_TAG = 1, 2


def stream_window(size_bytes: int, most: int = WINDOW) -> int:
    """Messages in flight per window: ``most``, fewer when they would pass 64 MiB."""
    return max(1, min(most, WINDOW_BYTES_CAP // max(size_bytes, 1)))


@dataclass(frozen=True)
class Pattern:
    """One pattern: the C core's operation, its window, what a sample and a record mean."""

    name: str  # the record's algo
    operation: str  # the C core's pattern
    windowed: bool
    both_ways: bool  # bibw: both ranks of a pair send a window
    time_unit: str
    needs_two: bool = True


PATTERNS = {
    p.name: p
    for p in (
        Pattern("pingpong", "pingpong", False, True, "one-way message"),
        Pattern("stream", "stream", True, False, "message in a window"),
        Pattern("bibw", "bibw", True, True, "message each way in a window"),
        Pattern("multi", "pingpong", False, True, "one-way message, every pair at once", False),
    )
}
_MULTI_STREAM = Pattern("stream", "stream", True, False, "message in a window, every pair", False)


@dataclass
class _Set:
    send: Any
    recv: Any
    host_send: Any
    host_recv: Any
    requests: list[MPI.Prequest] | None = None  # made on first use (the C core needs none)


class PatternBuffers(RotatingSets):
    """One size of one pattern: send and receive slots per buffer set, persistent requests."""

    def __init__(self, case: PatternCase, size_bytes: int) -> None:
        comm, pattern = case.comm, case.pattern
        half = comm.size // 2
        self.case, self.count, self.size_bytes = case, size_bytes, size_bytes
        self.first = comm.rank < half
        self.partner = comm.rank + half if self.first else comm.rank - half
        self.window = stream_window(size_bytes, case.window) if pattern.windowed else 1
        self.messages_per_call = self.window if pattern.windowed else 2
        self.staged = case.backend.stage_through_host()
        self.host_only = not case.backend.on_gpu
        self.ack = np.zeros(1, np.int32)
        self.sets = [self.new_set()]
        self.rebind()

    def new_set(self) -> _Set:
        xp, shape = self.case.backend.xp, self.window * self.count
        send, recv = (aligned_full(xp, shape, 0, np.uint8) for _ in range(2))
        host_send = np.empty(shape, np.uint8) if self.staged else send
        host_recv = np.empty(shape, np.uint8) if self.staged else recv
        return _Set(send, recv, host_send, host_recv)

    def _requests(self, send: Any, recv: Any) -> list[MPI.Prequest]:
        comm, n, peer, pattern = self.case.comm, self.count, self.partner, self.case.pattern
        if not pattern.windowed:
            return []
        sends = pattern.both_ways or self.first
        receives = pattern.both_ways or not self.first
        slots = range(self.window)
        out = (
            [comm.Recv_init(recv[i * n : (i + 1) * n], peer, TAG) for i in slots]
            if receives
            else []
        )
        if sends:
            out += [comm.Send_init(send[i * n : (i + 1) * n], peer, TAG) for i in slots]
        return out

    def _call_for(self, one: _Set) -> Callable[[], int]:
        """One call of the pattern on set ``one``, everything bound; returns bytes sent."""
        if self.case.pattern.windowed:
            return self._window_call(one)
        comm, peer, n, first = self.case.comm, self.partner, self.count, self.first
        send, recv = native_spec(one.host_send, n), native_spec(one.host_recv, n)
        send_to, receive_from = comm.Send, comm.Recv
        if not self.staged:

            def call() -> int:
                if first:
                    send_to(send, peer, TAG)
                    receive_from(recv, peer, TAG)
                else:
                    receive_from(recv, peer, TAG)
                    send_to(send, peer, TAG)
                return n

            return call

        def staged() -> int:  # the sender copies its device buffer out, the receiver in
            if not first:
                receive_from(recv, peer, TAG)
                one.recv.set(one.host_recv)
            one.send.get(out=one.host_send)
            send_to(send, peer, TAG)
            if first:
                receive_from(recv, peer, TAG)
                one.recv.set(one.host_recv)
            return n

        return staged

    def _window_call(self, one: _Set) -> Callable[[], int]:
        comm, peer, pattern = self.case.comm, self.partner, self.case.pattern
        ack, nbytes = self.ack, self.window * self.count
        sends = pattern.both_ways or self.first

        def call() -> int:
            if one.requests is None:
                one.requests = self._requests(one.host_send, one.host_recv)
            requests = one.requests
            if self.staged:
                one.send.get(out=one.host_send)
            MPI.Prequest.Startall(requests)
            MPI.Request.Waitall(requests)
            if self.staged:
                one.recv.set(one.host_recv)
            if not pattern.both_ways:
                if self.first:
                    comm.Recv(ack, peer, ACK_TAG)
                else:
                    comm.Send(ack, peer, ACK_TAG)
            return nbytes if sends else 0

        return call

    def bound_calls(self) -> list[Callable[[], Any]]:
        return [self._call_for(one) for one in self.sets]

    def run(self) -> int:
        return int(self.next_call())

    def sync(self) -> None:
        sync(self.sets[0].send)

    def c_call(self) -> ctimer.TimedCall | None:
        if self.staged:
            return None
        sends, recvs = [s.send for s in self.sets], [s.recv for s in self.sets]
        return ctimer.TimedCall(self.case.pattern.operation, self.count, sends, recvs,
                                datatype=MPI.BYTE, window=self.window)  # fmt: skip

    def check(self) -> dict[str, Any]:
        """Each slot of the partner's window arrives intact where this rank receives one
        (slot s carries the sender's check data plus s, so that no two slots are alike)."""
        one, n, pattern, xp = self.sets[0], self.count, self.case.pattern, self.case.backend.xp
        mine = check_block(n, np.uint8, self.case.comm.rank, 0)
        for slot in range(self.window):
            one.send[slot * n : (slot + 1) * n] = xp.asarray(mine + np.uint8(slot % 256))
        one.recv.fill(0)
        self.sync()
        self.calls[0]()
        self.sync()
        if not (pattern.both_ways or not self.first):
            return {"wrong": 0}
        got, theirs = to_host(one.recv), check_block(n, np.uint8, self.partner, 0)
        wrong = sum(
            count_mismatches(got[slot * n : (slot + 1) * n], theirs + np.uint8(slot % 256))
            for slot in range(self.window)
        )
        return {"wrong": wrong}

    def iteration_bytes(self) -> int:
        return self.window * self.size_bytes

    def __del__(self) -> None:
        for one in getattr(self, "sets", []):
            for req in one.requests or ():
                req.Free()


class PatternCase(Case):
    """One pattern over every pair of ranks, timed by the harness."""

    kernel = KERNEL

    def __init__(self, comm: MPI.Comm, backend: Backend, pattern: Pattern, window: int) -> None:
        self.comm, self.backend, self.pattern, self.window = comm, backend, pattern, window
        self.algo, self.pairs = pattern.name, comm.size // 2
        self.note = "size: one message; pairs r <-> r + p/2"

    def algbw_bytes(self, size_bytes: int, ranks: int) -> int:
        """Bytes per sample time: every pair's message (both directions for bibw)."""
        both = 2 if self.pattern.windowed and self.pattern.both_ways else 1
        return size_bytes * both * (self.pairs if self.pattern.windowed else 1)

    def record_fields(self) -> dict[str, Any]:
        return {"device": self.backend.device, "time_unit": self.pattern.time_unit,
                "pairs": self.pairs}  # fmt: skip

    def footprint(self, size_bytes: int) -> int:
        """Send and receive windows of messages (device and host copies) per buffer set,
        and the expected pattern."""
        pattern = self.pattern
        window = stream_window(size_bytes, self.window) if pattern.windowed else 1
        return (4 * window + 1) * size_bytes

    def prepare(self, size_bytes: int) -> PatternBuffers:
        return PatternBuffers(self, size_bytes)

    def finish_record(self, fields: dict[str, Any]) -> None:
        if self.pattern.windowed and fields.get("t_avg_s"):
            both = 2 if self.pattern.both_ways else 1
            fields["msg_rate_per_s"] = both * self.pairs / fields["t_avg_s"]


def parser() -> KernelParser:
    """Common flags plus --pattern and --window."""
    ps = common_parser(KERNEL, DESCRIPTION)
    # A ping-pong is timed back to back (as OSU does): after a barrier the two ranks
    # leave one link latency apart, which would skew a per-iteration barrier's samples.
    ps.set_defaults(barrier="none")
    ps.add_argument(
        "--pattern", default="pingpong,stream",
        help=f"comma list of {', '.join(PATTERNS)} (default pingpong,stream)",
    )  # fmt: skip
    ps.add_argument(
        "--window",
        default=WINDOW,
        type=int,
        metavar="N",
        help=f"messages in flight per window (default {WINDOW}; at most 64 MiB)",
    )
    return ps


def _expand(names: list[str], comm: MPI.Comm) -> list[Pattern]:
    """The patterns asked for; ``multi`` stands for multi-pair latency and bandwidth."""
    p, chosen = comm.size, []
    for name in names:
        pattern = PATTERNS[name]
        if pattern.needs_two and p != 2:
            raise UsageError(f"{name} needs exactly 2 ranks, got {p} (multi runs on p/2 pairs)")
        if not pattern.needs_two and (p < 2 or p % 2):
            raise UsageError(f"{name} pairs rank r with r + p/2: needs an even rank count, got {p}")
        chosen += [pattern, _MULTI_STREAM] if name == "multi" else [pattern]
    unique: dict[str, Pattern] = {}
    for pattern in chosen:
        unique.setdefault(pattern.name, pattern)
    return list(unique.values())


def cases(comm: MPI.Comm, args: argparse.Namespace, backend: Backend) -> Sequence[Case]:
    """One case per pattern; the rank counts each pattern needs."""
    names = no_repeats([n.strip() for n in args.pattern.split(",") if n.strip()], "pattern")
    unknown = [n for n in names if n not in PATTERNS]
    if unknown or not names:
        known = ",".join(PATTERNS)
        raise UsageError(f"unknown pattern {','.join(unknown) or '(none)'}; use {known}")
    if args.window < 1:
        raise UsageError(f"--window must be >= 1, got {args.window}")
    return [PatternCase(comm, backend, p, args.window) for p in _expand(names, comm)]


def main(argv: Sequence[str] | None = None) -> int:
    """Validate on every rank, sweep, log; the exit status (2 bad input, 1 wrong results)."""
    return run_sweep_kernel(KERNEL, parser(), cases, argv)
