"""Allreduce on emulated two-level and uneven topologies (root; jobs/interconnect.sh).

two-level: 2 nodes × 2 ranks, 1 Gbit/s between nodes, 16 MiB per rank: MPI's own, ring and
the hierarchical collective, uncompressed; the hierarchical aggregation path (fp32 and fp16
node sums); top-1 % with error feedback flat (allgather) and at the node leaders. Inter-node
bytes per call are measured on the links (HPCOPT_LINK_BYTES): the difference between a run of
N and one of 2N timed calls, so setup and the correctness pass cancel.

uneven: 4 ranks on a switch, rank 3 on 100 Mbit/s and the others on 1 Gbit/s, against all
four on 1 Gbit/s, 4 MiB per rank: every algorithm and a few encoders in one kernel run per
topology; the slowdown of each is its time on the uneven star over its time on the uniform one.

Cases run one after another, repeated and interleaved; medians are reported. The machine's
load average is printed: on a shared machine the ratios are what to read.

    python benchmarks/topologies.py [--repeats 2] [--iters 4] [--out results/topologies]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from hpcopt.log import read_log

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "jobs" / "interconnect.sh"
TWO_LEVEL = "two-level:2x2:1gbit"
TWO_LEVEL_CASES = {
    "native": ["--algo", "native"],
    "ring": ["--algo", "ring"],
    "hierarchical (collective)": ["--algo", "hierarchical"],
    "hierarchical path, fp32": ["--algo", "ring", "--encoder", "none", "--method",
                                "hierarchical"],
    "hierarchical path, fp16 node sums": ["--algo", "ring", "--encoder", "none", "--method",
                                          "hierarchical:intra=fp16"],
    "top-1% + EF, flat": ["--encoder", "topk:ratio=0.01", "--ef"],
    "top-1% + EF at leaders": ["--encoder", "topk:ratio=0.01", "--ef", "--method",
                               "hierarchical"],
}  # fmt: skip
UNEVEN = "uneven:1gbit,1gbit,1gbit,100mbit"
UNIFORM = "uneven:1gbit,1gbit,1gbit,1gbit"
UNEVEN_RUNS = {
    "algorithms": ["--algo", "native,ring,tree,recursive-doubling,rabenseifner"],
    "encoders": ["--algo", "ring", "--encoder", "fp16", "--encoder", "randomk:ratio=0.01",
                 "--encoder", "topk:ratio=0.01", "--encoder", "sign", "--ef"],
}  # fmt: skip


def launch(link: str, args: list[str], log: Path, link_bytes: Path | None = None) -> None:
    """One kernel run over LINK; exits with the script's last error line when it fails."""
    env = dict(os.environ)
    if link_bytes is not None:
        link_bytes.unlink(missing_ok=True)
        env["HPCOPT_LINK_BYTES"] = str(link_bytes)
    cmd = ["bash", str(SCRIPT), link, "--", "allreduce", *args, "-q", "--overwrite", "-o",
           str(log)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"{link} {' '.join(args)}: {proc.stderr.strip().splitlines()[-1:]}")


def sent_between_nodes(link_bytes: Path) -> int:
    """Bytes all node links sent, from the script's counters."""
    return sum(int(line.split()[1]) for line in link_bytes.read_text().splitlines())


def two_level(args: argparse.Namespace, out: Path) -> None:
    """Times and inter-node bytes per call of every two-level case."""
    times: dict[str, list[float]] = {k: [] for k in TWO_LEVEL_CASES}
    inter: dict[str, list[float]] = {k: [] for k in TWO_LEVEL_CASES}
    counted: dict[str, int | None] = {}
    sizes = ["-b", "16M", "-e", "16M", "-w", "1", "--fixed-iters"]
    for _ in range(args.repeats):
        for label, flags in TWO_LEVEL_CASES.items():
            sent = []
            for n in (args.iters, 2 * args.iters):
                log, counts = out / "two-level.h5", out / "two-level.bytes"
                launch(TWO_LEVEL, [*flags, *sizes, "-n", str(n)], log, counts)
                (rec,) = read_log(log).records()
                times[label].append(rec["t_avg_s"])
                sent.append(sent_between_nodes(counts))
                counted[label] = rec.get("inter_bytes")
            inter[label].append((sent[1] - sent[0]) / args.iters)
    base = statistics.median(times["native"])
    print(f"# {TWO_LEVEL}, 16 MiB per rank; median of {2 * args.repeats} runs")
    print(f"{'case':<36}{'ms':>9}{'/native':>9}{'inter-node MB/call':>20}{'leader inter B':>16}")
    for label in TWO_LEVEL_CASES:
        t = statistics.median(times[label])
        mb = statistics.median(inter[label]) / 1e6
        mine = counted[label]
        print(f"{label:<36}{t * 1e3:>9.1f}{t / base:>9.2f}{mb:>20.2f}"
              f"{mine if mine is not None else '-':>16}")  # fmt: skip


def uneven(args: argparse.Namespace, out: Path) -> None:
    """Each case's time on the uneven star over its time on the uniform one."""
    times: dict[tuple[str, str], list[float]] = {}
    sizes = ["-b", "4M", "-e", "4M", "-w", "1", "-n", str(args.iters), "--fixed-iters"]
    for _ in range(args.repeats):
        for link in (UNIFORM, UNEVEN):
            for name, flags in UNEVEN_RUNS.items():
                log = out / f"{name}.h5"
                launch(link, [*flags, *sizes], log)
                for rec in read_log(log).records():
                    key = (f"{rec['algo']} {rec['encoder']}", link)
                    times.setdefault(key, []).append(rec["t_avg_s"])
    print(f"# {UNEVEN} against {UNIFORM}, 4 MiB per rank; median of {args.repeats} runs")
    print(f"{'case':<36}{'uniform ms':>12}{'uneven ms':>12}{'slowdown':>10}")
    for case in dict.fromkeys(k for k, _ in times):
        a = statistics.median(times[(case, UNIFORM)])
        b = statistics.median(times[(case, UNEVEN)])
        print(f"{case:<36}{a * 1e3:>12.1f}{b * 1e3:>12.1f}{b / a:>10.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--iters", type=int, default=4, help="timed calls (two-level: N and 2N)")
    parser.add_argument("--only", choices=("two-level", "uneven"), default=None)
    parser.add_argument("--out", default="results/topologies")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"# {os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.1f}")
    if args.only in (None, "two-level"):
        two_level(args, out)
    if args.only in (None, "uneven"):
        uneven(args, out)
    print(f"# load average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
