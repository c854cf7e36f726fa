"""Adaptive top-k against fixed top-k ratios on a shaped link: bits-to-ε and time-to-ε.

Sync SGD with error feedback on logistic regression (d = 100 000), once per fixed ratio and
once per adaptive rule (the same ratios as levels), over jobs/interconnect.sh LINK (root for
namespace links). Runs are interleaved and repeated; medians are reported with the ratio to
the best fixed ratio (the one with the least time to ε). The adaptive runs' choices are
shown as how many steps used each ratio.

    python benchmarks/adaptive.py [--link veth:100mbit] [--repeats 2] [--eps 2e-3]
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
RATIOS = ("0.1", "0.03", "0.01", "0.003")
LEVELS = "/".join(RATIOS)
RUNS = {
    **{f"top-k {r}": ["--encoder", f"topk:ratio={r}"] for r in RATIOS},
    "adaptive time": ["--encoder", f"adaptive:levels={LEVELS},rule=time"],
    "adaptive residual": ["--encoder", f"adaptive:levels={LEVELS},rule=residual"],
}


def train(link: str, flags: list[str], args: argparse.Namespace, log: Path) -> dict:
    """One training run over LINK; its record."""
    cmd = ["bash", str(SCRIPT), link, "--", "train", *flags, "--ef", "--problem", args.problem,
           "--eps", str(args.eps), "--eval-every", "5", "--max-iters", str(args.max_iters),
           "-q", "--overwrite", "-o", str(log)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        sys.exit(f"{link} {' '.join(flags)}: {proc.stderr.strip().splitlines()[-1:]}")
    (record,) = read_log(log).records()
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--link", default="veth:100mbit")
    parser.add_argument("--problem", default="logreg:d=100000,n=4096")
    parser.add_argument("--eps", type=float, default=2e-3)
    parser.add_argument("--max-iters", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="results/adaptive")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"# {args.link}, {args.problem}, eps {args.eps}; {os.cpu_count()} cores, load "
          f"average at start {os.getloadavg()[0]:.1f}")  # fmt: skip
    records: dict[str, list[dict]] = {label: [] for label in RUNS}
    for _ in range(args.repeats):
        for label, flags in RUNS.items():
            log = out / f"{label.replace(' ', '-')}.h5"
            records[label].append(train(args.link, flags, args, log))

    def median(label: str, key: str) -> float:
        values = [r[key] for r in records[label] if r.get(key) is not None]
        return statistics.median(values) if values else float("nan")

    fixed = [label for label in RUNS if label.startswith("top-k")]
    best = min(fixed, key=lambda label: median(label, "time_to_eps_s"))
    t_best, b_best = median(best, "time_to_eps_s"), median(best, "bits_to_eps")
    print(f"# medians of {args.repeats}; ratios against the best fixed ratio ({best})")
    print(f"{'run':<20}{'iters':>7}{'bits/rank':>11}{'×best':>7}{'time s':>8}{'×best':>7}"
          f"{'comm s':>8}{'compute s':>10}  choices (ratio:steps, last run)")  # fmt: skip
    for label in RUNS:
        bits, time_s = median(label, "bits_to_eps"), median(label, "time_to_eps_s")
        print(f"{label:<20}{median(label, 'iters_to_eps'):>7.0f}{bits:>11.3g}"
              f"{bits / b_best:>7.2f}{time_s:>8.2f}{time_s / t_best:>7.2f}"
              f"{median(label, 't_comm_s'):>8.2f}{median(label, 't_compute_s'):>10.2f}"
              f"  {records[label][-1].get('adapt_choices', '')}")  # fmt: skip
    print(f"# load average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
