"""The allreduce kernel: the collective kernel over ALLREDUCE, plus compressed payloads."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation import PHASES, Plan, aggregate, plan
from hpcopt.aggregation.adaptive import adaptive_of
from hpcopt.backend import Backend, Scratch, sync, to_host
from hpcopt.bench.harness import Case, Prepared
from hpcopt.bench.program import KernelParser, run_sweep_kernel
from hpcopt.bench.verify import (
    count_mismatches,
    fill_check_data,
    normal_data,
    relative_error,
)
from hpcopt.collectives import ALLREDUCE, bus_factor, parse_algorithms
from hpcopt.errors import UsageError
from hpcopt.kernels.collective import REDUCTION_DTYPES, CollectiveKernel
from hpcopt.specs import no_repeats

__all__ = ["DTYPES", "KERNEL", "CompressedAllreduceCase", "cases", "main", "parser"]

KERNEL = CollectiveKernel(ALLREDUCE)
DTYPES = REDUCTION_DTYPES


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

    def _input(self, rank: int, exact_encoder: bool) -> np.ndarray:
        """Rank ``rank``'s input of the check, on the host: any rank can make anyone's."""
        if not exact_encoder:
            return to_host(normal_data(self.case.backend, self.count, rank))
        data = np.empty(self.count, np.float32)
        fill_check_data(data, rank)
        return data

    def check(self) -> dict[str, Any]:
        """The exact sum computed locally in float64 from every rank's input; relative error;
        NaN/Inf (or, without compression, any miss) wrong. Check data lie on a 1/8 grid, so
        float16 node sums and secure aggregation's fixed point carry them exactly too."""
        comm, chosen = self.case.comm, self.case.plan
        exact_encoder = chosen.encoder == "none"
        fields: dict[str, Any] = {f"{k}_bytes": v for k, v in self.links.items()}  # timed calls
        adaptive = adaptive_of(self.codec)
        if adaptive is not None:
            fields["adapt_choices"] = adaptive.summary()
        exact = np.zeros(self.count, np.float64)
        for rank in range(comm.size):
            exact += self._input(rank, exact_encoder)
        data = self.x
        if exact_encoder:
            data = self.case.backend.xp.asarray(self._input(comm.rank, True))
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

    kernel = "allreduce"
    dtype = "float32"
    itemsize = 4

    def __init__(
        self, comm: MPI.Comm, backend: Backend, chosen: Plan, asked: str = "native"
    ) -> None:
        self.comm, self.backend, self.plan, self.asked = comm, backend, chosen, asked
        self.algo, self.encoder = chosen.label, chosen.encoder_label

    def notes(self) -> list[str]:
        if self.plan.stages or self.asked == "native":
            return super().notes()
        return [*super().notes(), f"{self.plan.encoder}: payloads that do not sum are combined "
                f"by {self.plan.path}, not by --algo {self.asked}"]  # fmt: skip

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
    """The collective kernel's flags plus the compression flags."""
    ps = KERNEL.parser()
    add = ps.add_argument
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
    comm: MPI.Comm, args: argparse.Namespace, backend: Backend, plain: Sequence[Case]
) -> list[Case]:
    if args.mode != "blocking":
        raise UsageError(f"--mode {args.mode} times MPI's own calls: not with --encoder")
    algos = parse_algorithms(args.algo)
    cases: list[Case] = []
    for spec in no_repeats(args.encoder, "encoder"):
        if spec.strip() == "none" and args.method == "auto":  # the plain algorithms
            if args.ef:
                raise UsageError("the none encoder sends the data as it is: no --ef")
            cases += plain
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


def cases(comm: MPI.Comm, args: argparse.Namespace, backend: Backend) -> Sequence[Case]:
    """One case per requested algorithm (and encoder, when compressing)."""
    uncompressed = KERNEL.cases(comm, args, backend)  # checks the common values first
    if args.encoder:
        return _compressed_cases(comm, args, backend, uncompressed)
    if args.ef or args.method != "auto":
        raise UsageError("--ef and --method need --encoder")
    return uncompressed


def main(argv: Sequence[str] | None = None) -> int:
    """Validate on every rank, sweep, log; the exit status (2 bad input, 1 wrong results)."""
    return run_sweep_kernel("allreduce", parser(), cases, argv)
