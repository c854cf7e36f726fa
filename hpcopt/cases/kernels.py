"""Flag sets and case lists of the allreduce and p2p kernels."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.backend import Backend
from hpcopt.cases.allreduce import DTYPES, AllreduceCase
from hpcopt.cases.compressed import CompressCase, CompressedAllreduceCase, make_encoder
from hpcopt.cases.p2p import PingPongCase, StreamCase
from hpcopt.collectives import BoundAlgorithm, parse_algorithms
from hpcopt.collectives._p2p import op_by_name
from hpcopt.compressed import METHODS, resolve_method
from hpcopt.encoders import available
from hpcopt.errors import UsageError
from hpcopt.harness import Case
from hpcopt.spmd import KernelParser, common_parser, sweep_config

__all__ = [
    "allreduce_cases",
    "allreduce_parser",
    "compress_cases",
    "compress_parser",
    "p2p_cases",
    "p2p_parser",
]


def _add_encoder_flags(parser: KernelParser, default_help: str) -> None:
    parser.add_argument(
        "--encoder", action="append", default=None, metavar="SPEC",
        help=f"payload encoder NAME[:key=value,...], repeatable; {default_help}",
    )  # fmt: skip
    parser.add_argument("--ef", action="store_true", help="wrap encoders in error feedback")


def allreduce_parser(description: str | None) -> KernelParser:
    """Common flags plus --algo, --dtype, --op and the compression flags."""
    parser = common_parser("allreduce", description)
    parser.add_argument("--algo", default="all", help="comma list of algorithms, or all")
    parser.add_argument("--dtype", default="float32", help=f"one of {', '.join(DTYPES)}")
    parser.add_argument("--op", default="sum", help="sum, max or min (default sum)")
    _add_encoder_flags(parser, "default: none (uncompressed)")
    parser.add_argument(
        "--method", default="auto", choices=METHODS,
        help="how compressed payloads are combined (default auto: summable encoders through "
        "--algo, others by allgather, powersgd by its two allreduces)",
    )  # fmt: skip
    return parser


def _method_for(encoder: Any, method: str) -> str:
    """The compressed path for ``encoder``; PowerSGD's two sums take no --ef wrapper here."""
    inner = getattr(encoder, "encoder", encoder)
    if getattr(inner, "two_stage", False) and inner is not encoder:
        raise UsageError("powersgd has no --ef wrapper here: its payload is two allreduces")
    return resolve_method(encoder, method)


def _check_summable_dtype(spec: str, encoder: Any, algos: list[BoundAlgorithm]) -> None:
    """Payloads that are not float32/float16 (bf16 as uint16) sum only inside MPI's own op."""
    wire = encoder.encode(np.zeros(2, np.float32)).buffers[0].dtype
    others = [a.label for a in algos if a.name != "native"]
    if wire not in (np.float32, np.float16) and others:
        raise UsageError(
            f"{spec} payloads ({wire}) are summed by MPI's Allreduce with a user op: "
            f"use --algo native (not {', '.join(others)})"
        )


def _compressed_cases(
    comm: MPI.Comm, args: argparse.Namespace, backend: Backend, algos: list[BoundAlgorithm]
) -> list[Case]:
    if args.dtype != "float32" or args.op != "sum":
        raise UsageError("compressed allreduce works on --dtype float32 with --op sum")
    cases: list[Case] = []
    for spec in args.encoder:
        encoder = make_encoder(spec, comm.rank, args.ef)
        path = _method_for(encoder, args.method)
        core = algos if path in ("summable", "powersgd") else [None]
        if path == "summable":
            _check_summable_dtype(spec, encoder, core)
        for algo in core:
            label = algo.label if algo is not None else path
            core_algo = algo.label if algo is not None else "native"
            cases.append(CompressedAllreduceCase(
                comm, backend, spec, ef=args.ef, method=path, core_algo=core_algo, label=label,
            ))  # fmt: skip
    return cases


def allreduce_cases(comm: MPI.Comm, args: argparse.Namespace, backend: Backend) -> list[Case]:
    """One case per requested algorithm (and encoder, when compressing)."""
    if args.dtype not in DTYPES:
        raise UsageError(f"unknown dtype {args.dtype!r}; choose from {', '.join(DTYPES)}")
    if args.op not in ("sum", "max", "min"):
        raise UsageError(f"unknown op {args.op!r}; choose sum, max or min")
    algos = parse_algorithms(args.algo)
    if args.encoder:
        return _compressed_cases(comm, args, backend, algos)
    if args.ef or args.method != "auto":
        raise UsageError("--ef and --method need --encoder")
    op = op_by_name(args.op)
    return [AllreduceCase(comm, a, args.dtype, backend, op) for a in algos]


def compress_parser(description: str | None) -> KernelParser:
    """Common flags plus --encoder (repeatable, or all) and --ef."""
    parser = common_parser("compress", description)
    parser.set_defaults(minbytes="4K", maxbytes="64M", stepfactor=4.0, barrier="none")
    _add_encoder_flags(parser, "or all (default: all)")
    return parser


def compress_cases(comm: MPI.Comm, args: argparse.Namespace, backend: Backend) -> list[Case]:
    """One encoder-throughput case per encoder, on a single rank."""
    if comm.size != 1:
        raise UsageError(f"compress runs on one rank (no MPI traffic), got {comm.size}")
    specs = args.encoder or ["all"]
    if "all" in specs:
        specs = [s for s in specs if s != "all"] + available()
    cfg = sweep_config(args)
    for spec in specs:
        make_encoder(spec, 0, args.ef)
    return [CompressCase(comm, backend, s, ef=args.ef, cfg=cfg) for s in specs]


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
