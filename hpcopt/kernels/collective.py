"""What every collective kernel shares: its flags, its cases, rotating buffer sets, the check.

A collective kernel (allreduce, allgather, reduce_scatter, reduce, bcast, alltoall, gather,
scatter, barrier) is :class:`CollectiveKernel` over one registry of ``hpcopt.collectives``:
its operation says which buffers each rank has and what it must hold afterwards, and its
algorithms are MPI's own call (timed by the C core where it works) and hpcopt's own. Every
rank generates every rank's deterministic data, so the expected result is computed locally,
never by MPI, and compared element by element outside the timed loop.
"""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt import timer as ctimer
from hpcopt.backend import Backend, Scratch, aligned_full, sync, to_host
from hpcopt.bench.buffers import RotatingSets
from hpcopt.bench.harness import Case
from hpcopt.bench.program import KernelParser, common_parser, run_sweep_kernel
from hpcopt.bench.verify import check_block, count_mismatches
from hpcopt.collectives import BoundAlgorithm, Collective, parse_algorithms
from hpcopt.collectives._p2p import op_by_name, op_name
from hpcopt.collectives.operations import Layout, Operation
from hpcopt.errors import UsageError

__all__ = [
    "MODES",
    "MOVEMENT_DTYPES",
    "OPS",
    "REDUCTION_DTYPES",
    "CollectiveCase",
    "CollectiveKernel",
    "add_overlap",
    "check_mode",
]

REDUCTION_DTYPES = ("float32", "float64", "int32", "int64")
MOVEMENT_DTYPES = ("uint8", "int32", "int64", "float32", "float64")
OPS = ("sum", "max", "min")
MODES = ("blocking", "nonblocking", "persistent")
_UFUNCS = {"sum": np.add, "max": np.maximum, "min": np.minimum}


@dataclass
class _Set:
    """One set of buffers (None where this rank has no such buffer) and its host mirrors."""

    send: Any
    recv: Any
    scratch: Scratch
    host_send: Any = None
    host_recv: Any = None


def _staged(call: Callable[[], Any], pairs: list[tuple[Any, Any]]) -> Callable[[], Any]:
    """``call`` on host mirrors: device buffers copied in before it and back after it."""

    def run() -> Any:
        for device, host in pairs:
            device.get(out=host)
        result = call()
        for device, host in pairs:
            device.set(host)
        return result

    return run


def _exact_reduce(op: str) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    ufunc = _UFUNCS[op]

    def reduce(blocks: Sequence[np.ndarray]) -> np.ndarray:
        total = np.array(blocks[0], copy=True)
        for block in blocks[1:]:
            ufunc(total, block, out=total)
        return total

    return reduce


