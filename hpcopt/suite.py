"""``hpcopt suite``: the main job on a workstation, start to summary in one command."""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from hpcopt.errors import UsageError
from hpcopt.launch import spawn_kernel_checked
from hpcopt.log import check_output_path, merge_logs, partial_path, read_log
from hpcopt.specs import format_size

__all__ = ["default_ranks", "run_suite", "summary"]

MAX_SUITE_RANKS = 4
KERNEL_TIMEOUT_S = 300
# Compressed allreduce of the largest size: the uncompressed baseline (through the ring),
# fp16, and the two usual biased encoders with error feedback.
COMPRESSED = (("none", "fp16"), ("sign", "topk:ratio=0.01"))


def default_ranks() -> int:
    """Ranks for the allreduce sweep: one per core, between 2 and 4."""
    return max(2, min(MAX_SUITE_RANKS, os.cpu_count() or 2))


def _plan(ranks: int, maxbytes: str) -> list[tuple[str, int, list[str]]]:
    plan = [
        ("allreduce", ranks, ["-b", "8", "-e", maxbytes, "--algo", "all"]),
        ("p2p", 2, ["-b", "8", "-e", maxbytes]),
    ]
    plan.append(("compress", 1, ["-b", "1M", "-e", "1M", "-n", "5", "-w", "1"]))
    one_size = ["--algo", "ring", "-b", maxbytes, "-e", maxbytes, "-n", "5", "-w", "1"]
    for ef, specs in zip((False, True), COMPRESSED, strict=True):
        flags = [f"--encoder={s}" for s in specs] + (["--ef"] if ef else [])
        plan.append(("allreduce", ranks, [*one_size, *flags]))
    return plan


def _run_one(name: str, ranks: int, args: list[str], log: Path) -> None:
    started = time.monotonic()
    print(f"# running {name} on {ranks} ranks ...", flush=True)
    spawn_kernel_checked(name, ranks, [*args, "-o", str(log), "-q"], timeout_s=KERNEL_TIMEOUT_S)
    print(f"#   done in {time.monotonic() - started:.1f} s", flush=True)


def run_suite(*, ranks: int, output: Path, tag: str, overwrite: bool, maxbytes: str) -> Path:
    """Run the default kernels, merge their logs into ``output`` and return its path."""
    check_output_path(output, overwrite)
    workdir = output.parent / f".{output.stem}.parts"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    logs: list[Path] = []
    try:
        for i, (name, n, args) in enumerate(_plan(ranks, maxbytes)):
            log = workdir / f"{i}-{name}.h5"
            tagged = [*args, "--tag", tag] if tag else args
            try:
                _run_one(name, n, tagged, log)
            finally:
                for done in (log, partial_path(log)):
                    if done.exists():
                        logs.append(done)
        return merge_logs(logs, output, overwrite=overwrite)
    finally:
        if logs and not output.exists():
            merge_logs(logs, partial_path(output), overwrite=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _pick(records: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in records if all(r.get(k) == v for k, v in match.items())), None)


def summary(path: Path) -> str:
    """A short table: each algorithm's small-message latency and large-message busbw."""
    log = read_log(path)
    records = log.records()
    lines = []
    coll = [r for r in records if r["kernel"] == "allreduce" and "method" not in r]
    if coll:
        small, large = min(r["size_bytes"] for r in coll), max(r["size_bytes"] for r in coll)
        head = f"{'allreduce (' + str(coll[0]['ranks']) + ' ranks)':<22}"
        lines.append(
            f"{head}{format_size(small) + ' (us)':>14}{format_size(large) + ' busbw (GB/s)':>24}"
            f"{'wrong':>7}"
        )
        for algo in dict.fromkeys(r["algo"] for r in coll):
            lo, hi = (
                _pick(coll, algo=algo, size_bytes=small),
                _pick(coll, algo=algo, size_bytes=large),
            )
            wrong = sum(r["wrong"] for r in coll if r["algo"] == algo)
            if lo is None or hi is None:
                continue
            lines.append(
                f"{algo:<22}{lo['t_avg_s'] * 1e6:>14.2f}{hi['busbw_GBps']:>24.3f}{wrong:>7d}"
            )
    ping = [r for r in records if r["kernel"] == "p2p" and r["algo"] == "pingpong"]
    stream = [r for r in records if r["kernel"] == "p2p" and r["algo"] == "stream"]
    if ping and stream:
        lo, hi = ping[0], stream[-1]
        lines.append(
            f"p2p: latency {format_size(lo['size_bytes'])} {lo['t_avg_s'] * 1e6:.2f} us; "
            f"bandwidth {format_size(hi['size_bytes'])} {hi['algbw_GBps']:.3f} GB/s"
        )
    for rec in (r for r in records if r["kernel"] == "compress"):
        lines.append(
            f"compress {rec['encoder']:<24} ratio {rec.get('compression_ratio', 0):7.1f}  "
            f"encode {rec.get('encode_GBps', 0):6.2f} GB/s"
        )
    squeezed = [r for r in records if r["kernel"] == "allreduce" and "method" in r]
    return "\n".join(lines + compression_verdicts(log, squeezed))


def compression_verdicts(log: Any, squeezed: list[dict[str, Any]]) -> list[str]:
    """One line per encoder: its time against the uncompressed ring on the link just
    measured, and the link bandwidth below which it would pay (see analysis/predict.py)."""
    from hpcopt.analysis.fits import fit_log
    from hpcopt.analysis.predict import link_break_even

    ring = next((r for r in squeezed if r["encoder"] == "none"), None)
    links = sorted(fit_log(log).links, key=lambda f: not f.name.endswith("pingpong"))
    if ring is None or not links or not links[0].beta_s:
        return []
    alpha, beta = links[0].alpha_s, links[0].beta_s
    head = f"on this link (alpha {alpha * 1e6:.2f} us, beta {1 / (beta * 1e9):.2f} GB/s measured)"
    lines = [f"# compressed allreduce, {format_size(ring['size_bytes'])} per rank, "
             f"{ring['ranks']} ranks, against the ring"]  # fmt: skip
    for rec in squeezed:
        if rec is ring:
            continue
        times = rec["t_avg_s"] / ring["t_avg_s"]
        bound = link_break_even(rec["t_avg_s"], rec["wire_bytes"], ring["t_avg_s"],
                                ring["wire_bytes"], beta)  # fmt: skip
        where = f"below {bound:.3g} GB/s" + (" (any link)" if math.isinf(bound) else "")
        lines.append(f"{head} {rec['encoder']} is {times:.2f}x the uncompressed ring; "
                     f"it pays {where}")  # fmt: skip
    return lines


def suite_main(args: Any) -> int:
    """CLI entry of ``hpcopt suite``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    output = Path(args.output) if args.output else Path("results") / f"{stamp}.h5"
    ranks = args.np or default_ranks()
    if ranks < 1:
        raise UsageError("--np must be >= 1")
    started = time.monotonic()
    path = run_suite(
        ranks=ranks, output=output, tag=args.tag, overwrite=args.overwrite, maxbytes=args.maxbytes
    )
    print(summary(path))
    print(
        f"# log: {path} ({time.monotonic() - started:.1f} s); details: hpcopt report {path}",
        file=sys.stdout,
    )
    return 0
