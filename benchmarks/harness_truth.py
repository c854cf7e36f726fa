"""Does hpcopt's harness agree with an independent C loop on the same MPI library?

Builds benchmarks/c/allreduce_loop.c with the installed MPI's mpicc, then, size by size,
runs it and ``kernels/allreduce.py --algo native`` alternately for several rounds on 2
ranks (same method: MPI_THREAD_MULTIPLE, a barrier before each timed iteration, per-rank
means averaged over ranks) and prints the per-size medians side by side. Alternating at
each size keeps the machine's drift out of the comparison.

    python benchmarks/harness_truth.py [--rounds 5] [--iters 200] [--maxbytes 16777216]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from hpcopt.launch import find_mpiexec, launch_env, spawn_kernel_checked
from hpcopt.log import read_log

ROOT = Path(__file__).resolve().parents[1]


def build(workdir: Path) -> Path:
    mpicc = Path(find_mpiexec()).with_name("mpicc")
    exe = workdir / "allreduce_loop"
    src = ROOT / "benchmarks" / "c" / "allreduce_loop.c"
    subprocess.run([str(mpicc), "-O2", "-o", str(exe), str(src)], check=True)
    return exe


def run_c(exe: Path, args: argparse.Namespace, size: int) -> dict[int, float]:
    cmd = [
        find_mpiexec(),
        "-n",
        "2",
        str(exe),
        str(size),
        str(size),
        str(args.iters),
        str(args.warmup),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=launch_env(600))
    rows = (line.split() for line in out.stdout.splitlines() if not line.startswith("#"))
    return {int(size): float(us) for size, us in rows}


def run_py(workdir: Path, args: argparse.Namespace, size: int) -> dict[int, float]:
    log = workdir / f"py{size}.h5"
    sweep = ["-b", str(size), "-e", str(size), "-n", str(args.iters), "-w", str(args.warmup)]
    spawn_kernel_checked(
        "allreduce", 2, ["--algo", "native", *sweep, "-c", "0", "-q", "--overwrite", "-o", str(log)]
    )
    return {r["size_bytes"]: r["t_avg_s"] * 1e6 for r in read_log(log).records()}


def verdict(size: int, c_us: float, py_us: float) -> str:
    if size <= 1024:
        return "ok" if abs(py_us - c_us) <= 1.0 else "MISS (>1 us)"
    if size >= 64 * 1024:
        return "ok" if abs(py_us - c_us) <= 0.10 * c_us else "MISS (>10 %)"
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--maxbytes", type=int, default=16 << 20)
    args = parser.parse_args()
    sizes = [8 << i for i in range(args.maxbytes.bit_length()) if 8 << i <= args.maxbytes]
    print(
        f"# 2 ranks, native in-place Allreduce float32, median of {args.rounds} rounds "
        "alternating C and hpcopt at each size"
    )
    print(f"{'size(B)':>10} {'C(us)':>10} {'hpcopt(us)':>11} {'diff(us)':>9} {'ratio':>6}  verdict")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        exe = build(workdir)
        for size in sizes:
            c_us, py_us = [], []
            for _ in range(args.rounds):
                c_us.append(run_c(exe, args, size)[size])
                py_us.append(run_py(workdir, args, size)[size])
            c_med, py_med = statistics.median(c_us), statistics.median(py_us)
            print(
                f"{size:>10} {c_med:>10.2f} {py_med:>11.2f} {py_med - c_med:>9.2f} "
                f"{py_med / c_med:>6.3f}  {verdict(size, c_med, py_med)}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
