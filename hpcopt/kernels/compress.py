"""The compress kernel: encoder throughput on one rank (encode timed by the harness, decode
timed by the same loop), payload bytes, compression ratio and error."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation import Plan, plan
from hpcopt.backend import Backend, sync, to_host
from hpcopt.bench.harness import Case, Prepared, SweepConfig, iterations_for, time_loop
from hpcopt.bench.program import KernelParser, common_parser, run_sweep_kernel, sweep_config
from hpcopt.bench.verify import normal_data, relative_error
from hpcopt.encoders import Codec, Payload, available
from hpcopt.errors import UsageError
from hpcopt.specs import no_repeats

__all__ = ["CompressCase", "cases", "main", "parser"]

KERNEL = "compress"
DESCRIPTION = (
    "Encoder throughput on one rank: encode and decode GB/s, payload bytes on the wire, "
    "compression ratio and relative error, over a size sweep of float32 inputs."
)


class _Decode(Prepared):
    """Lets the harness's timing loop time ``decode`` of one payload."""

    def __init__(self, codec: Codec, payload: Payload, out: Any) -> None:
        self.codec, self.payload, self.out = codec, payload, out

    def run(self) -> int:
        self.codec.decode(self.payload, self.out)
        return 0

    def sync(self) -> None:
        sync(self.out)


class _EncodeBuffers(Prepared):
    """One size of the encoder-throughput case: input, output and the last payload."""

    def __init__(self, case: CompressCase, size_bytes: int) -> None:
        self.case = case
        self.count = size_bytes // 4
        self.size_bytes = self.count * 4
        self.x = normal_data(case.backend, self.count, 0)
        self.out = case.backend.xp.empty_like(self.x)
        self.codec = case.plan.codec()
        self.payload: Any = None
        self.step = 0

    def run(self) -> int:
        self.step += 1
        self.payload = self.codec.encode(self.x, self.step)
        return self.payload.nbytes

    def sync(self) -> None:
        sync(self.x)

    def check(self) -> dict[str, Any]:
        """Decode throughput (same timing loop), compression ratio and relative error."""
        codec = self.case.plan.codec()  # no residual carried over
        payload = codec.encode(self.x, self.step + 1)
        decode = _Decode(codec, payload, self.out)
        times = np.zeros(iterations_for(self.size_bytes, self.case.cfg)[1])
        time_loop(self.case.comm, decode, 1, times, "none")
        decoded = to_host(self.out)
        mean = float(times.mean())
        return {
            "wrong": int(np.count_nonzero(~np.isfinite(decoded))),
            "rel_error": relative_error(decoded, to_host(self.x).astype(np.float64)),
            "compression_ratio": self.size_bytes / payload.nbytes if payload.nbytes else 0.0,
            "decode_t_avg_s": mean,
            "decode_GBps": self.size_bytes / mean / 1e9 if mean > 0 else 0.0,
        }


class CompressCase(Case):
    """Encode throughput (timed by the harness) and decode throughput of one encoder."""

    kernel = KERNEL
    algo = "encode"
    dtype = "float32"
    itemsize = 4

    def __init__(self, comm: MPI.Comm, backend: Backend, chosen: Plan, cfg: SweepConfig) -> None:
        self.comm, self.backend, self.plan, self.cfg = comm, backend, chosen, cfg
        self.encoder = chosen.encoder_label

    def record_fields(self) -> dict[str, Any]:
        """What a cost model needs besides the times: how the payload would be summed."""
        return {
            "device": self.backend.device,
            "summable": self.plan.summable,
            "stages": self.plan.stages,
        }

    def footprint(self, size_bytes: int) -> int:
        """Input, output, codec memory and work arrays."""
        return 6 * size_bytes

    def prepare(self, size_bytes: int) -> _EncodeBuffers:
        return _EncodeBuffers(self, size_bytes)

    def finish_record(self, fields: dict[str, Any]) -> None:
        """The harness-timed operation is the encode: its algbw is the encode throughput."""
        fields["encode_GBps"] = fields["algbw_GBps"]


def parser() -> KernelParser:
    """Common flags (other defaults) plus --encoder (repeatable, or all) and --ef."""
    ps = common_parser(KERNEL, DESCRIPTION)
    ps.set_defaults(minbytes="4K", maxbytes="64M", stepfactor=4.0, barrier="none")
    ps.add_argument(
        "--encoder", action="append", default=None, metavar="SPEC",
        help="payload encoder NAME[:key=value,...], repeatable, or all (default: all)",
    )  # fmt: skip
    ps.add_argument("--ef", action="store_true", help="error feedback around every encoder")
    return ps


def cases(comm: MPI.Comm, args: argparse.Namespace, backend: Backend) -> list[Case]:
    """One encoder-throughput case per encoder, on a single rank."""
    if comm.size != 1:
        raise UsageError(f"compress runs on one rank (no MPI traffic), got {comm.size}")
    specs = no_repeats(args.encoder or ["all"], "encoder")
    if "all" in specs:
        specs = [s for s in specs if s != "all"] + available()
    cfg = sweep_config(args)
    plans = [plan(spec, ef=args.ef) for spec in specs]
    return [CompressCase(comm, backend, chosen, cfg) for chosen in plans]


def main(argv: Sequence[str] | None = None) -> int:
    """Validate, sweep, log; the exit status (2 bad input, 1 wrong results)."""
    return run_sweep_kernel(KERNEL, parser(), cases, argv)
