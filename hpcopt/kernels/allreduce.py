"""The allreduce kernel: flags, cases (uncompressed and compressed) and main."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation import PHASES, Plan, aggregate, plan
from hpcopt.aggregation.adaptive import adaptive_of
from hpcopt.backend import Backend, Scratch, aligned_full, sync, to_host
from hpcopt.bench.harness import Case, Prepared
from hpcopt.bench.program import KernelParser, common_parser, run_sweep_kernel
from hpcopt.bench.verify import count_mismatches, fill_check_data, normal_data, relative_error
from hpcopt.collectives import BoundAlgorithm, bus_factor, parse_algorithms
from hpcopt.collectives._p2p import op_by_name, op_name
from hpcopt.errors import UsageError
from hpcopt.specs import no_repeats

__all__ = ["DTYPES", "AllreduceCase", "CompressedAllreduceCase", "cases", "main", "parser"]

KERNEL = "allreduce"
DESCRIPTION = (
    "Allreduce sweep: every selected algorithm (MPI's own and hpcopt's point-to-point "
    "ones), optionally on compressed payloads, over a size sweep."
)
DTYPES = ("float32", "float64", "int32", "int64")
OPS = ("sum", "max", "min")


def _staged(buf: Any, host: Any, call: Any, target: Any, result: Any) -> int:
    """Device buffer to host, the allreduce there, the host result back to ``target``."""
    buf.get(out=host)
    sent = call()
    target.set(result)
    return sent


class _Buffers(Prepared):
    """One size's buffers for an allreduce case; everything allocated here, once."""

    def __init__(self, case: AllreduceCase, size_bytes: int) -> None:
        xp, dtype = case.backend.xp, np.dtype(case.dtype)
        algo = case.algorithm
        self.case = case
        self.count = size_bytes // dtype.itemsize
        self.size_bytes = self.count * dtype.itemsize
        # Zeros stay zeros under any number of in-place sums, maxima and minima: the timed
        # data never grows to Inf, wraps or turns subnormal (no data-dependent timing).
        self.buf = aligned_full(xp, self.count, 0, dtype)
        self.out = aligned_full(xp, self.count, 0, dtype) if algo.out_of_place else None
        self.staged = case.backend.stage_through_host()
        self.host_only = not case.backend.on_gpu
        self._timed: Callable[[], Any] | None = None
        self._run: Callable[[], int]
        if self.staged:  # MPI sees host copies; the call stages in and out around them
            self.host = np.empty(self.count, dtype)
            self.host_out = np.empty_like(self.host) if self.out is not None else None
            self.scratch = Scratch(np)
            call = algo.call(case.comm, self.host, op=case.op, scratch=self.scratch,
                             out=self.host_out)  # fmt: skip
            result = self.host_out if self.host_out is not None else self.host
            self._run = functools.partial(_staged, self.buf, self.host, call, self.result(), result)
        else:
            self.scratch = Scratch(xp)
            self._run = algo.call(case.comm, self.buf, op=case.op, scratch=self.scratch,
                                  out=self.out)  # fmt: skip
            self._timed = algo.bind(case.comm, self.buf, op=case.op, scratch=self.scratch,
                                    out=self.out)  # fmt: skip

    def run(self) -> int:
        return self._run()

    def timed_call(self) -> Any:
        return self._timed or self._run

    def sync(self) -> None:
        sync(self.buf)

    def result(self) -> Any:
        return self.out if self.out is not None else self.buf

    def check(self) -> dict[str, Any]:
        comm, xp = self.case.comm, self.case.backend.xp
        fill_check_data(self.buf, comm.rank)
        sync(self.buf)
        if self.staged:
            reference = np.empty_like(self.host)
            comm.Allreduce(to_host(self.buf), reference, self.case.op)
        else:
            reference = xp.empty_like(self.buf)
            comm.Allreduce(self.buf, reference, self.case.op)
        self.run()
        self.sync()
        got = to_host(self.result()) if self.staged else self.result()
        return {"wrong": count_mismatches(got, reference)}


