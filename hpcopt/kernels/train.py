"""The train kernel: flags, collective validation, one training run, its record.

Exit status: 0 (ε reached, or not: the summary says why), 2 (bad input), 3 (the run
diverged). The record goes to the log as the run goes, every few seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt import smoke
from hpcopt.aggregation import plan
from hpcopt.aggregation.adaptive import adaptive_of
from hpcopt.aggregation.hierarchical import LINK_CLASSES
from hpcopt.bench.console import Table
from hpcopt.bench.guard import Interrupted, SweepGuard
from hpcopt.bench.program import (
    KernelParser,
    add_output_flags,
    add_run_flags,
    guarded,
    open_log,
    validate_collectively,
)
from hpcopt.bench.resources import check_node_memory
from hpcopt.errors import UsageError
from hpcopt.log import LogWriter
from hpcopt.meta import collect_meta
from hpcopt.optim import Config, Optimizer, available, check
from hpcopt.optim.run import average_model, print_progress, train
from hpcopt.optim.schedule import SCHEDULES
from hpcopt.problems import Problem, get_problem
from hpcopt.registry import Selection, load_plugins
from hpcopt.resilience import Survivor, exit_without_finalize, ulfm_problem
from hpcopt.specs import parse_size

__all__ = ["main", "parser"]

KERNEL = "train"
DESCRIPTION = (
    "Distributed training to a target accuracy: bits-to-eps and time-to-eps of one "
    "communication-efficient algorithm on one problem."
)
EXIT_DIVERGED = 3


def parser() -> KernelParser:
    """Every flag of the train kernel."""
    ps = KernelParser(prog="kernels/train.py", description=DESCRIPTION)
    add = ps.add_argument
    add("--problem", default="logreg:d=1000", help="problem spec (default logreg:d=1000)")
    names = ", ".join(available())
    add("--algo", default="sync", help=f"algorithm spec NAME[:key=value,...] with NAME one of "
        f"{names} (default sync), e.g. local:steps=4,participation=0.5")  # fmt: skip
    add("--encoder", default="none", help="payload encoder spec, e.g. topk:ratio=0.01")
    add("--ef", action="store_true", help="error feedback (sync, local, easgd)")
    add("--lr", type=float, default=None, help="step size (default: the problem's 1/L)")
    add("--batch", type=int, default=0, help="minibatch per rank; 0 = full local gradient")
    add("--method", default="auto", metavar="SPEC", help="compressed allreduce path: auto, "
        "allgather, two-phase, ..., hierarchical[:ppn=N,intra=fp16,leaders=PATH] or "
        "secure[:threshold=T,dropouts=K,...] (default auto)")  # fmt: skip
    add("--allreduce", default="native", help="core allreduce algorithm (default native)")
    add(
        "--schedule",
        default="constant",
        help="step-size schedule spec: "
        f"{', '.join(SCHEDULES.names())}, e.g. step:factor=0.5,every=200 (default constant)",
    )
    add("--warmup-iters", type=int, default=0, help="linear warm-up iterations (default 0)")
    add(
        "--straggler",
        default="",
        metavar="RANK:FACTOR",
        help="emulate a straggler: RANK's computing takes FACTOR times as long (sleeps)",
    )
    add(
        "--bucket",
        default="0",
        help="gradient bucket size for overlapped allreduces on "
        "layered problems (mlp), e.g. 1M; 0 = no bucketing (DDP's default is 25M)",
    )
    add("--eps", type=float, default=1e-3, help="target f(x̄) − f* (loss for mlp)")
    add("--max-iters", type=int, default=1000, help="iteration budget (default 1000)")
    add("--eval-every", type=int, default=1, help="measure every N iterations (default 1)")
    add("--seed", type=int, default=0, help="data and algorithm seed (default 0)")
    add("--tolerate-failures", action="store_true", help="survive lost ranks (ULFM: Open MPI 5 "
        "under mpirun --with-ft ulfm); the survivors take over the lost ranks' data")  # fmt: skip
    add_run_flags(ps, "training between two measurements")
    add_output_flags(ps)
    return ps  # fmt: skip


def _straggler(text: str, ranks: int) -> tuple[int, float]:
    """(rank, factor) from ``RANK:FACTOR``; (-1, 1) when empty."""
    if not text:
        return -1, 1.0
    rank, colon, factor = text.partition(":")
    try:
        parsed = int(rank), float(factor)
    except ValueError:
        parsed = (-1, math.nan)
    if not colon or not 0 <= parsed[0] < ranks or not 1.0 <= parsed[1] < math.inf:
        raise UsageError(f"--straggler {text!r}: want RANK:FACTOR with 0 <= RANK < {ranks} "
                         "and a finite FACTOR >= 1")  # fmt: skip
    return parsed


def config(args: argparse.Namespace, lr: float, ranks: int = 1) -> Config:
    """The settings all algorithms share, from the flags."""
    slow_rank, slowdown = _straggler(args.straggler, ranks)
    return Config(
        lr=lr, batch=args.batch, encoder=args.encoder, ef=args.ef, method=args.method,
        allreduce=args.allreduce, seed=args.seed, schedule=args.schedule,
        warmup=args.warmup_iters, horizon=args.max_iters, slow_rank=slow_rank,
        slowdown=slowdown, bucket=parse_size(args.bucket),
    )  # fmt: skip


def _setup(comm: MPI.Comm, argv: Sequence[str] | None) -> tuple[Any, ...]:
    def validate() -> tuple[argparse.Namespace, Problem, Config, Selection[Optimizer]]:
        load_plugins()
        args = parser().parse_args(argv)
        if args.resume:
            raise UsageError("a training run cannot be resumed (the optimizer's state is not "
                             "in the log): run it again")  # fmt: skip
        if args.device != "cpu":
            raise UsageError(f"train runs on the CPU only; --device {args.device} is unsupported")
        args.max_iters = smoke.shrink(args.max_iters, smoke.MAX_TRAIN_ITERS)
        if not args.eps > 0 or args.max_iters < 1 or args.eval_every < 1:
            raise UsageError("--eps must be > 0, --max-iters and --eval-every >= 1")
        if args.lr is not None and not 0 < args.lr < math.inf:
            raise UsageError("--lr must be a finite number > 0")
        cfg = config(args, args.lr if args.lr is not None else 1.0, comm.size)  # 1/L: later
        selection = check(args.algo, cfg, comm.size)
        chosen = plan(cfg.encoder, ef=cfg.ef, method=cfg.method, algorithm=cfg.allreduce,
                      ranks=comm.size)  # fmt: skip
        if args.tolerate_failures:
            _check_tolerance(selection, chosen.path)
        cls: Any = selection.entry.factory
        shards = cls.data_ranks(comm.size, **selection.kwargs())
        shard = comm.rank - (comm.size - shards)  # serving ranks come first and hold none
        problem = get_problem(args.problem, rank=max(shard, 0), size=shards, seed=args.seed)
        cls.check_problem(problem, cfg, **selection.kwargs())
        return args, problem, cfg, selection

    args, problem, cfg, selection = validate_collectively(comm, validate)
    need = problem.footprint(reference=comm.rank == 0)
    hint = "use a smaller problem (d=, n=)"
    validate_collectively(comm, lambda: check_node_memory(comm, need, "the problem", hint))
    writer = open_log(comm, KERNEL, args)
    if args.tolerate_failures:  # whoever is rank 0 at the end writes the log
        args.output = comm.bcast(str(writer.path) if writer is not None else None, root=0)
    return args, problem, cfg, selection, writer


def _check_tolerance(selection: Selection[Optimizer], path: str) -> None:
    """UsageError unless this MPI has working ULFM and the run can continue on survivors."""
    problem = ulfm_problem()
    if problem is not None:
        raise UsageError(problem)
    cls: Any = selection.entry.factory
    if not cls.replicated:
        raise UsageError(f"--tolerate-failures needs an algorithm whose ranks hold the same "
                         f"model (sync), not {selection.name}")  # fmt: skip
    if path == "secure":
        raise UsageError("--tolerate-failures does not apply to --method secure (its drop-outs "
                         "are simulated)")  # fmt: skip


def _options(selection: Selection[Optimizer]) -> dict[str, Any]:
    """The algorithm's own options with their defaults filled in."""
    return {o.key: selection.options.get(o.key, o.default) for o in selection.entry.options}


