"""Encode/decode throughput of every encoder next to ``numpy.copyto`` of the same array.

Every number comes from the harness's own timing loop (the compress kernel's case, run
in this process on one rank), so it matches what `kernels/compress.py` logs. "x copy"
columns are multiples of the copy time (encode ratio to copy = 1 / that); "sum2" is the
fused decode-and-sum of 2 payloads into one output.

    python benchmarks/encoders.py [-n ELEMENTS] [-r REPEAT] [SPEC ...]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation import plan
from hpcopt.backend import get_backend
from hpcopt.bench.harness import Prepared, SweepConfig, measure, time_loop
from hpcopt.encoders import available, get_encoder
from hpcopt.encoders.base import decode_sum
from hpcopt.kernels.compress import CompressCase

DEFAULT_SPECS = [*available(), "qsgd:levels=127", "topk:ratio=0.01,delta=1"]


class _Copy(Prepared):
    """numpy.copyto of the input: the memory-speed yardstick."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.dst = x, np.empty_like(x)
        self.size_bytes = x.nbytes

    def run(self) -> int:
        np.copyto(self.dst, self.x)
        return 0


def copy_seconds(elements: int, repeat: int) -> float:
    """Mean seconds of one copyto of ``elements`` float32, timed by the harness loop."""
    x = np.random.default_rng(0).standard_normal(elements).astype(np.float32)
    times = np.zeros(repeat)
    time_loop(MPI.COMM_SELF, _Copy(x), 1, times, "none")
    return float(times.mean())


class _DecodeSum(Prepared):
    """decode_sum of two ranks' payloads into one output."""

    def __init__(self, spec: str, x: np.ndarray) -> None:
        self.codec = get_encoder(spec)
        self.payloads = [self._copy(get_encoder(spec, rank=r).encode(x, 1), x) for r in (0, 1)]
        self.out = np.empty_like(x)

    def _copy(self, payload: Any, x: np.ndarray) -> Any:
        raw = np.concatenate([b.reshape(-1).view(np.uint8) for b in payload.buffers])
        return self.codec.from_bytes(raw, x.shape, 1)

    def run(self) -> int:
        decode_sum(self.codec, self.payloads, self.out)
        return 0


def sum2_seconds(spec: str, elements: int, repeat: int) -> float:
    """Mean seconds of the fused decode-and-sum of 2 payloads of ``spec``."""
    x = np.random.default_rng(1).standard_normal(elements).astype(np.float32)
    times = np.zeros(repeat)
    time_loop(MPI.COMM_SELF, _DecodeSum(spec, x), 1, times, "none")
    return float(times.mean())


def encoder_record(spec: str, elements: int, repeat: int) -> dict[str, Any]:
    """The compress kernel's record for ``spec`` at one size (encode and decode timed)."""
    size = 4 * elements
    cfg = SweepConfig(sizes=[size], warmup=1, iters=repeat, scale_iters=False, barrier="none")
    case = CompressCase(MPI.COMM_SELF, get_backend("cpu"), plan(spec), cfg)
    fields, _ = measure(MPI.COMM_SELF, case, size, cfg)
    return fields


def main() -> int:
    """Print one row per encoder: GB/s of float32 input, and the time as a multiple of copyto."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--elements", type=int, default=16 * 2**20)
    parser.add_argument("-r", "--repeat", type=int, default=5, help="timed calls per encoder")
    parser.add_argument("specs", nargs="*", default=DEFAULT_SPECS)
    args = parser.parse_args()
    copy = copy_seconds(args.elements, args.repeat)
    gbs = 4 * args.elements / 1e9
    print(f"{args.elements} float32 ({4 * args.elements / 2**20:.0f} MiB), mean of {args.repeat}")
    print(f"copyto {gbs / copy:7.2f} GB/s ({copy * 1e3:.1f} ms)")
    head = ("encoder", "enc GB/s", "enc ms", "x copy", "dec GB/s", "sum2 ms", "x copy", "bits/el")
    print("{:26} {:>9} {:>8} {:>7} {:>9} {:>8} {:>7} {:>8}".format(*head))
    for spec in args.specs:
        reps = 1 if spec.startswith("qsgd-elias") else args.repeat
        rec = encoder_record(spec, args.elements, reps)
        sum2 = sum2_seconds(spec, args.elements, reps) if spec != "powersgd" else float("nan")
        bits = 8 * rec["wire_bytes"] / args.elements
        print(
            f"{spec:26} {rec['encode_GBps']:9.2f} {rec['t_avg_s'] * 1e3:8.1f} "
            f"{rec['t_avg_s'] / copy:7.2f} {rec['decode_GBps']:9.2f} {sum2 * 1e3:8.1f} "
            f"{sum2 / copy:7.2f} {bits:8.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
