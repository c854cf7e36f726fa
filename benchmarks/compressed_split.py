"""Compressed allreduce on 2 ranks at 16 MiB: time split into encode, communicate, decode.

One kernel run covers every encoder (summable ones through the ring, the others by
allgather, PowerSGD by its two allreduces), next to the uncompressed ring in the same run.

    python benchmarks/compressed_split.py [--size 16M] [--iters 10] [--ef]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from hpcopt.aggregation import plan
from hpcopt.encoders import available
from hpcopt.errors import UsageError
from hpcopt.launch import spawn_kernel_checked
from hpcopt.log import read_log

ROOT = Path(__file__).resolve().parents[1]
SLOW = {"qsgd-elias"}  # seconds per call at 16 MiB: run it at the end, fewer iterations


def ring_refuses(encoder: str, ef: bool) -> bool:
    """Whether the aggregation plan refuses ``encoder`` over the ring (bf16: MPI's own only)."""
    try:
        plan(encoder, ef=ef, algorithm="ring")
    except UsageError:
        return True
    return False


def run(
    size: str, iters: int, encoders: list[str], log: Path, ef: bool, algo: str = "ring"
) -> list[dict]:
    flags = [f"--encoder={e}" for e in encoders] + (["--ef"] if ef else [])
    sweep = ["-b", size, "-e", size, "-n", str(iters), "-w", "2", "--fixed-iters"]
    spawn_kernel_checked(
        "allreduce", 2, ["--algo", algo, *sweep, "-q", "-o", str(log), *flags], timeout_s=1200
    )
    return read_log(log).records()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="16M")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--ef", action="store_true", help="error feedback on biased encoders")
    args = parser.parse_args()
    native_only = {e for e in available() if ring_refuses(e, args.ef)}
    fast = [e for e in available() if e not in SLOW | native_only | {"none"}]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # "none" has no error to feed back: the plain ring and MPI's own run without --ef
        records = run(args.size, args.iters, ["none"], folder / "ring.h5", False)
        records += run(args.size, args.iters, fast, folder / "a.h5", args.ef)
        records += run(args.size, args.iters, ["none"], folder / "mpi.h5", False, "native")
        if native_only:
            records += run(
                args.size, args.iters, sorted(native_only), folder / "n.h5", args.ef, "native"
            )
        records += run(args.size, 2, sorted(SLOW), folder / "b.h5", args.ef)
    base = next(r for r in records if r["encoder"].startswith("none"))["t_avg_s"]
    print(f"# 2 ranks, {args.size} float32 per rank; ms per call; 'vs none' against the ring")
    print(
        f"{'encoder':<18}{'path':<11}{'total':>9}{'encode':>9}{'comm':>9}{'decode':>9}"
        f"{'wire(B)':>11}{'rel_err':>9}{'vs none':>9}"
    )
    for r in records:  # the plain "none" run has no phases: it encodes nothing
        phases = "".join(
            f"{r[k] * 1e3:>9.2f}" if k in r else f"{'-':>9}"
            for k in ("t_encode_s", "t_communicate_s", "t_decode_s")
        )
        print(
            f"{r['encoder']:<18}{r['algo']:<11}{r['t_avg_s'] * 1e3:>9.2f}{phases}"
            f"{r['wire_bytes']:>11d}{r.get('rel_error', 0.0):>9.2e}{r['t_avg_s'] / base:>9.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