class AllreduceCase(Case):
    """An allreduce algorithm timed by the harness; busbw factor 2(p-1)/p."""

    kernel = KERNEL

    def __init__(
        self, comm: MPI.Comm, algorithm: BoundAlgorithm, dtype: str, backend: Backend,
        op: MPI.Op = MPI.SUM,
    ) -> None:  # fmt: skip
        self.comm, self.algorithm, self.dtype, self.backend, self.op = (
            comm, algorithm, dtype, backend, op
        )  # fmt: skip
        self.algo = algorithm.label
        self.itemsize = np.dtype(dtype).itemsize

    def bus_factor(self, ranks: int) -> float:
        return bus_factor(ranks)

    def record_fields(self) -> dict[str, Any]:
        return {"op": op_name(self.op), "device": self.backend.device}

    def footprint(self, size_bytes: int) -> int:
        """Buffer, reference, scratch (a full vector at most), output and host staging."""
        copies = 3 + self.algorithm.out_of_place + 2 * self.backend.stage_through_host()
        return copies * size_bytes

    def prepare(self, size_bytes: int) -> _Buffers:
        return _Buffers(self, size_bytes)


class _CompressedBuffers(Prepared):
    """One size of a compressed allreduce: input, codec state, phase-time totals."""

    def __init__(self, case: CompressedAllreduceCase, size_bytes: int) -> None:
        self.case = case
        self.count = size_bytes // 4
        self.size_bytes = self.count * 4
        self.x = normal_data(case.backend, self.count, case.comm.rank)
        self.codec = case.plan.codec(rank=case.comm.rank)
        self.scratch = Scratch(case.backend.xp)
        self.step, self.calls = 0, 0
        self.phase_totals = dict.fromkeys(PHASES, 0.0)
        self.links: dict[str, int] = {}

    def _call(self, x: Any) -> Any:
        self.step += 1
        result = aggregate(
            self.case.comm, x, self.codec, self.case.plan, step=self.step, scratch=self.scratch
        )
        self.links = result.links or {}
        return result

    def begin_timed(self) -> None:
        """Count phase times of the timed iterations only."""
        self.calls = 0
        self.phase_totals = dict.fromkeys(PHASES, 0.0)

    def run(self) -> int:
        result = self._call(self.x)
        self.calls += 1
        for phase in PHASES:
            self.phase_totals[phase] += result.times[phase]
        return result.nbytes

    def sync(self) -> None:
        sync(self.x)

    def check(self) -> dict[str, Any]:
        """Exact sum by MPI in float64; relative error; NaN/Inf (or, for none, any miss) wrong.

        Check data lie on a 1/8 grid, so float16 node sums and secure aggregation's fixed
        point carry them exactly too.
        """
        comm, chosen = self.case.comm, self.case.plan
        exact_encoder = chosen.encoder == "none"
        fields: dict[str, Any] = {f"{k}_bytes": v for k, v in self.links.items()}  # timed calls
        adaptive = adaptive_of(self.codec)
        if adaptive is not None:
            fields["adapt_choices"] = adaptive.summary()
        data = self.x
        if exact_encoder:
            data = self.case.backend.xp.empty_like(self.x)
            fill_check_data(data, comm.rank)
        exact = to_host(data).astype(np.float64)
        comm.Allreduce(MPI.IN_PLACE, exact, MPI.SUM)
        self.codec = chosen.codec(rank=comm.rank)  # no residual carried over
        host = to_host(self._call(data).out)
        if exact_encoder and not chosen.ef and not _drops(chosen):
            wrong = count_mismatches(host, exact.astype(np.float32))
        else:
            wrong = int(np.count_nonzero(~np.isfinite(host)))
        fields.update({"wrong": wrong, "rel_error": relative_error(host, exact)})
        calls = max(self.calls, 1)
        fields.update({f"t_{p}_s": total / calls for p, total in self.phase_totals.items()})
        return fields


def _drops(chosen: Plan) -> bool:
    """Secure aggregation with simulated drop-outs: its sum may leave ranks out."""
    config = chosen.method_options.get("config")
    return bool(config is not None and config.dropouts and config.drop == "before-input")


