"""The train kernel: flags, collective validation, one training run, its record."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation import plan
from hpcopt.aggregation.adaptive import adaptive_of
from hpcopt.aggregation.hierarchical import LINK_CLASSES
from hpcopt.bench.console import Table
from hpcopt.bench.program import (
    KernelParser,
    add_output_flags,
    guarded,
    open_log,
    validate_collectively,
)
from hpcopt.errors import UsageError
from hpcopt.log import LogWriter
from hpcopt.meta import collect_meta
from hpcopt.optim import Config, Optimizer, available, check
from hpcopt.optim.run import average_model, print_progress, train
from hpcopt.problems import Problem, get_problem
from hpcopt.registry import Selection, load_plugins
from hpcopt.resilience import Survivor, exit_without_finalize, ulfm_problem

__all__ = ["main", "parser"]

KERNEL = "train"
DESCRIPTION = (
    "Distributed training to a target accuracy: bits-to-eps and time-to-eps of one "
    "communication-efficient algorithm on one problem."
)


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
    add("--eps", type=float, default=1e-3, help="target f(x̄) − f* (loss for mlp)")
    add("--max-iters", type=int, default=1000, help="iteration budget (default 1000)")
    add("--eval-every", type=int, default=1, help="measure every N iterations (default 1)")
    add("--seed", type=int, default=0, help="data and algorithm seed (default 0)")
    add("--tolerate-failures", action="store_true", help="survive lost ranks (ULFM: Open MPI 5 "
        "under mpirun --with-ft ulfm); the survivors take over the lost ranks' data")  # fmt: skip
    add_output_flags(ps)
    return ps


def config(args: argparse.Namespace, lr: float) -> Config:
    """The settings all algorithms share, from the flags."""
    return Config(
        lr=lr, batch=args.batch, encoder=args.encoder, ef=args.ef, method=args.method,
        allreduce=args.allreduce, seed=args.seed,
    )  # fmt: skip


def _setup(comm: MPI.Comm, argv: Sequence[str] | None) -> tuple[Any, ...]:
    def validate() -> tuple[argparse.Namespace, Problem, Config, Selection[Optimizer]]:
        load_plugins()
        args = parser().parse_args(argv)
        if args.device != "cpu":
            raise UsageError(f"train runs on the CPU only; --device {args.device} is unsupported")
        if not args.eps > 0 or args.max_iters < 1 or args.eval_every < 1:
            raise UsageError("--eps must be > 0, --max-iters and --eval-every >= 1")
        problem = get_problem(args.problem, rank=comm.rank, size=comm.size, seed=args.seed)
        cfg = config(args, args.lr if args.lr is not None else 1.0)  # 1/L once the data exist
        selection = check(args.algo, cfg, comm.size)
        chosen = plan(cfg.encoder, ef=cfg.ef, method=cfg.method, algorithm=cfg.allreduce,
                      ranks=comm.size)  # fmt: skip
        if args.tolerate_failures:
            _check_tolerance(selection, chosen.path)
        return args, problem, cfg, selection

    args, problem, cfg, selection = validate_collectively(comm, validate)
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


def _body(comm: MPI.Comm, state: tuple[Any, ...]) -> int:
    args, problem, cfg, selection, writer = state
    ref = problem.reference(comm)
    if args.lr is None:
        cfg = dataclasses.replace(cfg, lr=problem.default_lr())
    opt: Any = selection.build(comm=comm, problem=problem, cfg=cfg)
    if args.tolerate_failures:
        opt = Survivor(opt, lambda i: get_problem(args.problem, rank=i, size=comm.size,
                                                  seed=args.seed))  # fmt: skip
    else:
        meta = collect_meta(comm, kernel=KERNEL, tag=args.tag, device="cpu", cuda_aware=False)
    show = comm.rank == 0 and not args.quiet
    fields, arrays = train(
        opt, eps=args.eps, max_iters=args.max_iters, f_star=ref.f_star,
        eval_every=args.eval_every, progress=print_progress if show else None,
    )  # fmt: skip
    if args.tolerate_failures:
        meta = collect_meta(opt.comm, kernel=KERNEL, tag=args.tag, device="cpu",
                            cuda_aware=False, ranks_start=comm.size)  # fmt: skip
        fields.update(_failures(opt))
        if opt.comm.rank == 0 and writer is None:
            writer = LogWriter(args.output, overwrite=True)  # rank 0 was lost: take over
    fields.update(_links(opt))
    arrays.update(_adaptive(opt, fields))
    record = {
        "kernel": KERNEL, "algo": selection.name, "encoder": opt.plan.encoder_label,
        "problem": problem.spec, "ranks": comm.size, "eps": args.eps, "dim": problem.dim,
        "dtype": "float32", "size_bytes": 4 * problem.dim, "lr": cfg.lr, "batch": cfg.batch,
        "seed": cfg.seed, "method": cfg.method, "allreduce": cfg.allreduce, **_options(selection),
        "f_star": ref.f_star, **fields,
    }  # fmt: skip
    if hasattr(problem, "accuracy"):  # classifiers: held-out accuracy at x̄
        record["final_accuracy"] = float(problem.accuracy(average_model(opt)))
    if writer is not None and opt.comm.rank == 0:
        writer.start_run(meta)
        writer.append(record, arrays)
        _print_summary(meta, record, writer.close())
    if args.tolerate_failures and opt.events:
        exit_without_finalize(opt.comm, 0)
    return 0


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
    """Rank 0's table: the run, one row, the phase split."""
    table = Table(KERNEL)
    phases = " / ".join(
        f"{record[k]:.4g}" for k in ("t_compute_s", "t_encode_s", "t_comm_s", "t_decode_s")
    )
    notes = (
        f"problem: {record['problem']}; eps {record['eps']:g}",
        "bits per rank; bound bits: d(log2 d + log2 1/eps)",
    )
    table.header(meta, "cpu (numpy)", notes)
    table.row(record)
    print(f"# compute/encode/comm/decode: {phases} s; final subopt {record['final_subopt']:.4g}")
    print(f"# log: {path}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Validate on every rank, train, log one record; exit 2 on bad input."""
    comm = MPI.COMM_WORLD
    return guarded(comm, KERNEL, lambda: _setup(comm, argv), lambda s: _body(comm, s))
