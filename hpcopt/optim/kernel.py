"""The ``train`` kernel: flags, collective validation, one training run, its record."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from mpi4py import MPI

from hpcopt.errors import UsageError
from hpcopt.meta import collect_meta
from hpcopt.optim import GOSSIP, Config, get_optimizer, validate
from hpcopt.optim.run import average_model, print_progress, train
from hpcopt.problems import Problem, get_problem
from hpcopt.spmd import KernelParser, add_output_flags, guarded, open_log, validate_collectively

__all__ = ["main", "parser"]

KERNEL = "train"


def parser(description: str | None = None) -> KernelParser:
    """Every flag of the train kernel."""
    ps = KernelParser(prog="kernels/train.py", description=description)
    add = ps.add_argument
    add("--problem", default="logreg:d=1000", help="problem spec (default logreg:d=1000)")
    add("--algo", default="sync", help="sync, local, dsgd, choco or easgd (default sync)")
    add("--encoder", default="none", help="payload encoder spec, e.g. topk:ratio=0.01")
    add("--ef", action="store_true", help="error feedback (sync, local, easgd)")
    add("--topology", default=None, help="ring, torus, hypercube, exponential, complete")
    add("--exchange", default="p2p", help="gossip by p2p (Isend/Irecv) or neighbor collectives")
    add("--lr", type=float, default=None, help="step size (default: the problem's 1/L)")
    add("--batch", type=int, default=0, help="minibatch per rank; 0 = full local gradient")
    add("--local-steps", type=int, default=1, help="local steps H per round (local)")
    add("--participation", type=float, default=1.0, help="fraction of ranks per round (local)")
    add("--stragglers", type=float, default=0.0, help="fraction of participants that lag")
    add("--straggler-delay", type=float, default=0.0, help="seconds a straggler sleeps")
    add("--gamma", type=float, default=0.5, help="CHOCO consensus step size (default 0.5)")
    add("--alpha", type=float, default=0.1, help="EASGD elastic coefficient (default 0.1)")
    add("--tau", type=int, default=4, help="EASGD communication period (default 4)")
    add("--method", default="auto", help="compressed allreduce path (auto, allgather, ...)")
    add("--allreduce", default="native", help="core allreduce algorithm (default native)")
    add("--eps", type=float, default=1e-3, help="target f(x̄) − f* (loss for mlp)")
    add("--max-iters", type=int, default=1000, help="iteration budget (default 1000)")
    add("--eval-every", type=int, default=1, help="measure every N iterations (default 1)")
    add("--seed", type=int, default=0, help="data and algorithm seed (default 0)")
    add_output_flags(ps)
    return ps


def config(args: argparse.Namespace, lr: float) -> Config:
    """The optimizer configuration from the flags."""
    return Config(
        lr=lr, batch=args.batch, encoder=args.encoder, ef=args.ef, topology=args.topology,
        exchange=args.exchange, local_steps=args.local_steps, participation=args.participation,
        stragglers=args.stragglers, straggler_delay=args.straggler_delay, gamma=args.gamma,
        alpha=args.alpha, tau=args.tau, method=args.method, allreduce=args.allreduce,
        seed=args.seed,
    )  # fmt: skip


def _setup(comm: MPI.Comm, argv: Sequence[str] | None) -> tuple[Any, ...]:
    def check() -> tuple[argparse.Namespace, Problem, Config]:
        args = parser(__doc__).parse_args(argv)
        if args.device != "cpu":
            raise UsageError(f"train runs on the CPU only; --device {args.device} is unsupported")
        if not args.eps > 0 or args.max_iters < 1 or args.eval_every < 1:
            raise UsageError("--eps must be > 0, --max-iters and --eval-every >= 1")
        problem = get_problem(args.problem, rank=comm.rank, size=comm.size, seed=args.seed)
        cfg = config(args, args.lr if args.lr is not None else 1.0)  # 1/L once the data exist
        validate(args.algo, cfg, comm.size)
        return args, problem, cfg

    args, problem, cfg = validate_collectively(comm, check)
    return args, problem, cfg, open_log(comm, KERNEL, args)


def _label(args: argparse.Namespace) -> str:
    return args.encoder + ("+ef" if args.ef else "")


def _body(comm: MPI.Comm, state: tuple[Any, ...]) -> int:
    args, problem, cfg, writer = state
    ref = problem.reference(comm)
    if args.lr is None:
        cfg = dataclasses.replace(cfg, lr=problem.default_lr())
    opt = get_optimizer(args.algo, comm, problem, cfg)
    meta = collect_meta(comm, kernel=KERNEL, tag=args.tag, device="cpu", cuda_aware=False)
    show = comm.rank == 0 and not args.quiet
    fields, arrays = train(
        opt, eps=args.eps, max_iters=args.max_iters, f_star=ref.f_star,
        eval_every=args.eval_every, progress=print_progress if show else None,
    )  # fmt: skip
    record = {
        "kernel": KERNEL, "algo": args.algo, "encoder": _label(args), "problem": problem.spec,
        "ranks": comm.size, "eps": args.eps, "dim": problem.dim, "dtype": "float32",
        "size_bytes": 4 * problem.dim, "lr": cfg.lr, "batch": cfg.batch, "seed": cfg.seed,
        "topology": cfg.topology if args.algo in GOSSIP else None, "exchange": cfg.exchange,
        "local_steps": cfg.local_steps, "method": cfg.method, "allreduce": cfg.allreduce,
        "f_star": ref.f_star, **fields,
    }  # fmt: skip
    if hasattr(problem, "accuracy"):  # classifiers: held-out accuracy at x̄
        record["final_accuracy"] = float(problem.accuracy(average_model(opt)))
    if writer is not None:
        writer.start_run(meta)
        writer.append(record, arrays)
        path = writer.close()
        _print_summary(record, str(path))
    return 0


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_summary(r: dict[str, Any], path: str) -> None:
    """Rank 0's short table."""
    rows = [
        ("run", f"{r['algo']} {r['encoder']} on {r['problem']}, {r['ranks']} ranks"),
        ("reached eps", f"{r['reached']} (eps {_fmt(r['eps'])}, final {_fmt(r['final_subopt'])})"),
        ("iters to eps", _fmt(r["iters_to_eps"])),
        ("bits to eps / rank", _fmt(r["bits_to_eps"])),
        ("fp32 same messages", _fmt(r["fp32_bits"])),
        ("lower bound d(log2 d+log2 1/eps)", _fmt(r["lower_bound_bits"])),
        ("time to eps [s]", _fmt(r["time_to_eps_s"])),
        ("compute/encode/comm/decode [s]",
         " / ".join(_fmt(r[k]) for k in ("t_compute_s", "t_encode_s", "t_comm_s", "t_decode_s"))),
        ("log", path),
    ]  # fmt: skip
    print(f"# hpcopt {KERNEL}")
    for key, value in rows:
        print(f"{key:<34} {value}")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Validate on every rank, train, log one record; exit 2 on bad input."""
    comm = MPI.COMM_WORLD
    return guarded(comm, KERNEL, lambda: _setup(comm, argv), lambda s: _body(comm, s))