class CollectiveBuffers(RotatingSets):
    """One size of one collective case: rotating buffer sets, their bound calls, the check."""

    def __init__(self, case: CollectiveCase, size_bytes: int) -> None:
        spec, comm, p = case.operation, case.comm, case.comm.size
        self.case = case
        self.count = spec.block_items(size_bytes, case.element_size, p)
        self.size_bytes = self.count * case.element_size * (p if spec.blocks_in_size else 1)
        self.layouts = {t: spec.layout(case.algorithm.form, comm.rank, t, p) for t in case.roots}
        # Rooted in-place calls still get the out-of-place buffers: the root's are unused,
        # but the C core (like MPI's signature) takes them.
        forms = {case.algorithm.form, "out-of-place" if spec.rooted else case.algorithm.form}
        every = [spec.layout(f, comm.rank, t, p) for f in forms for t in case.roots]
        self.send_blocks = max(lay.send for lay in every)
        self.recv_blocks = max(lay.recv for lay in every)
        self.native = case.algorithm.native is not None
        self.wire_kind = "nominal" if self.native else "counted"
        self.host_only = not case.backend.on_gpu
        self.staged = case.backend.stage_through_host()
        self.sets = [self.new_set()]
        self.nominal = self._nominal_bytes()
        self.rebind()

    def new_set(self) -> _Set:
        xp, dtype, n = self.case.backend.xp, self.case.dtype, self.count
        send = aligned_full(xp, self.send_blocks * n, 0, dtype) if self.send_blocks else None
        recv = aligned_full(xp, self.recv_blocks * n, 0, dtype) if self.recv_blocks else None
        one = _Set(send, recv, Scratch(np if self.staged else xp))
        if self.staged:
            one.host_send = None if send is None else np.empty(send.size, dtype)
            one.host_recv = None if recv is None else np.empty(recv.size, dtype)
        return one

    def _nominal_bytes(self) -> int:
        """MPI's own call: this rank's input handed to MPI (0 alone, or with no input)."""
        spec, comm = self.case.operation, self.case.comm
        has_input = spec.send_at == "all" or comm.rank in self.case.roots
        if comm.size == 1 or not has_input:
            return 0
        return spec.input_blocks(comm.size) * self.count * self.case.element_size

    def _call_for(self, index: int, root: int) -> Callable[[], Any]:
        one, case = self.sets[index], self.case
        send, recv = (one.host_send, one.host_recv) if self.staged else (one.send, one.recv)
        call = case.algorithm.bind(case.comm, send, recv, count=self.count, op=case.op,
                                   root=root, scratch=one.scratch)  # fmt: skip
        if not self.staged:
            return call
        sides = ((one.send, one.host_send), (one.recv, one.host_recv))
        return _staged(call, [(d, h) for d, h in sides if d is not None])

    def bound_calls(self) -> list[Callable[[], Any]]:
        """Call k uses set k mod N and, rotating, root k mod p (as the C core numbers them)."""
        roots, sets = self.case.roots, len(self.sets)
        cycle = math.lcm(sets, len(roots))
        return [self._call_for(k % sets, roots[k % len(roots)]) for k in range(cycle)]

    def plan_calls(self, calls: int, buffers: int) -> None:
        nonblocking = self.case.mode == "nonblocking"  # the call alone, then overlapped
        super().plan_calls(2 * calls if nonblocking else calls, buffers)

    def run(self) -> int:
        sent = self.next_call()
        return self.nominal if self.native else int(sent)

    def sync(self) -> None:
        for buf in (self.sets[0].send, self.sets[0].recv):
            if buf is not None:
                sync(buf)

    def c_call(self) -> ctimer.TimedCall | None:
        case = self.case
        if not self.native or self.staged:
            return None
        spec = case.operation
        return ctimer.TimedCall(
            spec.c_name, self.count,
            [s.send for s in self.sets] if self.send_blocks else [],
            [s.recv for s in self.sets] if self.recv_blocks else [],
            datatype=MPI.Datatype.fromcode(np.dtype(case.dtype).char), op=case.op,
            in_place=bool(case.algorithm.native) and spec.in_place != "none",
            root=case.roots[0], rotate_root=len(case.roots) > 1, mode=case.mode,
            tests=case.test_calls,
        )  # fmt: skip

    def _fill(self, one: _Set, layout: Layout, rank_input: np.ndarray) -> None:
        n = self.count
        for buf in (one.send, one.recv):
            if buf is not None:
                buf.fill(0)
        side = one.send if layout.input_side == "send" else one.recv
        blocks = layout.send if layout.input_side == "send" else layout.recv
        if side is not None and blocks:
            at = layout.input_block * n
            side[at : at + rank_input.size] = self.case.backend.xp.asarray(rank_input)

    def check(self) -> dict[str, Any]:
        """Each root's call on set 0 against the result computed locally from every rank's
        deterministic data: wrong elements, summed."""
        case, n, wrong = self.case, self.count, 0
        spec, comm, one = case.operation, case.comm, self.sets[0]
        data = functools.partial(check_block, n, case.dtype)
        reduce = _exact_reduce(case.op_label)
        for root in case.roots:
            layout = self.layouts[root]
            self._fill(one, layout, spec.rank_input(data, comm.rank, comm.size))
            self.sync()
            self._call_for(0, root)()
            self.sync()
            want = spec.expected(data, reduce, comm.rank, root, comm.size)
            if want is None or not layout.result_side:
                continue
            side = one.send if layout.result_side == "send" else one.recv
            at = layout.result_block * n
            got = to_host(side[at : at + layout.result_blocks * n])
            wrong += count_mismatches(got, want)
        return {"wrong": wrong}

    def set_bytes(self) -> int:
        """Twice the larger of a rank's input and result (the same on every rank)."""
        blocks = self.case.operation.call_blocks(self.case.comm.size)
        return 2 * blocks * self.count * self.case.element_size


class CollectiveCase(Case):
    """One algorithm of one operation, timed by the harness."""

    def __init__(
        self, comm: MPI.Comm, owner: Collective, algorithm: BoundAlgorithm, dtype: str,
        backend: Backend, *, op: str = "sum", root: int | None = 0, mode: str = "blocking",
        test_calls: int = 0,
    ) -> None:  # fmt: skip
        self.comm, self.owner, self.algorithm, self.backend = comm, owner, algorithm, backend
        self.operation: Operation = owner.operation
        self.kernel, self.algo, self.dtype = owner.name, algorithm.label, dtype
        self.op_label, self.op = op, op_by_name(op)
        self.roots = list(range(comm.size)) if root is None else [root]
        self.mode, self.test_calls = mode, test_calls
        self.element_size = np.dtype(dtype).itemsize
        blocks = comm.size if self.operation.blocks_in_size else 1
        self.itemsize = self.element_size * blocks
        self.sizeless = not self.operation.moves_data
        self.note = self.operation.size_meaning
        self.console = "overlap" if mode == "nonblocking" else ""

    def bus_factor(self, ranks: int) -> float:
        return self.owner.bus_factor(ranks)

    def algbw_bytes(self, size_bytes: int, ranks: int) -> int:
        return self.operation.algbw_bytes(size_bytes, ranks)

    def record_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"device": self.backend.device, "mode": self.mode}
        if self.operation.reduces:
            fields["op"] = op_name(self.op)
        if self.operation.rooted:
            fields.update(
                {"root": self.roots[0]} if len(self.roots) == 1 else {"rotate_root": True}
            )
        if self.mode == "nonblocking":
            fields["test_calls"] = self.test_calls
        return fields

    def prepare(self, size_bytes: int) -> CollectiveBuffers:
        return CollectiveBuffers(self, size_bytes)

    def finish_record(self, fields: dict[str, Any]) -> None:
        add_overlap(fields)