class Checkpoints:
    """Rank 0's record in the log, appended at the first checkpoint and updated after."""

    def __init__(self, writer: Any, static: dict[str, Any]) -> None:
        self.writer, self.static, self.started = writer, static, False

    def __call__(self, fields: dict[str, Any], arrays: dict[str, Any]) -> None:
        record = {**self.static, **fields}
        if self.started:
            self.writer.update(record, arrays)
        else:
            self.writer.append(record, arrays, growing=True)
            self.started = True


def _body(comm: MPI.Comm, state: tuple[Any, ...]) -> int:
    args, problem, cfg, selection, writer = state
    ref = problem.reference(comm)
    if args.lr is None:
        cfg = dataclasses.replace(cfg, lr=problem.default_lr())
    opt: Any = selection.build(comm=comm, problem=problem, cfg=cfg)
    static = {
        "kernel": KERNEL, "algo": selection.name, "encoder": opt.plan.encoder_label,
        "problem": problem.spec, "ranks": comm.size, "eps": args.eps, "dim": problem.dim,
        "dtype": "float32", "size_bytes": 4 * problem.dim, "lr": cfg.lr, "batch": cfg.batch,
        "seed": cfg.seed, "method": cfg.method, "allreduce": cfg.allreduce,
        "schedule": cfg.schedule, "warmup_iters": cfg.warmup, "straggler": args.straggler,
        "bucket": cfg.bucket, **_options(selection), "f_star": ref.f_star,
    }  # fmt: skip
    if args.tolerate_failures:
        return _survive(comm, args, problem, opt, static, writer, ref.f_star)
    meta = collect_meta(comm, kernel=KERNEL, tag=args.tag, device="cpu", cuda_aware=False)
    saver = None
    if writer is not None:
        writer.start_run(meta)
        saver = Checkpoints(writer, static)
    fields, arrays = _watched_training(comm, args, opt, ref.f_star, saver)
    record, arrays = _record(opt, problem, static, fields, arrays)
    if saver is not None:
        saver(record, arrays)
        _print_summary(meta, record, writer.close())
    if record["outcome"] != "diverged":
        return 0
    if comm.rank == 0:
        print(f"{KERNEL}: {record['outcome_note']}", file=sys.stderr, flush=True)
    return EXIT_DIVERGED


