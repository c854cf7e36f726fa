"""Encode/decode throughput of every encoder next to ``numpy.copyto`` of the same array."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from hpcopt.encoders import available, get_encoder

DEFAULT_SPECS = [*available(), "qsgd:levels=127", "topk:ratio=0.01,delta=1"]


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` calls after one warm-up call, in seconds."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    """Print one row per encoder: GB/s of float32 input, and the ratio to copyto."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--elements", type=int, default=16 * 2**20)
    parser.add_argument("-r", "--repeat", type=int, default=5)
    parser.add_argument("specs", nargs="*", default=DEFAULT_SPECS)
    args = parser.parse_args()
    x = np.random.default_rng(0).standard_normal(args.elements).astype(np.float32)
    dst = np.empty_like(x)
    copy = best_time(lambda: np.copyto(dst, x), args.repeat)
    gbs = x.nbytes / 1e9
    print(f"{args.elements} float32 ({x.nbytes / 2**20:.0f} MiB), best of {args.repeat}")
    print(f"copyto {gbs / copy:7.2f} GB/s ({copy * 1e3:.1f} ms)")
    head = ("encoder", "enc GB/s", "enc ms", "x copy", "dec GB/s", "bits/el")
    print("{:26} {:>9} {:>8} {:>7} {:>9} {:>8}".format(*head))
    for spec in args.specs:
        enc = get_encoder(spec)
        reps = 1 if spec.startswith("qsgd-elias") else args.repeat
        t_enc = best_time(lambda enc=enc: enc.encode(x, 1), reps)
        payload = enc.encode(x, 1)
        bits = 8 * payload.nbytes / x.size
        t_dec = best_time(lambda enc=enc, p=payload: enc.decode(p, out=dst), reps)
        print(
            f"{spec:26} {gbs / t_enc:9.2f} {t_enc * 1e3:8.1f} {t_enc / copy:7.1f} "
            f"{gbs / t_dec:9.2f} {bits:8.3f}"
        )


if __name__ == "__main__":
    main()
