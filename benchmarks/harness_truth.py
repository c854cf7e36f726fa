"""Do hpcopt's kernels agree with an independent C program on the same MPI library?

Builds benchmarks/c/mpi_reference.c (an OSU-like loop written apart from hpcopt) with the
compiler wrapper of the MPI in use, then, per operation, runs a whole size sweep of the
reference and one of the hpcopt kernel through the harness with ``--timer c``, alternately
(the order flips every round), on 2 ranks, and prints per size the medians over rounds,
their difference and a verdict: within 0.2 us at <= 1 KiB, within 5 % at >= 64 KiB (and, for a
noisy machine, the best round of each). Same
method on both sides: MPI_THREAD_MULTIPLE, separate send and receive buffers, a barrier
before each timed collective, patterns back to back, the mean over ranks of each rank's
mean; sizes are what the reference counts (collectives: count x 4 B of float32 sum; the
kernel's reduce_scatter size is ranks times that). It also prints what mpi4py costs per
call at the smallest size: the same kernel with ``--timer python`` minus ``--timer c``,
for allreduce (in place) and ping-pong.

    python benchmarks/harness_truth.py [--rounds 6] [--iters 200] [--warmup 20]
        [--minbytes 8] [--maxbytes 16777216] [--ops pingpong,stream,allreduce,...]
        [--noise-floor]

With --noise-floor the reference also takes the kernel's place: the misses it prints are
what the targets cannot resolve on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from hpcopt.launch import find_mpiexec, launch_env, spawn_kernel_checked
from hpcopt.log import read_log
from hpcopt.timer import status
from hpcopt.timer.build import find_compiler

ROOT = Path(__file__).resolve().parents[1]
RANKS = 2
# operation of the reference -> (kernel, its flags, sizes scale by ranks)
KERNEL_OF = {
    "pingpong": ("p2p", ["--pattern", "pingpong"], False),
    "stream": ("p2p", ["--pattern", "stream"], False),
    "allreduce": ("allreduce", ["--algo", "native", "--dtype", "float32"], False),
    "allreduce-oop": ("allreduce", ["--algo", "native-oop", "--dtype", "float32"], False),
    "allgather": ("allgather", ["--algo", "native-oop", "--dtype", "float32"], False),
    "reduce_scatter_block": (
        "reduce_scatter", ["--algo", "native-oop", "--dtype", "float32"], True),
    "bcast": ("bcast", ["--algo", "native", "--dtype", "float32", "--root", "0"], False),
    "alltoall": ("alltoall", ["--algo", "native-oop", "--dtype", "float32"], False),
}  # fmt: skip
OVERHEAD_OPS = ("allreduce", "pingpong")


def sizes(lo: int, hi: int) -> list[int]:
    return [lo << i for i in range(64) if lo << i <= hi]


def build_reference(workdir: Path) -> Path:
    exe = workdir / "mpi_reference"
    src = ROOT / "benchmarks" / "c" / "mpi_reference.c"
    subprocess.run([find_compiler(), "-O2", "-o", str(exe), str(src)], check=True)
    return exe


def run_reference(exe: Path, op: str, args: argparse.Namespace) -> dict[int, float]:
    """Microseconds per size from one sweep of the reference."""
    sweep = [str(args.minbytes), str(args.maxbytes), str(args.iters), str(args.warmup)]
    cmd = [find_mpiexec(), "-n", str(RANKS), str(exe), op, *sweep]
    out = subprocess.run(cmd, capture_output=True, text=True, env=launch_env(900), check=False)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}: {out.stderr.strip()[-500:]}")
    rows = (ln.split() for ln in out.stdout.splitlines() if ln and not ln.startswith("#"))
    return {int(size): float(us) for size, us in rows}


def run_kernel(op: str, args: argparse.Namespace, workdir: Path, timer: str,
               hi: int | None = None) -> dict[int, float]:  # fmt: skip
    """Microseconds per reference size from one sweep of the kernel under ``timer``."""
    kernel, flags, per_rank = KERNEL_OF[op]
    scale = RANKS if per_rank else 1
    lo, hi = args.minbytes * scale, (hi or args.maxbytes) * scale
    log = workdir / f"{op}-{timer}.h5"
    sweep = ["-b", str(lo), "-e", str(hi), "-f", "2", "-n", str(args.iters), "-w",
             str(args.warmup), "-c", "0", "-q", "--overwrite", "-o", str(log)]  # fmt: skip
    spawn_kernel_checked(kernel, RANKS, [*flags, *sweep, "--timer", timer], timeout_s=900)
    return {r["size_bytes"] // scale: r["t_avg_s"] * 1e6 for r in read_log(log).records()}


def verdict(size: int, ref: float, ours: float) -> str:
    if size <= 1024:
        return "ok" if abs(ours - ref) <= 0.2 else "MISS (> 0.2 us)"
    if size >= 64 * 1024:
        return "ok" if abs(ours - ref) <= 0.05 * ref else "MISS (> 5 %)"
    return "-"


def compare(op: str, exe: Path, args: argparse.Namespace, workdir: Path) -> tuple[int, list]:
    """Alternate the reference and the kernel; print the medians; (misses, overheads)."""
    refs, ours, overhead = [], [], []
    for r in range(args.rounds):
        order = [("ref", refs), ("c", ours)]
        for who, runs in order if r % 2 == 0 else order[::-1]:
            runs.append(run_reference(exe, op, args) if who == "ref" or args.noise_floor else
                        run_kernel(op, args, workdir, "c"))  # fmt: skip
        if op in OVERHEAD_OPS and not args.noise_floor:
            py = run_kernel(op, args, workdir, "python", hi=args.minbytes)[args.minbytes]
            overhead.append((py, ours[-1][args.minbytes]))
    misses = 0
    for size in sizes(args.minbytes, args.maxbytes):
        ref = statistics.median(run[size] for run in refs)
        mine = statistics.median(run[size] for run in ours)
        best = min(run[size] for run in refs), min(run[size] for run in ours)
        word = verdict(size, ref, mine)
        misses += word.startswith("MISS")
        row = f"{op:<21}{size:>10}{ref:>12.3f}{mine:>11.3f}{mine - ref:>10.3f}{mine / ref:>7.3f}"
        print(f"{row}{best[0]:>11.3f}{best[1]:>11.3f}  {word}", flush=True)
    return misses, overhead


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--minbytes", type=int, default=8)
    parser.add_argument("--maxbytes", type=int, default=16 << 20)
    parser.add_argument("--ops", type=lambda s: s.split(","), default=list(KERNEL_OF))
    parser.add_argument("--noise-floor", action="store_true",
                        help="put the C reference in the kernel's place: how far two runs of "
                             "the same program disagree on this machine")  # fmt: skip
    args = parser.parse_args()
    if set(args.ops) - set(KERNEL_OF) or args.rounds < 1 or args.iters < 1 or args.minbytes < 4:
        parser.error(f"operations from {', '.join(KERNEL_OF)}; rounds, iters >= 1; minbytes >= 4")
    if not status().available:
        print(f"C timer not available: {status().reason}", file=sys.stderr)
        return 1
    print(f"# {RANKS} ranks, medians of {args.rounds} rounds alternating the C reference and "
          "the kernel (--timer c); collectives: size = count x 4 B (float32 sum)")  # fmt: skip
    print(f"{'operation':<21}{'size(B)':>10}{'C-ref(us)':>12}{'ours(us)':>11}"
          f"{'diff(us)':>10}{'ratio':>7}{'ref-best':>11}{'ours-best':>11}  verdict")  # fmt: skip
    misses, overheads = 0, defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_reference(Path(tmp))
        for op in args.ops:
            missed, overheads[op] = compare(op, exe, args, Path(tmp))
            misses += missed
    for op, pairs in overheads.items():
        if pairs:
            py, c = statistics.median(p for p, _ in pairs), statistics.median(c for _, c in pairs)
            print(f"# mpi4py per-call overhead at {args.minbytes} B, {op}: {py - c:.3f} us "
                  f"(--timer python {py:.3f} us - --timer c {c:.3f} us)")  # fmt: skip
    print(f"# {misses} sizes outside the target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
