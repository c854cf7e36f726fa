"""hpcopt's own collective algorithms against MPI's own, and the overlap of non-blocking calls.

Part 1: at one size (default 16 MiB) on 2 and 4 ranks, every algorithm of allreduce,
allgather, reduce-scatter, bcast and alltoall runs in one kernel run; each own algorithm's
busbw is divided by that of MPI's own call in the same form (in place, or out of place for
alltoall) in that run. Medians over rounds of the ratios are printed.

Part 2: non-blocking allreduce (OSU's overlap method, MPI's own in place, 2 ranks) at
1 MiB and 16 MiB, without and with MPICH_ASYNC_PROGRESS=1: t_pure, t_compute, t_total and
overlap %, medians over rounds.

    python benchmarks/own_vs_native.py [--rounds 3] [--size 16M] [--ranks 2,4] [--part 1,2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from hpcopt.collectives import COLLECTIVES
from hpcopt.launch import spawn_kernel_checked
from hpcopt.log import read_log
from hpcopt.specs import format_size, parse_size

OPERATIONS = ("allreduce", "allgather", "reduce_scatter", "bcast", "alltoall")
OVERLAP_SIZES = ("1M", "16M")


def run(kernel: str, ranks: int, args: list[str], log: Path, env: dict[str, str] | None = None):
    """One kernel run; its records."""
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        spawn_kernel_checked(kernel, ranks, [*args, "-q", "--overwrite", "-o", str(log)],
                             timeout_s=1200)  # fmt: skip
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return read_log(log).records()


def reference_of(kernel: str, algo: str) -> str:
    """MPI's own call in the own algorithm's form."""
    form = COLLECTIVES[kernel][algo].info["form"]
    has_both = "native-oop" in COLLECTIVES[kernel].names()
    return "native-oop" if form == "out-of-place" and has_both else "native"


def ratios(args: argparse.Namespace, workdir: Path) -> None:
    size = parse_size(args.size)
    print(f"# busbw of each own algorithm / MPI's own (same form), {format_size(size)}, "
          f"median of {args.rounds} rounds [min-max]")  # fmt: skip
    for ranks in args.ranks:
        found: dict[tuple[str, str], list[float]] = defaultdict(list)
        for _ in range(args.rounds):
            for kernel in OPERATIONS:
                n = size * ranks if kernel == "reduce_scatter" else size  # whole blocks
                flags = ["-b", str(n), "-e", str(n), "-n", str(args.iters), "-w", "2", "-c", "0"]
                recs = run(kernel, ranks, [*flags, "--algo", "all"], workdir / "r.h5")
                busbw = {r["algo"]: r["busbw_GBps"] for r in recs}
                for algo, value in busbw.items():
                    if not algo.startswith("native"):
                        found[(kernel, algo)].append(value / busbw[reference_of(kernel, algo)])
        for (kernel, algo), values in found.items():
            best = f"{statistics.median(values):6.3f} [{min(values):.3f}-{max(values):.3f}]"
            ref = reference_of(kernel, algo)
            print(f"{ranks} ranks  {kernel:<15}{algo:<20} / {ref:<11}{best}", flush=True)


def overlap(args: argparse.Namespace, workdir: Path) -> None:
    print(f"# nonblocking allreduce (native, in place), 2 ranks, median of {args.rounds} rounds")
    print(f"{'MPICH_ASYNC_PROGRESS':<22}{'size':>8}{'pure(us)':>11}{'compute(us)':>13}"
          f"{'total(us)':>11}{'overlap%':>10}")  # fmt: skip
    for progress in ("0", "1"):
        rows: dict[int, list[tuple[float, float, float, float]]] = defaultdict(list)
        for _ in range(args.rounds):
            flags = ["-b", OVERLAP_SIZES[0], "-e", OVERLAP_SIZES[1], "-f", "16", "-n", "20",
                     "-w", "2", "--algo", "native", "--mode", "nonblocking", "-c", "0"]  # fmt: skip
            env = {"MPICH_ASYNC_PROGRESS": progress}
            for r in run("allreduce", 2, flags, workdir / "o.h5", env):
                rows[r["size_bytes"]].append(
                    (r["t_pure_s"], r["t_compute_s"], r["t_avg_s"], r["overlap_pct"])
                )
        for size, values in sorted(rows.items()):
            pure, alone, total, pct = (statistics.median(v) for v in zip(*values, strict=True))
            print(f"{progress:<22}{format_size(size):>8}{pure * 1e6:>11.1f}{alone * 1e6:>13.1f}"
                  f"{total * 1e6:>11.1f}{pct:>10.1f}", flush=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--size", default="16M")
    parser.add_argument("--ranks", type=lambda s: [int(x) for x in s.split(",")], default=[2, 4])
    parser.add_argument("--part", default="1,2", help="1: busbw ratios, 2: overlap")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if "1" in args.part:
            ratios(args, Path(tmp))
        if "2" in args.part:
            overlap(args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
