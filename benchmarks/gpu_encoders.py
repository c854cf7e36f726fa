"""Encoder throughput on the GPU as a fraction of the device's memory bandwidth.

The bandwidth is that of a device-to-device copy of the input (read + write), timed
with CUDA events in the same run; each encoder's fraction is copy time / encode time
(as benchmarks/encoders.py does on the CPU with numpy.copyto). Also: top-k 1 % against
a full sort of the magnitudes, and the fused decode-and-sum of 2 payloads.

    python benchmarks/gpu_encoders.py [-n ELEMENTS] [-r REPEAT]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from hpcopt.backend import cupy_or_none
from hpcopt.encoders import get_encoder
from hpcopt.encoders.base import decode_sum

SPECS = ["fp16", "sign", "qsgd", "terngrad", "natural", "topk:ratio=0.01", "dgc:ratio=0.01"]


def seconds(cp: Any, fn: Callable[[], Any], repeat: int) -> float:
    """Mean seconds of ``fn`` on the current stream (CUDA events), after one warm-up."""
    fn()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(repeat):
        fn()
    stop.record()
    stop.synchronize()
    return cp.cuda.get_elapsed_time(start, stop) / 1e3 / repeat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--elements", type=int, default=64 * 2**20)
    parser.add_argument("-r", "--repeat", type=int, default=10)
    args = parser.parse_args()
    cp = cupy_or_none()
    if cp is None:
        print("no usable GPU/CuPy: nothing measured")
        return 0
    x = cp.random.default_rng(0).standard_normal(args.elements, dtype=cp.float32)
    dst = cp.empty_like(x)
    copy = seconds(cp, lambda: cp.copyto(dst, x), args.repeat)
    name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
    print(f"{name!s}: {args.elements} float32; copy {2 * x.nbytes / copy / 1e9:.0f} GB/s "
          f"(read + write) in {copy * 1e3:.2f} ms")  # fmt: skip
    print(f"{'encoder':18}{'enc ms':>9}{'x copy':>8}{'of bw':>7}{'dec+sum(2) ms':>15}")
    for spec in SPECS:
        enc = get_encoder(spec)
        t = seconds(cp, lambda enc=enc: enc.encode(x, 1), args.repeat)
        payloads = [get_encoder(spec, rank=r).encode(x, 1) for r in range(2)]
        dec = seconds(cp, lambda e=enc, ps=payloads: decode_sum(e, ps, dst), args.repeat)
        print(f"{spec:18}{t * 1e3:9.2f}{t / copy:8.2f}{copy / t:7.0%}{dec * 1e3:15.2f}")
    sort = seconds(cp, lambda: cp.sort(cp.abs(x)), max(1, args.repeat // 2))
    topk = seconds(cp, lambda: get_encoder("topk:ratio=0.01").encode(x, 1), args.repeat)
    print(f"top-k 1 %: {topk * 1e3:.2f} ms; full sort of |x|: {sort * 1e3:.2f} ms "
          f"({sort / topk:.1f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
