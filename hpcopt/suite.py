"""``hpcopt suite``: the main job on a workstation, start to summary in one command."""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hpcopt.errors import UsageError
from hpcopt.launch import spawn_kernel_checked
from hpcopt.log import merge_logs, read_log
from hpcopt.meta import usable_cores
from hpcopt.output import locked_output, partial_path, stamped_path
from hpcopt.record import cell
from hpcopt.specs import format_size, plural

__all__ = ["default_ranks", "run_suite", "summary"]

MAX_SUITE_RANKS = 4
KERNEL_TIMEOUT_S = 300
# Compressed allreduce of the largest size: the uncompressed baseline (through the ring),
# fp16, and the two usual biased encoders with error feedback.
COMPRESSED = (("none", "fp16"), ("sign", "topk:ratio=0.01"))


def default_ranks() -> int:
    """Ranks for the allreduce sweep: one per core, between 2 and 4."""
    return max(2, min(MAX_SUITE_RANKS, usable_cores()))


SHORT_SWEEP = ["-f", "16", "--algo", "native,ring"]  # default -b: 8 B, or one element per rank
SUMMARY_KERNELS = ("allreduce", "allgather", "reduce_scatter")


def _plan(ranks: int, maxbytes: str) -> list[tuple[str, int, list[str]]]:
    plan = [
        ("allreduce", ranks, ["-b", "8", "-e", maxbytes, "--algo", "all"]),
        ("allgather", ranks, [*SHORT_SWEEP, "-e", maxbytes]),
        ("reduce_scatter", ranks, [*SHORT_SWEEP, "-e", maxbytes]),
        ("p2p", 2, ["-b", "8", "-e", maxbytes, "--pattern", "pingpong,stream,bibw"]),
    ]
    plan.append(("compress", 1, ["-b", "1M", "-e", "1M", "-n", "5", "-w", "1"]))
    one_size = ["--algo", "ring", "-b", maxbytes, "-e", maxbytes, "-n", "5", "-w", "1"]
    for ef, specs in zip((False, True), COMPRESSED, strict=True):
        flags = [f"--encoder={s}" for s in specs] + (["--ef"] if ef else [])
        plan.append(("allreduce", ranks, [*one_size, *flags]))
    return plan


def _run_one(name: str, ranks: int, args: list[str], log: Path) -> None:
    started = time.monotonic()
    print(f"# running {name} on {plural(ranks, 'rank')} ...", flush=True)
    spawn_kernel_checked(name, ranks, [*args, "-o", str(log), "-q"], timeout_s=KERNEL_TIMEOUT_S)
    print(f"#   done in {time.monotonic() - started:.1f} s", flush=True)


def run_suite(*, ranks: int, output: Path, tag: str, overwrite: bool, maxbytes: str) -> Path:
    """Run the default kernels, merge their logs into ``output`` and return its path.

    The output stays locked for the whole suite, so a second suite cannot replace it or
    its parts; when a kernel fails, what was measured goes to ``output.partial``.
    """
    with locked_output(output, overwrite):
        workdir = Path(tempfile.mkdtemp(prefix=f".{output.name}.parts-", dir=output.parent))
        logs: list[Path] = []
        try:
            for i, (name, n, args) in enumerate(_plan(ranks, maxbytes)):
                log = workdir / f"{i}-{name}.h5"
                tagged = [*args, "--tag", tag] if tag else args
                try:
                    _run_one(name, n, tagged, log)
                finally:
                    logs += [done for done in (log, partial_path(log)) if done.exists()]
            os.replace(merge_logs(logs, workdir / "suite.h5"), output)
            return output
        finally:
            if logs and not output.exists():
                os.replace(merge_logs(logs, workdir / "suite.partial.h5"), partial_path(output))
            shutil.rmtree(workdir, ignore_errors=True)


Rec = tuple[dict[str, Any], dict[str, np.ndarray]]


def _quartiles(rec: dict[str, Any], arrays: dict[str, np.ndarray]) -> tuple[float, float, float]:
    """(q1, median, q3) in seconds over iterations of the slowest rank's time."""
    times = arrays.get("times_s")
    if not isinstance(times, np.ndarray) or not times.size:
        t = float(rec["t_avg_s"])
        return t, t, t
    q1, q2, q3 = np.percentile(times.max(axis=0), [25, 50, 75])
    return float(q1), float(q2), float(q3)


def _latency(item: Rec) -> tuple[float, str]:
    """Median µs and its interquartile range as text."""
    q1, q2, q3 = (1e6 * t for t in _quartiles(*item))
    return q2, f"{q2:.2f} [{q1:.2f}-{q3:.2f}]"


def _bandwidth(item: Rec, field: str) -> tuple[float, str]:
    """GB/s at the median time (and at the quartiles), for ``field`` (algbw or busbw)."""
    rec = item[0]
    per_call = rec[field] * rec["t_avg_s"]  # the field's gigabytes per call
    q1, q2, q3 = (per_call / t for t in _quartiles(*item))
    return q2, f"{q2:.3f} [{q3:.3f}-{q1:.3f}]"


