"""The train kernel: flags, collective validation, one training run, its record."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mpi4py import MPI

from hpcopt.bench.console import Table
from hpcopt.bench.program import (
    KernelParser,
    add_output_flags,
    guarded,
    open_log,
    validate_collectively,
)
from hpcopt.bench.resources import check_node_memory
from hpcopt.errors import UsageError
from hpcopt.meta import collect_meta
from hpcopt.optim import Config, Optimizer, available, check
from hpcopt.optim.run import average_model, print_progress, train
from hpcopt.problems import Problem, get_problem
from hpcopt.registry import Selection, load_plugins

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
    add("--method", default="auto", help="compressed allreduce path (auto, allgather, ...)")
    add("--allreduce", default="native", help="core allreduce algorithm (default native)")
    add("--eps", type=float, default=1e-3, help="target f(x̄) − f* (loss for mlp)")
    add("--max-iters", type=int, default=1000, help="iteration budget (default 1000)")
    add("--eval-every", type=int, default=1, help="measure every N iterations (default 1)")
    add("--seed", type=int, default=0, help="data and algorithm seed (default 0)")
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
        return args, problem, cfg, check(args.algo, cfg, comm.size)

    args, problem, cfg, selection = validate_collectively(comm, validate)
    need = problem.footprint(reference=comm.rank == 0)
    hint = "use a smaller problem (d=, n=)"
    validate_collectively(comm, lambda: check_node_memory(comm, need, "the problem", hint))
    return args, problem, cfg, selection, open_log(comm, KERNEL, args)


def _options(selection: Selection[Optimizer]) -> dict[str, Any]:
    """The algorithm's own options with their defaults filled in."""
    return {o.key: selection.options.get(o.key, o.default) for o in selection.entry.options}


def _body(comm: MPI.Comm, state: tuple[Any, ...]) -> int:
    args, problem, cfg, selection, writer = state
    ref = problem.reference(comm)
    if args.lr is None:
        cfg = dataclasses.replace(cfg, lr=problem.default_lr())
    opt = selection.build(comm=comm, problem=problem, cfg=cfg)
    meta = collect_meta(comm, kernel=KERNEL, tag=args.tag, device="cpu", cuda_aware=False)
    show = comm.rank == 0 and not args.quiet
    fields, arrays = train(
        opt, eps=args.eps, max_iters=args.max_iters, f_star=ref.f_star,
        eval_every=args.eval_every, progress=print_progress if show else None,
    )  # fmt: skip
    record = {
        "kernel": KERNEL, "algo": selection.name, "encoder": opt.plan.encoder_label,
        "problem": problem.spec, "ranks": comm.size, "eps": args.eps, "dim": problem.dim,
        "dtype": "float32", "size_bytes": 4 * problem.dim, "lr": cfg.lr, "batch": cfg.batch,
        "seed": cfg.seed, "method": cfg.method, "allreduce": cfg.allreduce, **_options(selection),
        "f_star": ref.f_star, **fields,
    }  # fmt: skip
    if hasattr(problem, "accuracy"):  # classifiers: held-out accuracy at x̄
        record["final_accuracy"] = float(problem.accuracy(average_model(opt)))
    if writer is not None:
        writer.start_run(meta)
        writer.append(record, arrays)
        _print_summary(meta, record, writer.close())
    return 0


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
