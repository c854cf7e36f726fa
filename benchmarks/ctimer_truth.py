"""Does hpcopt's C timing core agree with an independent C program on the same MPI?

Builds benchmarks/c/mpi_reference.c with the compiler wrapper the core uses, then, per
operation, runs a whole size sweep of the reference and one of the core (driven from
Python through ``hpcopt.timer`` under mpiexec, 2 ranks) alternately, for several rounds
(the order flips every round), and prints per size the medians over rounds, their
difference and a verdict: within 0.2 us at <= 1 KiB, within 5 % at >= 64 KiB. Same
method on both sides: MPI_THREAD_MULTIPLE, separate send and receive buffers, a barrier
before each timed collective, patterns back to back, the mean over ranks of each rank's
mean. It also prints what mpi4py costs per call at 8 B: a plain mpi4py loop (timed per
iteration in Python, as the harness's Python loop does) minus the core, for allreduce
(in place) and ping-pong.

    python benchmarks/ctimer_truth.py [--rounds 5] [--iters 200] [--warmup 20]
        [--maxbytes 16777216] [--ops pingpong,stream,allreduce,...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from mpi4py import MPI

from hpcopt.backend import aligned_full
from hpcopt.launch import find_mpiexec, launch_env
from hpcopt.timer import TimedCall, status, time_call
from hpcopt.timer.build import find_compiler

OPS = (
    "pingpong",
    "stream",
    "allreduce",
    "allreduce-oop",
    "allgather",
    "reduce_scatter_block",
    "bcast",
    "alltoall",
)
PATTERNS = ("pingpong", "stream")
OVERHEAD_OPS = ("allreduce", "pingpong")
ROOT = Path(__file__).resolve().parents[1]
SCALE_ABOVE = 1 << 20
WINDOW_MAX, WINDOW_BYTES = 64, 64 << 20


def scaled(n: int, floor: int, call_bytes: int) -> int:
    """The harness's rule: above 1 MiB per call, fewer iterations in proportion."""
    if call_bytes <= SCALE_ABOVE:
        return n
    return max(min(n, floor), -(-n * SCALE_ABOVE // call_bytes))


def window_for(size: int) -> int:
    """Messages per stream window: 64, fewer when they would pass 64 MiB."""
    return max(1, min(WINDOW_MAX, WINDOW_BYTES // size)) if size else WINDOW_MAX


def sizes(lo: int, hi: int) -> list[int]:
    return [lo << i for i in range(64) if lo << i <= hi]


# ---------------------------------------------------------------- worker (under mpiexec)


def core_call(op: str, size: int, p: int) -> tuple[TimedCall, str, int]:
    """The TimedCall for one operation at one size, its barrier policy and call bytes."""

    def buf(n: int, dtype: type = np.float32) -> np.ndarray:
        return aligned_full(np, n, 0, dtype)

    if op in PATTERNS:
        window = window_for(size) if op == "stream" else 1
        n = size * window
        call = TimedCall(op, size, [buf(n, np.uint8)], [buf(n, np.uint8)], window=window)
        return call, "none", n
    count = size // 4
    blocks_in = p if op in ("reduce_scatter_block", "alltoall") else 1
    blocks_out = p if op in ("allgather", "alltoall") else 1
    send = [] if op in ("allreduce", "bcast") else [buf(count * blocks_in)]
    recv = [buf(count * blocks_out)]
    name = "allreduce" if op == "allreduce-oop" else op
    call = TimedCall(name, count, send, recv, datatype=MPI.FLOAT, in_place=op == "allreduce")
    return call, "iter", size


def mpi4py_loop(op: str, iters: int, warmup: int) -> float:
    """Seconds per call of a plain mpi4py loop at 8 B, timed per iteration in Python."""
    comm, wtime = MPI.COMM_WORLD, MPI.Wtime
    times = np.zeros(iters)
    if op == "allreduce":
        buf = np.zeros(2, np.float32)
        for _ in range(warmup):
            comm.Allreduce(MPI.IN_PLACE, buf)
        comm.Barrier()
        for i in range(iters):
            comm.Barrier()
            t0 = wtime()
            comm.Allreduce(MPI.IN_PLACE, buf)
            times[i] = wtime() - t0
        return float(times.mean())
    send, recv, peer = np.zeros(8, np.uint8), np.zeros(8, np.uint8), 1 - comm.rank

    def once() -> None:
        if comm.rank == 0:
            comm.Send(send, peer, 1)
            comm.Recv(recv, peer, 1)
        else:
            comm.Recv(recv, peer, 1)
            comm.Send(send, peer, 1)

    for _ in range(warmup):
        once()
    comm.Barrier()
    for i in range(iters):
        t0 = wtime()
        once()
        times[i] = wtime() - t0
    return float(times.mean()) / 2


def worker(args: argparse.Namespace) -> int:
    comm = MPI.COMM_WORLD
    if not status().available:
        print(f"C timer not available: {status().reason}", file=sys.stderr)
        return 1
    for size in sizes(args.minbytes, args.maxbytes):
        call, barrier, call_bytes = core_call(args.worker, size, comm.size)
        samples = np.zeros(scaled(args.iters, 10, call_bytes))
        time_call(comm, call, samples, warmup=scaled(args.warmup, 2, call_bytes), barrier=barrier)
        mean = comm.reduce(float(samples.mean()), root=0)
        if comm.rank == 0:
            print(f"{size} {mean / comm.size * 1e6:.4f}", flush=True)
    if args.worker in OVERHEAD_OPS:
        mean = comm.reduce(mpi4py_loop(args.worker, args.iters, args.warmup), root=0)
        if comm.rank == 0:
            print(f"mpi4py {mean / comm.size * 1e6:.4f}", flush=True)
    return 0


# ---------------------------------------------------------------- driver


def build_reference(workdir: Path) -> Path:
    exe = workdir / "mpi_reference"
    src = ROOT / "benchmarks" / "c" / "mpi_reference.c"
    subprocess.run([find_compiler(), "-O2", "-o", str(exe), str(src)], check=True)
    return exe


def run_lines(cmd: list[str]) -> dict[str, float]:
    full = [find_mpiexec(), "-n", "2", *cmd]
    out = subprocess.run(full, capture_output=True, text=True, env=launch_env(900), check=False)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(full)}: {out.stderr.strip()[-500:]}")
    rows = (ln.split() for ln in out.stdout.splitlines() if ln and not ln.startswith("#"))
    return {key: float(value) for key, value in rows}


def verdict(size: int, ref: float, core: float) -> str:
    if size <= 1024:
        return "ok" if abs(core - ref) <= 0.2 else "MISS (> 0.2 us)"
    if size >= 64 * 1024:
        return "ok" if abs(core - ref) <= 0.05 * ref else "MISS (> 5 %)"
    return "-"


def drive(args: argparse.Namespace) -> int:
    if not status().available:
        print(f"C timer not available: {status().reason}", file=sys.stderr)
        return 1
    sweep = [str(args.minbytes), str(args.maxbytes), str(args.iters), str(args.warmup)]
    misses = 0
    overhead: dict[str, list[tuple[float, float]]] = defaultdict(list)
    print(f"# 2 ranks, medians of {args.rounds} rounds alternating reference and core; "
          "collectives: size = count x 4 B (float32 sum), patterns: message bytes")  # fmt: skip
    print(f"{'operation':<21}{'size(B)':>10}{'C-ref(us)':>12}{'core(us)':>11}"
          f"{'diff(us)':>10}{'ratio':>7}  verdict")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_reference(Path(tmp))
        for op in args.ops:
            ref_runs, core_runs = [], []
            core_cmd = [sys.executable, __file__, "--worker", op, *_sweep_flags(args)]
            for r in range(args.rounds):
                order = [(ref_runs, [str(exe), op, *sweep]), (core_runs, core_cmd)]
                for runs, cmd in order if r % 2 == 0 else order[::-1]:
                    runs.append(run_lines(cmd))
            for run in core_runs:
                if "mpi4py" in run:
                    overhead[op].append((run["mpi4py"], run[str(args.minbytes)]))
            for size in sizes(args.minbytes, args.maxbytes):
                ref = statistics.median(run[str(size)] for run in ref_runs)
                core = statistics.median(run[str(size)] for run in core_runs)
                word = verdict(size, ref, core)
                misses += word.startswith("MISS")
                print(f"{op:<21}{size:>10}{ref:>12.3f}{core:>11.3f}{core - ref:>10.3f}"
                      f"{core / ref:>7.3f}  {word}", flush=True)  # fmt: skip
    for op, pairs in overhead.items():
        py = statistics.median(p for p, _ in pairs)
        c = statistics.median(c for _, c in pairs)
        print(f"# mpi4py per-call overhead at {args.minbytes} B, {op}: {py - c:.3f} us "
              f"(mpi4py loop {py:.3f} us - core {c:.3f} us)")  # fmt: skip
    print(f"# {misses} sizes outside the target")
    return 0


def _sweep_flags(args: argparse.Namespace) -> list[str]:
    return [
        *("--minbytes", str(args.minbytes), "--maxbytes", str(args.maxbytes)),
        *("--iters", str(args.iters), "--warmup", str(args.warmup)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--minbytes", type=int, default=8)
    parser.add_argument("--maxbytes", type=int, default=16 << 20)
    parser.add_argument("--ops", type=lambda s: s.split(","), default=list(OPS))
    parser.add_argument("--worker", choices=OPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = set(args.ops) - set(OPS)
    if unknown or args.rounds < 1 or args.iters < 1 or args.warmup < 0 or args.minbytes < 4:
        parser.error(f"bad arguments (operations from {', '.join(OPS)}; minbytes >= 4)")
    return worker(args) if args.worker else drive(args)


if __name__ == "__main__":
    sys.exit(main())