def _sweep_table(kernel: str, items: list[Rec]) -> list[str]:
    """Per algorithm: the smallest size's median latency, the largest size's median busbw."""
    recs = [r for r, _ in items]
    small, large = min(r["size_bytes"] for r in recs), max(r["size_bytes"] for r in recs)
    rows: list[tuple[str, tuple[float, str], tuple[float, str], int]] = []
    for algo in dict.fromkeys(r["algo"] for r in recs):
        mine = [i for i in items if i[0]["algo"] == algo]
        lo = next((i for i in mine if i[0]["size_bytes"] == small), None)
        hi = next((i for i in mine if i[0]["size_bytes"] == large), None)
        if lo is not None and hi is not None:
            wrong = sum(i[0]["wrong"] for i in mine)
            rows.append((algo, _latency(lo), _bandwidth(hi, "busbw_GBps"), wrong))
    if not rows:
        return []
    best_lo = min(rows, key=lambda r: r[1][0])[0]
    best_hi = max(rows, key=lambda r: r[2][0])[0]
    head = f"{kernel} ({plural(recs[0]['ranks'], 'rank')})"
    lines = [
        f"{head:<22}{format_size(small) + ' median us [IQR]':>30}"
        f"{format_size(large) + ' busbw GB/s [IQR]':>32}{'wrong':>7}"
    ]
    for algo, (_, lat), (_, bw), wrong in rows:
        lat += " *" if algo == best_lo else "  "
        bw += " *" if algo == best_hi else "  "
        lines.append(f"{algo:<22}{lat:>30}{bw:>32}{wrong:>7d}")
    lines.append(f"{'':<22}{'* best at this size':>30}")
    return lines


def summary(path: Path) -> str:
    """A short report: each algorithm's small-message latency and large-message busbw
    (medians over iterations with their interquartile range) for allreduce, allgather and
    reduce-scatter, the p2p link, the encoders."""
    log = read_log(path)
    items = list(zip(log.records(), (a for run in log.runs for a in run.arrays), strict=True))
    lines: list[str] = []
    for kernel in SUMMARY_KERNELS:  # the plain sweeps; compressed runs carry a method
        plain = [i for i in items if i[0]["kernel"] == kernel and "method" not in i[0]]
        lines += _sweep_table(kernel, plain)
    ping = [i for i in items if i[0]["kernel"] == "p2p" and i[0]["algo"] == "pingpong"]
    stream = [i for i in items if i[0]["kernel"] == "p2p" and i[0]["algo"] == "stream"]
    bibw = [i for i in items if i[0]["kernel"] == "p2p" and i[0]["algo"] == "bibw"]
    if ping and stream:
        lo, hi = ping[0], stream[-1]
        line = (
            f"p2p: latency {format_size(lo[0]['size_bytes'])} {_latency(lo)[1]} us; "
            f"bandwidth {format_size(hi[0]['size_bytes'])} {_bandwidth(hi, 'algbw_GBps')[1]} GB/s"
        )
        if bibw:
            line += f"; bidirectional {_bandwidth(bibw[-1], 'algbw_GBps')[1]} GB/s"
        lines.append(line)
    for rec, _ in (i for i in items if i[0]["kernel"] == "compress"):
        ratio = cell("compression_ratio", rec.get("compression_ratio"))
        speed = cell("encode_GBps", rec.get("encode_GBps"))
        lines.append(f"compress {rec['encoder']:<24} ratio {ratio:>7}  encode {speed:>7} GB/s")
    squeezed = [r for r, _ in items if r["kernel"] == "allreduce" and "method" in r]
    return "\n".join(lines + compression_verdicts(log, squeezed))


def _ring_at(log: Any, size: int) -> dict[str, Any] | None:
    """The last uncompressed ring record at ``size`` (the one run beside the encoders)."""
    rings = [r for r in log.records() if r["kernel"] == "allreduce" and r["algo"] == "ring"
             and r["encoder"] == "none" and r["size_bytes"] == size]  # fmt: skip
    return rings[-1] if rings else None


def compression_verdicts(log: Any, squeezed: list[dict[str, Any]]) -> list[str]:
    """One line per encoder: its time against the uncompressed ring on the link just
    measured, and the link bandwidth below which it would pay (see analysis/predict.py)."""
    from hpcopt.analysis.fits import fit_log
    from hpcopt.analysis.predict import link_break_even

    ring = _ring_at(log, squeezed[0]["size_bytes"]) if squeezed else None
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
    output = Path(args.output) if args.output else stamped_path("suite")
    ranks = default_ranks() if args.np is None else args.np
    if ranks < 2:
        raise UsageError(f"--np must be at least 2 (the allreduce sweep needs peers), got {ranks}")
    if max(ranks, 2) > usable_cores():
        print(f"# WARNING oversubscribed: {ranks} ranks on {usable_cores()} cores; ranks wait "
              "for a core, so timings show contention, not the link", flush=True)  # fmt: skip
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
