"""Side-by-side allreduce figures on 2 ranks: bandwidth at 16 MiB and latency at 8 B.

Runs every algorithm in one kernel invocation per round (alternating rounds to spread
the machine's noise), measures numpy.copyto bandwidth of the same payload, and prints
busbw ratios against in-place native and 8 B latency ratios against native.

    python benchmarks/allreduce_compare.py [--rounds 3] [--size 16M]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hpcopt.launch import spawn_kernel_checked
from hpcopt.log import read_log
from hpcopt.specs import parse_size

ROOT = Path(__file__).resolve().parents[1]
ALGOS = "native,native-oop,ring,ring-pipelined,tree,recursive-doubling,rabenseifner,hierarchical"


def kernel(log: Path, size: int, iters: int, algos: str) -> dict[str, dict]:
    flags = ["--algo", algos, "-b", str(size), "-e", str(size), "-n", str(iters)]
    spawn_kernel_checked(
        "allreduce", 2, [*flags, "--fixed-iters", "-w", "5", "-c", "0", "-q", "-o", str(log)]
    )
    return {r["algo"]: r for r in read_log(log).records()}


def copy_bandwidth(size: int, repeats: int = 50) -> float:
    src = np.ones(size // 4, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return size / best / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="16M")
    parser.add_argument("--algos", default=ALGOS, help="comma list (options after ':' use ';')")
    args = parser.parse_args()
    size = parse_size(args.size)
    big, small = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            big.append(kernel(Path(tmp) / f"b{i}.h5", size, 30, args.algos))
            small.append(kernel(Path(tmp) / f"s{i}.h5", 8, 2000, args.algos))
    copy = copy_bandwidth(size)
    names = list(big[0])
    busbw = {a: statistics.median(r[a]["busbw_GBps"] for r in big) for a in names}
    lat = {a: statistics.median(r[a]["t_avg_s"] for r in small) * 1e6 for a in names}
    print(
        f"# 2 ranks, float32 sum, median of {args.rounds} rounds; numpy.copyto of "
        f"{args.size}: {copy:.2f} GB/s"
    )
    print(
        f"{'algorithm':<20}{'busbw(GB/s)':>12}{'vs native':>10}{'vs copy':>9}"
        f"{'8 B (us)':>10}{'vs native':>10}"
    )
    for a in names:
        print(
            f"{a:<20}{busbw[a]:>12.3f}{busbw[a] / busbw['native']:>10.2f}"
            f"{busbw[a] / copy:>9.2f}{lat[a]:>10.2f}{lat[a] / lat['native']:>10.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
