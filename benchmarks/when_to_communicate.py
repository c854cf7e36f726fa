"""When to communicate: LAG against GD, asynchronous against synchronous SGD with a
straggler, passive-target progress, and bucketed overlap of the MLP's allreduce.

Each part runs ``kernels/train.py`` once per setting, one run at a time, and prints a table
of ratios measured side by side in that one invocation (logs in results/when_to_communicate/).

    python benchmarks/when_to_communicate.py lag        # rounds, uploads, bits to eps vs GD
    python benchmarks/when_to_communicate.py async      # time to eps, straggler 1x, 2x, 5x
    python benchmarks/when_to_communicate.py progress   # async: none, thread, MPICH async
    python benchmarks/when_to_communicate.py overlap [--link veth:1gbit]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpcopt.launch import launch_env, spawn_kernel
from hpcopt.log import read_log

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("results") / "when_to_communicate"
LAG_PROBLEM = "logreg:d=500,n=2048,lam=1e-3"
ASYNC_PROBLEM = "logreg:d=1000,n=12000,nnz=1000,lam=1e-3"  # dense rows: ~20 ms per gradient
MLP = "mlp:d=256,hidden=512,layers=4,classes=10,n=4096"
# On the default MLP (tensors of 1 MiB): one bucket per tensor (10), 4, 2, and 1 bucket.
BUCKETS = ("0", "4", "1M", "2M", "25M")


def train(label: str, ranks: int, flags: list[str], env: dict[str, str] | None = None,
          link: str = "") -> dict[str, Any]:  # fmt: skip
    """One run of the train kernel; its record (exit 3, diverged, is a result too)."""
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / f"{label}.h5"
    flags = [*flags, "-o", str(log), "--overwrite", "-q", "--tag", link or "shm"]
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        if link:
            cmd = [str(ROOT / "jobs" / "interconnect.sh"), link, "--", "train", *flags]
            proc = subprocess.run(cmd, env=launch_env(900), capture_output=True, text=True,
                                  timeout=930, check=False)  # fmt: skip
        else:
            proc = spawn_kernel("train", ranks, flags, timeout_s=900, capture=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if proc.returncode not in (0, 3):
        sys.exit(f"{label}: train failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return read_log(log).records()[0]


def ratio(a: float | None, b: float | None) -> str:
    """a/b as ``12.3x``, or ``-``."""
    return f"{a / b:.2f}x" if a and b and math.isfinite(a / b) else "-"


def lag(args: argparse.Namespace) -> None:
    """Rounds, uploads and bits per rank to eps as the heterogeneity grows (4 ranks)."""
    methods = {"sync": "sync", "gd-root": "lag:xi=0", "lag": "lag", "lag-ps": "lag-ps"}
    print(f"{'hetero':>6} {'method':<8} {'rounds':>7} {'uploads':>8} {'bits/rank':>10} "
          f"{'sync/this':>9} {'gd-root/this':>12}")  # fmt: skip
    for hetero in args.hetero.split(","):
        rows = {}
        for name, algo in methods.items():
            flags = ["--problem", f"{args.problem},hetero={hetero}", "--algo", algo, "--eps",
                     str(args.eps), "--max-iters", "5000", "--eval-every", "5"]  # fmt: skip
            rows[name] = train(f"lag-h{hetero}-{name}", args.ranks, flags)
        for name, r in rows.items():
            uploads = r.get("uploads", r["iters"] * r["ranks"])
            bits = r.get("bits_to_eps")
            print(f"{hetero:>6} {name:<8} {r.get('iters_to_eps', '-'):>7} {uploads:>8} "
                  f"{bits or math.nan:10.4g} {ratio(rows['sync'].get('bits_to_eps'), bits):>9} "
                  f"{ratio(rows['gd-root'].get('bits_to_eps'), bits):>12}")  # fmt: skip
    print(
        f"problem {args.problem},hetero=H; eps {args.eps:g}; {args.ranks} ranks; "
        "uploads: gradients sent to the root over all ranks (sync: every rank every round)"
    )


def asynchronous(args: argparse.Namespace) -> None:
    """Time to eps: sync at W ranks against async at W + 1 (one server with a progress
    thread, the faster way measured by the progress part), one slow worker."""
    w = args.workers
    print(f"{'straggler':>9} {'sync s':>8} {'async s':>8} {'sync/async':>10} "
          f"{'async updates':>13} {'staleness mean/max':>18}")  # fmt: skip
    for factor in args.slowdown.split(","):
        common = ["--problem", args.problem, "--eps", str(args.eps), "--max-iters", "20000",
                  "--straggler", f"{w - 1}:{factor}"]  # fmt: skip
        s = train(f"async-sync-x{factor}", w, [*common, "--algo", "sync", "--eval-every", "5"])
        common[-1] = f"{w}:{factor}"
        a = train(f"async-x{factor}", w + 1, [*common, "--algo", "async:progress=thread",
                                               "--eval-every", str(10 * w)])  # fmt: skip
        print(f"{factor + 'x':>9} {s.get('time_to_eps_s', math.nan):8.2f} "
              f"{a.get('time_to_eps_s', math.nan):8.2f} "
              f"{ratio(s.get('time_to_eps_s'), a.get('time_to_eps_s')):>10} "
              f"{a['applied_updates']:>13} "
              f"{a['staleness_mean']:>12.2f}/{a['staleness_max']:<5}")  # fmt: skip
        for r in (s, a):
            if not r["reached_eps"]:
                print(f"  {r['algo']} x{factor}: {r['outcome_note']}")
    print(
        f"problem {args.problem}; eps {args.eps:g}; {w} workers; the straggler is the last "
        "worker, computing FACTOR times as long (it sleeps)"
    )


def progress(args: argparse.Namespace) -> None:
    """Async SGD with passive-target progress left to MPI calls, a thread, or MPICH."""
    w = args.workers
    modes = {"none": ("async", {}), "thread": ("async:progress=thread", {}),
             "mpich-async": ("async", {"MPICH_ASYNC_PROGRESS": "1"})}  # fmt: skip
    print(f"{'progress':<12} {'time to eps s':>13} {'worker comm s':>13} {'updates':>8} "
          f"{'comm per update ms':>18}")  # fmt: skip
    for name, (algo, env) in modes.items():
        flags = ["--problem", args.problem, "--algo", algo, "--eps", str(args.eps),
                 "--max-iters", "20000", "--eval-every", str(10 * w)]  # fmt: skip
        r = train(f"progress-{name}", w + 1, flags, env)
        per = 1e3 * r["t_comm_s"] * w / max(1, r["applied_updates"] + r["dropped_updates"])
        print(f"{r['progress']:<12} {r.get('time_to_eps_s', math.nan):13.2f} "
              f"{r['t_comm_s']:13.3f} {r['applied_updates']:>8} {per:18.3f}")  # fmt: skip
    print(
        f"problem {args.problem}; eps {args.eps:g}; {w} workers + 1 server; worker comm: "
        "max over ranks of the time in Get/Accumulate epochs"
    )


def overlap(args: argparse.Namespace) -> None:
    """Time per step and exposed communication per bucket size, against no bucketing (the
    least of ``--repeat`` runs of each, which are made in turns)."""
    tag = args.link.replace(":", "-") if args.link else "shm"
    best: dict[str, dict[str, Any]] = {}
    for rep in range(args.repeat):
        for bucket in BUCKETS:
            flags = ["--problem", args.mlp, "--batch", str(args.batch), "--eps", "1e-12",
                     "--max-iters", str(args.steps), "--eval-every", str(args.steps),
                     "--bucket", bucket]  # fmt: skip
            r = train(f"overlap-{tag}-{bucket}-{rep}", 2, flags, link=args.link)
            steps = r["iters"]
            r["comm_ms"] = 1e3 * (r["t_comm_s"] + r["t_encode_s"] + r["t_decode_s"]) / steps
            r["step_ms"] = 1e3 * r["time_s"] / steps
            if bucket not in best or r["comm_ms"] < best[bucket]["comm_ms"]:
                best[bucket] = r
    base = best["0"]
    print(f"{'bucket':>6} {'buckets':>7} {'step ms':>8} {'exposed comm ms':>15} "
          f"{'exposed / unbucketed comm':>25} {'step gain':>9}")  # fmt: skip
    for bucket, r in best.items():
        print(f"{bucket:>6} {r.get('buckets', 1):>7} {r['step_ms']:8.2f} {r['comm_ms']:15.2f} "
              f"{r['comm_ms'] / base['comm_ms']:25.2f} "
              f"{ratio(base['step_ms'], r['step_ms']):>9}")  # fmt: skip
    print(
        f"problem {args.mlp}; batch {args.batch}; {args.steps} steps; 2 ranks over "
        f"{args.link or 'shared memory'}; least of {args.repeat} runs; exposed comm: time "
        "the step spent in MPI calls (and encode/decode), not hidden behind the backward pass"
    )


PARTS: dict[str, Callable[[argparse.Namespace], None]] = {
    "lag": lag, "async": asynchronous, "progress": progress, "overlap": overlap,
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--problem", default=None, help="problem spec (part's default)")
    parser.add_argument("--eps", type=float, default=None)
    parser.add_argument("--ranks", type=int, default=4, help="lag: ranks")
    parser.add_argument("--hetero", default="0,0.5,1", help="lag: heterogeneity levels")
    parser.add_argument("--workers", type=int, default=3, help="async, progress: workers")
    parser.add_argument("--slowdown", default="1,2,5", help="async: straggler factors")
    parser.add_argument("--mlp", default=MLP, help="overlap: the MLP spec")
    parser.add_argument("--batch", type=int, default=64, help="overlap: minibatch per rank")
    parser.add_argument("--steps", type=int, default=20, help="overlap: steps per bucket size")
    parser.add_argument("--repeat", type=int, default=2, help="overlap: runs per bucket size")
    parser.add_argument("--link", default="", help="overlap: jobs/interconnect.sh link")
    args = parser.parse_args()
    defaults = {"lag": (LAG_PROBLEM, 1e-5), "async": (ASYNC_PROBLEM, 1e-3),
                "progress": (ASYNC_PROBLEM, 1e-3), "overlap": (MLP, 0.0)}  # fmt: skip
    problem, eps = defaults[args.part]
    args.problem = args.problem or problem
    args.eps = args.eps if args.eps is not None else eps
    PARTS[args.part](args)


if __name__ == "__main__":
    main()
