"""The SPMD program every kernel runs: common flags, collective validation, the log, errors.

Bad input is found before any measurement, on every rank, and agreed on with one
``allgather``, so that all ranks leave together with exit status 2 and one line on
stderr. Anything that fails later aborts the whole job (``MPI_Abort``) instead of
leaving the other ranks waiting; the records completed so far stay in the
``.partial`` log.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from mpi4py import MPI

from hpcopt import smoke
from hpcopt.backend import Backend, get_backend
from hpcopt.bench.buffers import parse_buffers
from hpcopt.bench.console import Table
from hpcopt.bench.guard import ABORT_GRACE_S, DEFAULT_TIMEOUT_S, Interrupted, SweepGuard
from hpcopt.bench.harness import (
    BARRIER_POLICIES,
    TIMERS,
    Case,
    SweepConfig,
    plan_sizes,
    resolve_timer,
    run_sweep,
    size_sweep,
)
from hpcopt.bench.resources import check_memory
from hpcopt.bench.resume import Resumed, load_resume
from hpcopt.bench.settings import THREAD_LEVELS, check_timer, run_settings
from hpcopt.errors import UsageError
from hpcopt.log import LogWriter
from hpcopt.meta import collect_meta
from hpcopt.output import stamped_path
from hpcopt.registry import load_plugins
from hpcopt.specs import label, parse_size

__all__ = [
    "KernelParser",
    "add_output_flags",
    "add_run_flags",
    "common_parser",
    "guarded",
    "open_log",
    "run_sweep_kernel",
    "sweep_config",
    "validate_collectively",
]

TIMES_NOTE = (
    "times: avg/min/max over ranks of each rank's mean; p50/p99 over iterations of the slowest rank"
)

MakeCases = Callable[[MPI.Comm, argparse.Namespace, Backend], Sequence[Case]]
T = TypeVar("T")
DEFAULT_MINBYTES = "8"  # -b when not given; sizes below one element are then skipped


class KernelParser(argparse.ArgumentParser):
    """argparse that raises UsageError and prints help on rank 0 only."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def _print_message(self, message: str, file: Any = None) -> None:
        if MPI.COMM_WORLD.rank == 0:
            super()._print_message(message, file)


def _factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"cannot parse step factor {text!r}") from None
    if not (math.isfinite(value) and value > 1):
        raise UsageError(f"step factor must be a finite number > 1, got {text}")
    return value


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """-o/--tag/--overwrite/--device/-q: the flags of every kernel, sweeping or not."""
    add = parser.add_argument
    add("--device", default="cpu", help="cpu (NumPy buffers) or cuda (CuPy) (default %(default)s)")
    add("-o", "--output", default=None,
        help="HDF5 log; an existing file is refused (default results/KERNEL-TIME.h5)")  # fmt: skip
    add("--tag", default="", type=label, help="label of this setup, e.g. the interconnect: shm, ib "
        "(default: none)")  # fmt: skip
    add("--overwrite", action="store_true",
        help="replace an existing log (a regular file) once this run has finished")  # fmt: skip
    add("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    add("--thread-level", default="multiple", choices=THREAD_LEVELS,
        help="MPI thread level asked for at MPI_Init_thread (default multiple)")  # fmt: skip


def common_parser(kernel: str, description: str | None) -> KernelParser:
    """The flags every sweeping kernel takes (nccl-tests' -b -e -f -w -n -c, plus output)."""
    parser = KernelParser(prog=f"kernels/{kernel}.py", description=description)
    add = parser.add_argument
    add("-b", "--minbytes", default=None,
        help=f"smallest message size, e.g. 8, 1K, 16M (default {DEFAULT_MINBYTES}, sizes below "
             "one element of a case skipped)")  # fmt: skip
    add("-e", "--maxbytes", default="16M", help="largest message size (default %(default)s)")
    add("-f", "--stepfactor", default=2.0, type=_factor,
        help="size multiplier from one size to the next (default %(default)g)")  # fmt: skip
    add("-w", "--warmup", default=10, type=int,
        help="warm-up iterations, not timed (default %(default)s)")  # fmt: skip
    add("-n", "--iters", default=100, type=int,
        help="timed iterations; both counts shrink above 1 MiB (default %(default)s)")  # fmt: skip
    add("--fixed-iters", action="store_true", help="do not scale iterations down above 1 MiB")
    add("-c", "--check", default=1, type=int, choices=(0, 1),
        help="1: a correctness pass outside the timed loop; 0: none "
        "(default %(default)s)")  # fmt: skip
    add("--barrier", default="iter", choices=tuple(BARRIER_POLICIES),
        help="iter: MPI_Barrier before every timed iteration, not timed; none: one barrier, "
        "then iterations back to back (default %(default)s)")  # fmt: skip
    add("--timer", default="auto", choices=TIMERS,
        help="who times MPI's own operations: c (the C core), python, or auto (C where it "
        "works; default %(default)s)")  # fmt: skip
    add("--buffers", default="1", type=parse_buffers, metavar="N|auto",
        help="rotating buffer sets per size, to time out of cache; auto: enough to exceed "
        "the last-level cache (default %(default)s)")  # fmt: skip
    add_run_flags(parser, "one size of one case")
    add_output_flags(parser)
    return parser


