"""The same kernels over shared memory, loopback TCP and shaped veth links (root).

For each link: p2p latency (8 B) and bandwidth (16 MiB), 2-rank allreduce at 16 MiB
(ring and native), and compressed allreduces with error feedback (top-k 1 % and sign, by
allgather) next to the uncompressed ring, so the table shows where compression pays.
Then it checks the model that the suite's "pays below" line rests on: each allreduce's time
on the first link, less its wire bytes times that link's β (1 / streaming bandwidth), is
its time off the wire T0; T0 + wire bytes × β of another link predicts the time there.

    python benchmarks/interconnects.py [--links shm,tcp,veth:10gbit,veth:1gbit] [--out DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from hpcopt.log import merge_logs, read_log

ROOT = Path(__file__).resolve().parents[1]
LINKS = "shm,tcp,veth:10gbit,veth:1gbit,veth:1gbit:2000"
RUNS = {
    "p2p": ["p2p", "-b", "8", "-e", "16M", "-f", "2097152", "-n", "20", "-w", "3"],
    "allreduce": ["allreduce", "--algo", "ring,native", "-b", "16M", "-e", "16M", "-n", "5",
                  "-w", "1"],
    "squeezed": ["allreduce", "--algo", "ring", "--encoder", "topk:ratio=0.01", "--encoder",
                 "sign", "--ef", "-b", "16M", "-e", "16M", "-n", "5", "-w", "1"],
}  # fmt: skip


def run(link: str, name: str, out: Path) -> Path:
    log = out / f"{link.replace(':', '-')}-{name}.h5"
    cmd = [
        "bash",
        str(ROOT / "jobs" / "interconnect.sh"),
        link,
        "--",
        *RUNS[name],
        "-q",
        "--overwrite",
        "-o",
        str(log),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{link} {name}: {proc.stderr.strip().splitlines()[-1:]}")
    return log


def timings(logs: dict[str, Path]) -> tuple[float, dict[str, tuple[float, int]]]:
    """β (s/B, from 16 MiB streaming) and (time, wire bytes) of ring, top-k + EF, sign + EF."""
    stream = next(r for r in read_log(logs["p2p"]).records()
                  if r["algo"] == "stream" and r["size_bytes"] == 16 << 20)  # fmt: skip
    ring = next(r for r in read_log(logs["allreduce"]).records() if r["algo"] == "ring")
    squeezed = {r["encoder"]: r for r in read_log(logs["squeezed"]).records()}
    pick = {"ring": ring, "topk+EF": squeezed["topk:ratio=0.01+ef"], "sign+EF": squeezed["sign+ef"]}
    return 1e-9 / stream["algbw_GBps"], {
        k: (r["t_avg_s"], r["wire_bytes"]) for k, r in pick.items()
    }


def predictions(measured: dict[str, tuple[float, dict[str, tuple[float, int]]]]) -> list[str]:
    """Times on every link predicted from the first link's T0 and each link's β."""
    links = list(measured)
    beta0, base = measured[links[0]]
    off_wire = {k: t - w * beta0 for k, (t, w) in base.items()}
    lines = [f"# predicted from {links[0]}: T0 + wire bytes x beta of the link; ms and error"]
    for link in links[1:]:
        beta, runs = measured[link]
        cells = []
        for k, (t, w) in runs.items():
            guess = off_wire[k] + w * beta
            cells.append(f"{k} {t * 1e3:.1f} / {guess * 1e3:.1f} ({(guess - t) / t:+.0%})")
        lines.append(f"{link:<22}" + "; ".join(cells))
    return lines


def row(link: str, logs: dict[str, Path]) -> str:
    p2p = read_log(logs["p2p"]).records()
    lat = next(r for r in p2p if r["algo"] == "pingpong" and r["size_bytes"] == 8)["t_avg_s"]
    bw = next(r for r in p2p if r["algo"] == "stream" and r["size_bytes"] == 16 << 20)
    ar = {r["algo"]: r["t_avg_s"] for r in read_log(logs["allreduce"]).records()}
    squeezed = {r["encoder"]: r["t_avg_s"] for r in read_log(logs["squeezed"]).records()}
    topk, sign = squeezed["topk:ratio=0.01+ef"], squeezed["sign+ef"]
    return (
        f"{link:<22}{lat * 1e6:>10.1f}{bw['algbw_GBps']:>10.3f}{ar['ring'] * 1e3:>10.1f}"
        f"{ar['native'] * 1e3:>10.1f}{topk * 1e3:>12.1f}{topk / ar['ring']:>8.2f}"
        f"{sign * 1e3:>12.1f}{sign / ar['ring']:>8.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", default=LINKS)
    parser.add_argument("--out", default="results/interconnects")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("# 2 ranks; p2p 8 B one-way latency, 16 MiB streaming; allreduce of 16 MiB per rank")
    print(
        f"{'link':<22}{'lat(us)':>10}{'bw(GB/s)':>10}{'ring(ms)':>10}{'native(ms)':>10}"
        f"{'topk+EF(ms)':>12}{'/ring':>8}{'sign+EF(ms)':>12}{'/ring':>8}"
    )
    every, measured = [], {}
    for link in args.links.split(","):
        logs = {name: run(link, name, out) for name in RUNS}
        every += logs.values()
        measured[link] = timings(logs)
        print(row(link, logs), flush=True)
    print("\n".join(predictions(measured)))
    merged = merge_logs(every, out / "all.h5", overwrite=True)
    print(f"# logs: {out}/ (merged: {merged}); compare with hpcopt compare")
    return 0


if __name__ == "__main__":
    sys.exit(main())