class CompressedAllreduceCase(Case):
    """A compressed allreduce along an aggregation plan, on float32."""

    kernel = KERNEL
    dtype = "float32"
    itemsize = 4

    def __init__(
        self, comm: MPI.Comm, backend: Backend, chosen: Plan, asked: str = "native"
    ) -> None:
        self.comm, self.backend, self.plan, self.asked = comm, backend, chosen, asked
        self.algo, self.encoder = chosen.label, chosen.encoder_label

    def notes(self) -> list[str]:
        if self.plan.stages or self.asked == "native":
            return []
        return [f"{self.plan.encoder}: payloads that do not sum are combined by "
                f"{self.plan.path}, not by --algo {self.asked}"]  # fmt: skip

    def bus_factor(self, ranks: int) -> float:
        return bus_factor(ranks)

    def record_fields(self) -> dict[str, Any]:
        return {"op": "sum", "device": self.backend.device, "method": self.plan.path}

    def footprint(self, size_bytes: int) -> int:
        """Input, codec memory and work, the float64 exact sum, output, and up to one
        payload per rank gathered."""
        return (8 + self.comm.size) * size_bytes

    def prepare(self, size_bytes: int) -> _CompressedBuffers:
        return _CompressedBuffers(self, size_bytes)


def parser() -> KernelParser:
    """Common flags plus --algo, --dtype, --op and the compression flags."""
    ps = common_parser(KERNEL, DESCRIPTION)
    add = ps.add_argument
    add("--algo", default="all", help="comma list of algorithms with options, or all "
        "(default all), e.g. ring,ring-pipelined:segment=64K,window=4")  # fmt: skip
    add("--dtype", default="float32", help=f"one of {', '.join(DTYPES)} (default float32)")
    add("--op", default="sum", help=f"one of {', '.join(OPS)} (default sum)")
    add(
        "--encoder", action="append", default=None, metavar="SPEC",
        help="payload encoder NAME[:key=value,...], repeatable (default: none, uncompressed)",
    )  # fmt: skip
    add("--ef", action="store_true", help="error feedback around every encoder")
    add("--method", default="auto", metavar="SPEC",
        help="how compressed payloads are combined (default auto: summable encoders through "
        "--algo, others by allgather, powersgd by its two allreduces); also summable, "
        "allgather, two-phase, vote, powersgd, hierarchical[:ppn=N,intra=fp16,leaders=PATH] "
        "(node sums, PATH among node leaders) and secure[:threshold=T,dropouts=K,...] "
        "(secure aggregation, --encoder none)")  # fmt: skip
    return ps


def _compressed_cases(
    comm: MPI.Comm, args: argparse.Namespace, backend: Backend, algos: list[BoundAlgorithm]
) -> list[Case]:
    cases: list[Case] = []
    for spec in no_repeats(args.encoder, "encoder"):
        if spec.strip() == "none" and args.method == "auto":  # the plain algorithms
            if args.ef:
                raise UsageError("the none encoder sends the data as it is: no --ef")
            op = op_by_name(args.op)
            cases += [AllreduceCase(comm, a, args.dtype, backend, op) for a in algos]
            continue
        labels: set[str] = set()
        for algo in algos:
            chosen = plan(spec, ef=args.ef, method=args.method, algorithm=algo.label,
                          dtype=args.dtype, op=args.op, device=backend.device,
                          ranks=comm.size)  # fmt: skip
            if chosen.path == "gossip":
                raise UsageError("--method gossip is for decentralized optimizers (train)")
            if chosen.label not in labels:  # gather paths ignore the core algorithm
                labels.add(chosen.label)
                asked = ",".join(a.label for a in algos) if args.algo != "all" else "native"
                cases.append(CompressedAllreduceCase(comm, backend, chosen, asked))
    return cases


def cases(comm: MPI.Comm, args: argparse.Namespace, backend: Backend) -> list[Case]:
    """One case per requested algorithm (and encoder, when compressing)."""
    if args.dtype not in DTYPES:
        raise UsageError(f"unknown dtype {args.dtype!r}; choose from {', '.join(DTYPES)}")
    if args.op not in OPS:
        raise UsageError(f"unknown op {args.op!r}; choose from {', '.join(OPS)}")
    algos = parse_algorithms(args.algo)
    if args.encoder:
        return _compressed_cases(comm, args, backend, algos)
    if args.ef or args.method != "auto":
        raise UsageError("--ef and --method need --encoder")
    op = op_by_name(args.op)
    return [AllreduceCase(comm, a, args.dtype, backend, op) for a in algos]


def main(argv: Sequence[str] | None = None) -> int:
    """Validate on every rank, sweep, log; the exit status (2 bad input, 1 wrong results)."""
    return run_sweep_kernel(KERNEL, parser(), cases, argv)