def add_run_flags(parser: argparse.ArgumentParser, step: str) -> None:
    """--timeout (per ``step``) and --resume: how a long run ends or continues."""
    add = parser.add_argument
    add("--timeout", default=DEFAULT_TIMEOUT_S, type=_seconds, metavar="SECONDS",
        help=f"abort the job when {step} makes no progress for this long, naming the ranks "
        "that had not arrived; 0 never aborts (default %(default)g)")  # fmt: skip
    add("--resume", metavar="PARTIAL", default=None,
        help="continue the killed run logged in FILE.h5.partial: skip what it measured and "
        "finish it into FILE.h5 (same ranks, MPI library, tag and flags)")  # fmt: skip


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--timeout {text!r}: not a number of seconds") from None
    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"--timeout must be a finite number of seconds >= 0, got {text}")
    return value


def sweep_config(args: argparse.Namespace) -> SweepConfig:
    """The harness configuration from the common flags."""
    if args.iters < 1 or args.warmup < 0:
        raise UsageError("-n must be >= 1 and -w >= 0")
    low, high = parse_size(args.minbytes or DEFAULT_MINBYTES), parse_size(args.maxbytes)
    if smoke.active():
        high = min(high, smoke.MAX_BYTES)
        low = min(low, high)
    sizes = size_sweep(low, high, args.stepfactor)
    return SweepConfig(
        sizes=sizes,
        warmup=smoke.shrink(args.warmup, smoke.MAX_WARMUP),
        iters=smoke.shrink(args.iters, smoke.MAX_ITERS),
        scale_iters=not args.fixed_iters,
        barrier=args.barrier,
        check=bool(args.check),
        timer=check_timer(args.timer),
        buffers=args.buffers,
    )


def _agree(comm: MPI.Comm, error: str | None) -> None:
    """Raise the first rank's error on every rank, so that all ranks stop together."""
    errors = [e for e in comm.allgather(error) if e]
    if errors:
        raise UsageError(errors[0])


def _reason(exc: BaseException) -> str:
    """One line for any setup failure: a usage error's message, or what else went wrong."""
    if isinstance(exc, UsageError):
        return str(exc)
    detail = str(exc).split("\n")[0]
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def validate_collectively(comm: MPI.Comm, check: Callable[[], T]) -> T:
    """Run ``check`` on every rank; any failure on any rank is raised on all of them as a
    UsageError, so that no rank is left waiting for the others."""
    error, result = None, None
    try:
        result = check()
    except Exception as exc:
        error = _reason(exc)
    _agree(comm, error)
    return result  # type: ignore[return-value]


def open_log(comm: MPI.Comm, kernel: str, args: argparse.Namespace) -> LogWriter | None:
    """Rank 0 opens the log (``-o``, ``--overwrite``, ``--resume``); every rank learns whether
    it could."""
    writer, error = None, None
    if comm.rank == 0:
        try:
            if getattr(args, "resume", None):
                writer = LogWriter.resume(args.resume)
            else:
                output = Path(args.output) if args.output else stamped_path(kernel)
                writer = LogWriter(output, overwrite=args.overwrite)
        except Exception as exc:
            error = _reason(exc)
    _agree(comm, comm.bcast(error, root=0))
    return writer


@dataclass
class Sweep:
    """A validated sweeping run: flags, harness settings, backend, sizes per case, notes."""

    args: argparse.Namespace
    cfg: SweepConfig
    backend: Backend
    plans: list[tuple[Case, list[int]]]
    notes: list[str]
    resumed: Resumed | None