def _watched_training(
    comm: MPI.Comm, args: argparse.Namespace, opt: Any, f_star: float | None, saver: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train under the watchdog; a signal stops a synchronous run at a measurement."""
    show = comm.rank == 0 and not args.quiet
    guard = SweepGuard(comm, KERNEL, args.timeout)
    if not opt.drives_itself:  # a synchronous run stops at a measurement, on every rank
        guard.catch_signals()
    try:
        result = train(
            opt, eps=args.eps, max_iters=args.max_iters, f_star=f_star,
            eval_every=args.eval_every, progress=print_progress if show else None,
            checkpoint=saver, guard=guard,
        )  # fmt: skip
    except Interrupted:
        guard.close()
        raise
    guard.close()
    return result


def _record(
    opt: Any, problem: Problem, static: dict[str, Any], fields: dict[str, Any],
    arrays: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """The run's final record and arrays (collective: link bytes are summed over ranks)."""
    extra, extra_arrays = opt.summary()
    record = {**static, **fields, **extra, **_links(opt)}
    arrays = {**arrays, **extra_arrays, **_adaptive(opt, record)}
    if hasattr(problem, "accuracy"):  # classifiers: held-out accuracy at x̄
        record["final_accuracy"] = float(problem.accuracy(average_model(opt)))
    return record, arrays


def _survive(
    comm: MPI.Comm, args: argparse.Namespace, problem: Problem, opt: Any,
    static: dict[str, Any], writer: LogWriter | None, f_star: float | None,
) -> int:  # fmt: skip
    """Train on survivors after lost ranks (ULFM); whoever is rank 0 at the end logs."""
    survivor: Any = Survivor(opt, lambda i: get_problem(args.problem, rank=i, size=comm.size,
                                                   seed=args.seed))  # fmt: skip
    show = comm.rank == 0 and not args.quiet
    fields, arrays = train(
        survivor, eps=args.eps, max_iters=args.max_iters, f_star=f_star,
        eval_every=args.eval_every, progress=print_progress if show else None,
    )  # fmt: skip
    meta = collect_meta(survivor.comm, kernel=KERNEL, tag=args.tag, device="cpu",
                        cuda_aware=False, ranks_start=comm.size)  # fmt: skip
    record, arrays = _record(survivor, problem, static, {**fields, **_failures(survivor)}, arrays)
    if survivor.comm.rank == 0:
        if writer is None:
            writer = LogWriter(args.output, overwrite=True)  # rank 0 was lost: take over
        writer.start_run(meta)
        writer.append(record, arrays)
        _print_summary(meta, record, writer.close())
    if survivor.events:
        exit_without_finalize(survivor.comm, 0)
    return EXIT_DIVERGED if record["outcome"] == "diverged" else 0


def _links(opt: Any) -> dict[str, float]:
    """Bits per rank on each link class (mean over ranks), where the path splits them."""
    classes = LINK_CLASSES
    mine = np.array([8.0 * opt.ledger.links.get(k, 0) for k in classes])
    opt.comm.Allreduce(MPI.IN_PLACE, mine)
    known = opt.comm.allreduce(bool(opt.ledger.links), op=MPI.LOR)
    return (
        {f"{k}_bits": v / opt.comm.size for k, v in zip(classes, mine, strict=True)}
        if known
        else {}
    )


def _adaptive(opt: Any, fields: dict[str, Any]) -> dict[str, np.ndarray]:
    """Rank 0's adaptive choices per aggregation: iteration, knob value, signal."""
    adaptive = adaptive_of(opt.codec)
    if adaptive is None:
        return {}
    fields["adapt_choices"] = adaptive.summary()
    fields["adapt_rule"] = adaptive.rule
    steps, levels, signals = (
        zip(*adaptive.history, strict=True) if adaptive.history else ((), (), ())
    )
    return {
        "adapt_iter": np.array(steps, dtype=np.int64),
        "adapt_value": np.array([adaptive.values[k] for k in levels], dtype=np.float64),
        "adapt_signal": np.array(signals, dtype=np.float64),
    }


def _failures(opt: Survivor) -> dict[str, Any]:
    """What the run survived: ranks at the end, the lost ranks and when they were noticed."""
    events = opt.events
    return {
        "ranks_final": opt.comm.size,
        "lost_ranks": ",".join(str(r) for e in events for r in e["lost"]),
        "lost_at_iters": ",".join(str(e["iter"]) for e in events),
        "recovery_s": sum(e["recovery_s"] for e in events),
    }


def _print_summary(meta: dict[str, Any], record: dict[str, Any], path: Path) -> None:
    """Rank 0's table: the run, one row, the phase split, the bounds, why ε was missed."""
    table = Table(KERNEL)
    phases = " / ".join(
        f"{record[k]:.4g}" for k in ("t_compute_s", "t_encode_s", "t_comm_s", "t_decode_s")
    )
    notes = (
        f"problem: {record['problem']}; eps {record['eps']:g}",
        "bits per rank; bound bits: d(log2 d + log2 1/eps) (Tsitsiklis-Luo, constants 1)",
        *([smoke.NOTE] if smoke.active() else []),
    )
    table.header(meta, "cpu (numpy)", notes)
    table.row(record)
    print(f"# compute/encode/comm/decode: {phases} s; final subopt {record['final_subopt']:.4g}")
    total = record["bits"] * record["ranks"]
    print(f"# bits over all ranks {total:.4g}; bound (n-1)*d*log2(1/eps) = "
          f"{record['survey_bound_bits']:.4g} (n = {record['ranks']}, constant 1)")  # fmt: skip
    if not record["reached"]:
        print(f"# eps not reached: {record['outcome_note']}")
    print(f"# log: {path}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Validate on every rank, train, log one record; exit 2 on bad input."""
    comm = MPI.COMM_WORLD
    return guarded(comm, KERNEL, lambda: _setup(comm, argv), lambda s: _body(comm, s))
