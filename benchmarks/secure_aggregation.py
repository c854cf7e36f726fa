"""Secure aggregation's cost next to plain aggregation, side by side in one run per rank count.

Per rank count: the median time of a native in-place fp32 Allreduce, of the same sum in fixed
point (quantize, uint Allreduce, dequantize) and of the secure protocol, interleaved iteration
by iteration after a barrier; the bytes every rank hands to MPI per round; the time split on
the server (rank 0) and on a client (rank 1). Then the expansion model at the paper's sizes.
More ranks than cores (3–5 ranks on a 2-core machine) are oversubscribed: their times are
for the shape of the cost, not for claims.

    python benchmarks/secure_aggregation.py [--ranks 2,3,4,5] [--size 4M] [--iters 5]
        [--dropouts 0] [--prg aes-ctr]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from typing import Any

import numpy as np

from hpcopt.aggregation.secure_cost import (
    implementation_client_expansion,
    paper_expansion,
    sent_bytes,
)
from hpcopt.launch import find_mpiexec, launch_env, mpiexec_command
from hpcopt.specs import parse_size

DETAILS = ("keys", "share", "expand", "mask", "communicate", "recover", "unmask")


def worker(args: argparse.Namespace) -> None:
    """One rank count: timings and bytes, printed as JSON by rank 0."""
    from mpi4py import MPI

    from hpcopt.aggregation.secure import SecureConfig, dequantize, quantize, secure_aggregate
    from hpcopt.backend import Scratch

    comm = MPI.COMM_WORLD
    p, d = comm.size, args.size // 4
    config = SecureConfig(dropouts=args.dropouts, prg=args.prg)
    x = np.random.default_rng([3, comm.rank]).standard_normal(d).astype(np.float32)
    work = np.empty_like(x)
    scratch = Scratch()
    samples: dict[str, list[float]] = {"fp32": [], "quantized": [], "secure": []}
    details: list[dict[str, float]] = []
    sent: dict[str, int] = {}

    def fp32(step: int) -> None:
        comm.Allreduce(MPI.IN_PLACE, work, MPI.SUM)

    def quantized(step: int) -> None:
        ring = quantize(x, config, p, scratch)
        comm.Allreduce(MPI.IN_PLACE, ring, MPI.SUM)
        dequantize(ring, config)

    def secure(step: int) -> None:
        nonlocal sent
        result = secure_aggregate(comm, x, config, step=step, scratch=scratch)
        details.append(result.times)
        sent = result.sent

    for it in range(args.warmup + args.iters):
        for name, call in (("fp32", fp32), ("quantized", quantized), ("secure", secure)):
            work[:] = x
            comm.Barrier()
            t0 = MPI.Wtime()
            call(it)
            elapsed = MPI.Wtime() - t0
            if it >= args.warmup:
                samples[name].append(elapsed)
    timed = details[args.warmup :]
    split = {k: float(np.median([t[k] for t in timed])) for k in DETAILS}
    gathered = comm.gather({"split": split, "sent": sent}, root=0)
    if comm.rank == 0 and gathered:
        record = {
            "p": p,
            "d": d,
            "ring_bits": config.ring_bits,
            "threshold": config.threshold_for(p),
            "median_s": {k: float(np.median(v)) for k, v in samples.items()},
            "samples_s": samples,
            "ranks": gathered,
        }
        print(json.dumps(record))


def run(ranks: int, args: argparse.Namespace) -> dict[str, Any]:
    """Start the worker on ``ranks`` ranks; its JSON record."""
    flags = ["--worker", "--size", str(args.size), "--iters", str(args.iters)]
    flags += ["--warmup", str(args.warmup), "--dropouts", str(args.dropouts), "--prg", args.prg]
    cmd = mpiexec_command(ranks, __file__, flags, find_mpiexec())
    proc = subprocess.run(
        cmd, env=launch_env(900), capture_output=True, text=True, timeout=930, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"secure_aggregation: {ranks} ranks failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_costs(records: list[dict[str, Any]]) -> None:
    print("# time: median ms per call; bytes: handed to MPI sends per call")
    print("# star = plain aggregation through the same server: each client uploads its vector")
    print("#        once, the server sends the sum to each client")
    head = f"{'ranks':>5} {'fp32':>8} {'quant':>8} {'secure':>8} {'×fp32':>7} {'×quant':>7}"
    head += (
        f" {'client B':>10} {'×fp32':>6} {'×ring':>6} {'server B':>10} {'all B':>11} {'×star':>6}"
    )
    print(head)
    for r in records:
        p, d, ring = r["p"], r["d"], r["ring_bits"]
        t = {k: v * 1e3 for k, v in r["median_s"].items()}
        client = sum(r["ranks"][1]["sent"].values())
        server = sum(r["ranks"][0]["sent"].values())
        total = sum(sum(rank["sent"].values()) for rank in r["ranks"])
        star = 2 * (p - 1) * 4 * d
        print(
            f"{p:>5} {t['fp32']:>8.2f} {t['quantized']:>8.2f} {t['secure']:>8.2f}"
            f" {t['secure'] / t['fp32']:>7.1f} {t['secure'] / t['quantized']:>7.1f}"
            f" {client:>10d} {client / (4 * d):>6.3f} {client / (ring // 8 * d):>6.3f}"
            f" {server:>10d} {total:>11d} {total / star:>6.3f}"
        )


def print_split(records: list[dict[str, Any]]) -> None:
    print("# time split of the secure call, median ms: server (rank 0) / client (rank 1)")
    print(f"{'ranks':>5} " + " ".join(f"{k:>17}" for k in DETAILS))
    for r in records:
        server, client = r["ranks"][0]["split"], r["ranks"][1]["split"]
        cells = " ".join(f"{server[k] * 1e3:>8.2f}/{client[k] * 1e3:<8.2f}" for k in DETAILS)
        print(f"{r['p']:>5} {cells}")


def print_rounds(records: list[dict[str, Any]], dropouts: int) -> None:
    print("# bytes per round of the last call, server/client; without drop-outs, whether every")
    print("# rank's count equals the model secure_cost.sent_bytes")
    for r in records:
        p, d, ring, sent = r["p"], r["d"], r["ring_bits"], [rank["sent"] for rank in r["ranks"]]
        rounds = ", ".join(f"{k} {sent[0][k]}/{sent[1][k]}" for k in sent[0])
        if not dropouts:
            same = all(sent[k] == sent_bytes(p, d, ring, k) for k in range(p))
            rounds += f"  (model: {'equal' if same else 'DIFFERENT'})"
        print(f"{p} ranks: {rounds}")
    print("# extra rounds: secure has 8 one-way steps through the server (keys up/down, shares")
    print("# up/down, input up, survivors down, shares up, sum down) vs 2 for the plain star")


def print_model() -> None:
    print("# model: client expansion over d entries of b bits sent in the clear")
    print("# paper (Bonawitz et al. 2017): (2n·256 + (5n−4)·256 + d·(b + ⌈log2 n⌉)) / (d·b)")
    print("# this implementation: sent + received without the sum's download, in its 32-bit")
    print("# ring, and as if its ring were packed to the paper's b + ⌈log2 n⌉ bits")
    for n, d in ((2**10, 2**20), (2**14, 2**24)):
        packed = 16 + math.ceil(math.log2(n))
        ours = [implementation_client_expansion(n, d, 16, bits) for bits in (32, packed)]
        size = f"n=2^{n.bit_length() - 1} d=2^{d.bit_length() - 1} b=16"
        print(
            f"{size}: paper {paper_expansion(n, d, 16):.3f}  ours ring 32 {ours[0]:.3f}"
            f"  packed {packed} bits {ours[1]:.3f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="2,3,4,5")
    parser.add_argument("--size", default="4M", type=parse_size, help="bytes of float32 per rank")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--dropouts", type=int, default=0)
    parser.add_argument("--prg", default="aes-ctr", choices=("aes-ctr", "chacha20"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0
    records = [run(int(p), args) for p in args.ranks.split(",")]
    print(f"# {args.size // 4} float32 per rank, dropouts {args.dropouts}, prg {args.prg}")
    print(f"# {os.cpu_count()} cores: runs with more ranks than cores are oversubscribed")
    print_costs(records)
    print_split(records)
    print_rounds(records, args.dropouts)
    print_model()
    return 0


if __name__ == "__main__":
    sys.exit(main())