def _setup(
    comm: MPI.Comm, kernel: str, parser: KernelParser, make_cases: MakeCases, argv: Any
) -> tuple[Sweep, LogWriter | None]:
    def check() -> Sweep:
        load_plugins()
        args = parser.parse_args(argv)
        cfg = sweep_config(args)
        backend = get_backend(args.device)
        plans, notes = plan_sizes(
            make_cases(comm, args, backend), cfg.sizes, strict=args.minbytes is not None
        )
        if args.resume and (args.output or args.overwrite):
            raise UsageError("--resume writes next to the partial log: drop -o and --overwrite")
        return Sweep(args, cfg, backend, plans, notes, None)

    sweep = validate_collectively(comm, check)
    validate_collectively(comm, lambda: check_memory(comm, sweep.plans, sweep.cfg))
    sweep.resumed = validate_collectively(comm, lambda: load_resume(comm, kernel, sweep.args))
    return sweep, open_log(comm, kernel, sweep.args)


def _run_logged(comm: MPI.Comm, kernel: str, sweep: Sweep, writer: LogWriter | None) -> int:
    args, cfg, backend, resumed = sweep.args, sweep.cfg, sweep.backend, sweep.resumed
    cfg = resolve_timer(comm, cfg)
    meta = collect_meta(
        comm,
        kernel=kernel,
        tag=args.tag,
        device=backend.device,
        cuda_aware=backend.cuda_aware,
        barrier=cfg.barrier,
        barrier_policy=BARRIER_POLICIES[cfg.barrier],
        **run_settings(comm, cfg),
    )
    console = next((case.console for case, _ in sweep.plans if case.console), kernel)
    table = Table(console) if comm.rank == 0 else None
    if writer is not None and table is not None:
        notes = [f"barrier: {meta['barrier_policy']}", TIMES_NOTE, *sweep.notes]
        notes += [smoke.NOTE] if smoke.active() else []
        if resumed is None:
            writer.start_run(meta)
        else:
            writer.continue_run({"start_time": meta["start_time"], "argv": meta["argv"]})
            notes.append(f"resumed: {resumed.records} records already in {resumed.path}")
        table.header(meta, backend.describe(), tuple(notes))

    def emit(fields: dict[str, Any], arrays: dict[str, Any]) -> None:
        assert writer is not None and table is not None
        writer.append(fields, arrays)
        table.row(fields)

    guard = SweepGuard(comm, kernel, args.timeout)
    guard.catch_signals()
    try:
        wrong = run_sweep(
            comm, sweep.plans, cfg, emit, progress=not args.quiet, guard=guard,
            done=resumed.done if resumed else frozenset(),
        )  # fmt: skip
    except Interrupted:
        guard.close()  # every rank stopped at the same record: closing is collective
        raise
    guard.close()
    wrong += resumed.wrong if resumed else 0
    if writer is not None and table is not None:
        table.footer(writer.close(), wrong, checked=cfg.check)
    return wrong


def guarded(comm: MPI.Comm, kernel: str, setup: Callable[[], T], body: Callable[[T], int]) -> int:
    """Exit 2 with one line when ``setup`` finds bad input; stop with one line and 128 + the
    signal's number when asked to; abort the job if ``body`` fails."""
    try:
        state = setup()
    except UsageError as exc:
        if comm.rank == 0:
            print(f"{kernel}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        return body(state)
    except Interrupted as stop:
        if comm.rank == 0:
            print(f"{kernel}: stopped by {stop}; the records so far are in the .partial log",
                  file=sys.stderr, flush=True)  # fmt: skip
        return stop.status
    except BaseException as exc:
        print(f"{kernel}: error on rank {comm.rank}: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_S)
        comm.Abort(1)
        raise


def run_sweep_kernel(
    kernel: str,
    parser: KernelParser,
    make_cases: MakeCases,
    argv: Sequence[str] | None = None,
) -> int:
    """Validate, measure, log; returns the exit status (2 bad input, 1 wrong results)."""
    comm = MPI.COMM_WORLD

    def body(state: tuple[Sweep, LogWriter | None]) -> int:
        return 1 if _run_logged(comm, kernel, *state) else 0

    return guarded(comm, kernel, lambda: _setup(comm, kernel, parser, make_cases, argv), body)
