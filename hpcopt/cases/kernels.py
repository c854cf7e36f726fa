"""Flag sets and case lists of the allreduce and p2p kernels."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mpi4py import MPI

from hpcopt.backend import Backend
from hpcopt.cases.allreduce import DTYPES, AllreduceCase
from hpcopt.cases.p2p import PingPongCase, StreamCase
from hpcopt.collectives import parse_algorithms
from hpcopt.collectives._p2p import op_by_name
from hpcopt.errors import UsageError
from hpcopt.harness import Case
from hpcopt.spmd import KernelParser, common_parser

__all__ = ["allreduce_cases", "allreduce_parser", "p2p_cases", "p2p_parser"]


def allreduce_parser(description: str | None) -> KernelParser:
    """Common flags plus --algo, --dtype, --op."""
    parser = common_parser("allreduce", description)
    parser.add_argument("--algo", default="all", help="comma list of algorithms, or all")
    parser.add_argument("--dtype", default="float32", help=f"one of {', '.join(DTYPES)}")
    parser.add_argument("--op", default="sum", help="sum, max or min (default sum)")
    return parser


def allreduce_cases(comm: MPI.Comm, args: argparse.Namespace, backend: Backend) -> list[Case]:
    """One case per requested algorithm."""
    if args.dtype not in DTYPES:
        raise UsageError(f"unknown dtype {args.dtype!r}; choose from {', '.join(DTYPES)}")
    if args.op not in ("sum", "max", "min"):
        raise UsageError(f"unknown op {args.op!r}; choose sum, max or min")
    op = op_by_name(args.op)
    return [AllreduceCase(comm, a, args.dtype, backend, op) for a in parse_algorithms(args.algo)]


def p2p_parser(description: str | None) -> KernelParser:
    """Common flags plus --pattern."""
    parser = common_parser("p2p", description)
    # A ping-pong is timed back to back (as OSU does): after a barrier the two ranks
    # leave one link latency apart, which would skew a per-iteration barrier's samples.
    parser.set_defaults(barrier="none")
    parser.add_argument(
        "--pattern", default="pingpong,stream", help="pingpong, stream or both (default both)"
    )
    return parser


def p2p_cases(comm: MPI.Comm, args: argparse.Namespace, backend: Backend) -> Sequence[Case]:
    """Ping-pong and/or streaming cases; exactly two ranks."""
    if comm.size != 2:
        raise UsageError(f"p2p needs exactly 2 ranks, got {comm.size} (mpiexec -n 2)")
    known = {"pingpong": PingPongCase, "stream": StreamCase}
    names = [n.strip() for n in args.pattern.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UsageError(f"unknown pattern {','.join(unknown) or '(none)'}; use pingpong,stream")
    return [known[n](comm, backend) for n in names]