def add_overlap(fields: dict[str, Any]) -> None:
    """Nonblocking records: OSU's overlap % from the means of the three phases."""
    pure, alone = fields.get("t_pure_s"), fields.get("t_compute_s")
    if pure is not None and alone is not None:
        fields["overlap_pct"] = ctimer.overlap_percent(
            np.array([pure]), np.array([fields["t_avg_s"]]), np.array([alone])
        )


def _root(text: str, ranks: int) -> int | None:
    """``--root``: a rank, or ``rotate`` (None: call k uses root k mod p)."""
    if text.strip() == "rotate":
        return None
    try:
        root = int(text)
    except ValueError:
        raise UsageError(f"--root must be a rank or rotate, got {text!r}") from None
    if not 0 <= root < ranks:
        raise UsageError(f"root {root} is outside the communicator of {ranks} ranks")
    return root


def check_mode(mode: str, args: argparse.Namespace, backend: Backend) -> None:
    """Nonblocking and persistent calls are MPI's own, timed by the C core only."""
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if mode == "blocking":
        return
    state = ctimer.status()
    if args.timer == "python" or not state.available:
        why = "--timer python" if args.timer == "python" else state.reason
        raise UsageError(f"--mode {mode} is timed by the C core only ({why})")
    if backend.stage_through_host():
        raise UsageError(f"--mode {mode} needs host buffers or a CUDA-aware MPI")
    if mode == "persistent" and not state.persistent:
        raise UsageError("--mode persistent: this MPI has no persistent collectives (MPI-4)")


class CollectiveKernel:
    """The flags, cases and main of the kernel of one operation."""

    def __init__(self, owner: Collective) -> None:
        spec = owner.operation
        self.owner = owner
        self.description = f"{owner.name} sweep: {spec.summary}, for each selected algorithm."
        self.dtypes = REDUCTION_DTYPES if spec.reduces else MOVEMENT_DTYPES

    def parser(self) -> KernelParser:
        """Common flags plus --algo, --dtype, --mode (and --op, --root where they apply)."""
        spec, ps = self.owner.operation, common_parser(self.owner.name, self.description)
        add = ps.add_argument
        natives = ",".join(self.owner.natives())
        add("--algo", default="all", help=f"comma list of algorithms with options, or all "
            f"(default): {', '.join(self.owner.names())}; MPI's own: {natives}")  # fmt: skip
        default = self.dtypes[0]
        add("--dtype", default=default, help=f"one of {', '.join(self.dtypes)} (default "
            f"{default})")  # fmt: skip
        if spec.reduces:
            add("--op", default="sum", help=f"one of {', '.join(OPS)} (default sum)")
        if spec.rooted:
            add("--root", default="0", help="the root rank, or rotate (call k uses k mod p)")
        add("--mode", default="blocking", help="blocking, nonblocking (OSU's overlap method) or "
            "persistent (MPI-4 *_init); the last two for MPI's own calls, timed in C")  # fmt: skip
        add(
            "--test-calls",
            default=0,
            type=int,
            metavar="N",
            help="nonblocking: MPI_Test calls spread through the dummy compute (default 0)",
        )
        return ps

    def cases(
        self, comm: MPI.Comm, args: argparse.Namespace, backend: Backend
    ) -> list[CollectiveCase]:
        """One case per requested algorithm; bad values refused in one line."""
        spec = self.owner.operation
        if args.dtype not in self.dtypes:
            raise UsageError(f"unknown dtype {args.dtype!r}; choose from {', '.join(self.dtypes)}")
        op = getattr(args, "op", "sum")
        if op not in OPS:
            raise UsageError(f"unknown op {op!r}; choose from {', '.join(OPS)}")
        root = _root(args.root, comm.size) if spec.rooted else 0
        check_mode(args.mode, args, backend)
        if args.test_calls < 0 or (args.test_calls and args.mode != "nonblocking"):
            raise UsageError("--test-calls must be >= 0 and goes with --mode nonblocking")
        algos = parse_algorithms(args.algo, self.owner, natives_only=args.mode != "blocking")
        return [
            CollectiveCase(
                comm,
                self.owner,
                a,
                args.dtype,
                backend,
                op=op,
                root=root,
                mode=args.mode,
                test_calls=args.test_calls,
            )
            for a in algos
        ]

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Validate on every rank, sweep, log; the exit status (2 bad input, 1 wrong results)."""
        return run_sweep_kernel(self.owner.name, self.parser(), self.cases, argv)
