"""Bits-to-ε of compressed and communication-avoiding optimizers on one problem and ε.

Runs ``kernels/train.py`` once per method (one at a time, 4 ranks by default), prints
bits per rank to reach f(x̄) − f* ≤ ε with ratios against fp32 and fp16 sync SGD and
against the lower bound d·(log2 d + log2 1/ε), and saves a loss-versus-bits plot.

    python benchmarks/bits_to_eps.py [--eps 2e-3] [--ranks 4] [--only sync+fp32,...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hpcopt import smoke
from hpcopt.launch import spawn_kernel
from hpcopt.log import read_log

# HPCOPT_SMOKE=1 (documentation tests) trains a small problem instead.
PROBLEM = "logreg:d=2000,n=512" if smoke.active() else "logreg:d=100000,n=4096"
METHODS = {
    "sync+fp32": ["--algo", "sync"],
    "sync+fp16": ["--algo", "sync", "--encoder", "fp16"],
    "sync+qsgd": ["--algo", "sync", "--encoder", "qsgd"],
    "sync+sign+EF": ["--algo", "sync", "--encoder", "sign", "--ef"],
    "sync+topk1%+EF": ["--algo", "sync", "--encoder", "topk:ratio=0.01", "--ef"],
    "sync+powersgd+EF": ["--algo", "sync", "--encoder", "powersgd:r=2", "--ef"],
    "local H=8": ["--algo", "local:steps=8"],
    "choco+topk1% ring": ["--algo", "choco:topology=ring,gamma=0.05", "--encoder",
                          "topk:ratio=0.01"],
}  # fmt: skip


def run(label: str, args: argparse.Namespace, out: Path) -> dict:
    """One training run; its record and arrays."""
    log = out / f"{label.replace(' ', '_').replace('%', 'pct')}.h5"
    flags = [*METHODS[label], "--problem", args.problem, "--eps", str(args.eps),
             "--max-iters", str(args.max_iters), "--eval-every", str(args.eval_every),
             "-o", str(log), "--overwrite", "-q", "--tag", "bits_to_eps"]  # fmt: skip
    proc = spawn_kernel("train", args.ranks, flags, timeout_s=600, capture=True)
    if proc.returncode != 0:
        sys.exit(f"{label}: train failed:\n{proc.stderr[-2000:]}")
    runlog = read_log(log).runs[0]
    return {**runlog.records[0], "arrays": runlog.arrays[0], "label": label}


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:7.1f}x" if a and b else "      -"


def table(results: list[dict]) -> None:
    """Bits to ε with ratios; fp32/fp16 baselines are the measured sync runs."""
    ref = {r["label"]: r.get("bits_to_eps") for r in results}
    fp32, fp16 = ref.get("sync+fp32"), ref.get("sync+fp16")
    print(f"{'method':<20} {'iters':>6} {'bits/rank to eps':>17} {'fp32/this':>9} "
          f"{'fp16/this':>9} {'this/LB':>8} {'time s':>7}")  # fmt: skip
    for r in results:
        bits = r.get("bits_to_eps")
        shown = f"{bits:17.4g}" if bits else f"{'not reached':>17}"
        iters = r.get("iters_to_eps", r["iters"])
        print(f"{r['label']:<20} {iters:>6} {shown} {_ratio(fp32, bits):>9} "
              f"{_ratio(fp16, bits):>9} {_ratio(bits, r['lower_bound_bits']):>8} "
              f"{r.get('time_to_eps_s', float('nan')):7.2f}")  # fmt: skip
    r = results[0]
    print(
        f"problem {r['problem']}, {r['ranks']} ranks, eps {r['eps']:g}, d {r['dim']}, "
        f"lower bound d(log2 d + log2 1/eps) = {r['lower_bound_bits']:.4g} bits"
    )


def plot(results: list[dict], path: Path) -> None:
    """Suboptimality against bits per rank, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        a = r["arrays"]
        ax.loglog(a["bits"][1:], a["subopt"][1:], label=r["label"])
    ax.axhline(results[0]["eps"], color="k", lw=0.8, ls=":", label="ε")
    ax.axvline(results[0]["lower_bound_bits"], color="grey", lw=0.8, ls="--", label="lower bound")
    ax.set_xlabel("bits sent per rank")
    ax.set_ylabel("f(x̄) − f*")
    ax.set_title(f"{results[0]['problem'].split(',')[0]}…, {results[0]['ranks']} ranks")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default=PROBLEM)
    parser.add_argument("--eps", type=float, default=2e-3)
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--max-iters", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--only", default="", help="comma list of method labels")
    parser.add_argument("--out", default="results/bits_to_eps", help="folder for the logs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = [s.strip() for s in args.only.split(",") if s.strip()] or list(METHODS)
    unknown = [s for s in labels if s not in METHODS]
    if unknown:
        sys.exit(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    results = []
    for label in labels:
        results.append(run(label, args, out))
        print(f"# {label}: done", file=sys.stderr, flush=True)
    table(results)
    plot(results, out.with_suffix(".png"))
    print(f"plot: {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
