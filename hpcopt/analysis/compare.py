"""Line up the same measurement across logs, with ratios and a verdict beyond the noise.

The verdict rests on the per-iteration samples (each iteration's slowest rank), not on
means: the median time of each file, and a bootstrap interval of the ratio of medians
to the fastest file's. A file is clearly slower only when the whole interval lies
beyond ``min_effect`` (10 % by default): within-run samples cannot show the drift
between two runs of the same setup, so smaller differences are not claimed. Files
without samples (imported results state only means) count as their mean alone; with no
samples on either side there is no verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zlib import crc32

import numpy as np

from hpcopt.analysis.fits import records_with_arrays
from hpcopt.analysis.text import text_table
from hpcopt.log import Log
from hpcopt.record import cell, variant

__all__ = [
    "CONFIDENCE",
    "KEY_FIELDS",
    "MIN_EFFECT",
    "compare_logs",
    "compare_table",
    "compare_train",
    "file_label",
    "labels_of",
    "plot_compare",
    "ratio_interval",
    "train_table",
    "verdict",
]

KEY_FIELDS = ("kernel", "algo", "encoder", "dtype", "size_bytes", "variant")
NO_DIFFERENCE = "no clear difference"
NO_SAMPLES = "no verdict: no per-iteration samples in"
MIN_EFFECT = 0.10
CONFIDENCE = 0.95
RESAMPLES = 1000


def file_label(log: Log, taken: Sequence[str] = ()) -> str:
    """The log's first tag, else its file stem; made unique against ``taken``."""
    tag = next((str(r.meta.get("tag")) for r in log.runs if r.meta.get("tag")), "")
    stem = log.path.name.removesuffix(".partial").removesuffix(".h5")
    label = tag or stem
    if label in taken:
        label = f"{label} ({stem})" if tag else f"{label} ({log.path})"
    return label


def ratio_interval(slow: np.ndarray, fast: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """The CONFIDENCE bootstrap interval of median(slow) / median(fast)."""
    rng = np.random.default_rng(seed)
    tail = (1 - CONFIDENCE) / 2

    def medians(x: np.ndarray) -> np.ndarray:
        return np.median(x[rng.integers(0, x.size, (RESAMPLES, x.size))], axis=1)

    ratios = medians(slow) / medians(fast)
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return float(low), float(high)


def verdict(samples: dict[str, np.ndarray], min_effect: float = MIN_EFFECT, seed: int = 0) -> str:
    """Name the clearly faster file(s) among ``samples`` (label → per-iteration seconds)."""
    if len(samples) < 2:
        return NO_DIFFERENCE
    fastest = min(samples, key=lambda k: float(np.median(samples[k])))
    slower = {}
    for label, times in samples.items():
        if label != fastest:
            low, high = ratio_interval(times, samples[fastest], seed)
            if low > 1 + min_effect:
                slower[label] = (low, high)
    if not slower:
        return NO_DIFFERENCE
    leaders = [k for k in samples if k not in slower]
    low = min(lo for lo, _ in slower.values())
    return f"{' = '.join(leaders)} faster (others at least x{low:.2f}, {CONFIDENCE:.0%} interval)"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _timed(log: Log) -> dict[tuple, tuple[dict[str, Any], np.ndarray | None]]:
    """Records with a mean time, and each iteration's slowest rank when they have samples."""
    out: dict[tuple, tuple[dict[str, Any], np.ndarray | None]] = {}
    for rec, arrays in records_with_arrays(log):
        if _number(rec.get("t_avg_s")) is None:
            continue
        times = arrays.get("times_s")
        per_iter = times.max(axis=0) if isinstance(times, np.ndarray) and times.size else None
        key = tuple(variant(rec) if k == "variant" else rec.get(k) for k in KEY_FIELDS)
        out.setdefault(key, (rec, per_iter))
    return out


def _verdict(present: list[tuple[str, dict[str, Any], np.ndarray | None]], key: tuple,
             min_effect: float) -> str:  # fmt: skip
    """:func:`verdict`; a file without samples counts as its mean alone (no spread), and
    with no samples at all there is no verdict."""
    if all(times is None for _, _, times in present):
        return f"{NO_SAMPLES} {', '.join(label for label, _, _ in present)}"
    samples = {
        label: times if times is not None else np.array([rec["t_avg_s"]])
        for label, rec, times in present
    }
    return verdict(samples, min_effect, crc32(repr(key).encode()))


def compare_logs(logs: Sequence[Log], min_effect: float = MIN_EFFECT) -> list[dict[str, Any]]:
    """One record per key measured in at least two files, in the first file's order."""
    labels = labels_of(logs)
    tables = [_timed(log) for log in logs]
    keys = list(dict.fromkeys(k for table in tables for k in table))
    rows = []
    for key in keys:
        present = [(lab, t[key]) for lab, t in zip(labels, tables, strict=True) if key in t]
        if len(present) < 2:
            continue
        first = tables[0].get(key)
        base = first[0]["t_avg_s"] if first else None
        files = []
        for label, (rec, times) in present:
            median = float(np.median(times)) if times is not None else None
            files.append({
                "tag": label, "ranks": rec.get("ranks"), "t_avg_s": rec["t_avg_s"],
                "t_median_s": median, "ratio": rec["t_avg_s"] / base if base else None,
            })  # fmt: skip
        row: dict[str, Any] = dict(zip(KEY_FIELDS, key, strict=True))
        row["files"] = files
        row["verdict"] = _verdict([(lab, r, t) for lab, (r, t) in present], key, min_effect)
        rows.append(row)
    return rows


def compare_table(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    """Rows as a text table: avg µs per file, ratio to the first file, verdict."""
    head = ["kernel", "algo", "encoder", "size(B)"]
    for i, label in enumerate(labels):
        head += [f"{label} avg(us)"] + ([f"{label}/{labels[0]}"] if i else [])
    head.append("verdict")
    body = []
    for row in rows:
        by = {f["tag"]: f for f in row["files"]}
        algo = f"{row['algo']} ({row['variant']})" if row["variant"] else str(row["algo"])
        cells = [str(row["kernel"]), algo, str(row["encoder"]), str(row["size_bytes"])]
        for i, label in enumerate(labels):
            f = by.get(label)
            cells.append(f"{f['t_avg_s'] * 1e6:.2f}" if f else "-")
            if i:
                cells.append(f"{f['ratio']:.3f}" if f and f["ratio"] is not None else "-")
        cells.append(row["verdict"])
        body.append(cells)
    return text_table(head, body) if body else "(no measurement appears in two files)"


TRAIN_KEY = ("algo", "encoder", "problem", "eps")


def compare_train(logs: Sequence[Log]) -> list[dict[str, Any]]:
    """Training runs with the same (algo, encoder, problem, eps) across logs: bits and time
    to eps side by side (bits are counted exactly; one time per run has no spread)."""
    labels = labels_of(logs)
    tables = [
        {tuple(r.get(k) for k in TRAIN_KEY): r for r in log.records() if r["kernel"] == "train"}
        for log in logs
    ]
    rows = []
    for key in dict.fromkeys(k for table in tables for k in table):
        present = [(lab, t[key]) for lab, t in zip(labels, tables, strict=True) if key in t]
        if len(present) >= 2:
            files = [{"tag": lab, **{f: rec.get(f) for f in TRAIN_FIELDS}} for lab, rec in present]
            rows.append(
                {"kernel": "train", **dict(zip(TRAIN_KEY, key, strict=True)), "files": files}
            )
    return rows


TRAIN_FIELDS = ("ranks", "reached", "iters_to_eps", "bits_to_eps", "time_to_eps_s")


def train_table(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    """Training rows: bits and seconds to eps per file ('-' where eps was not reached)."""
    head = ["algo", "encoder", "problem", "eps"]
    for label in labels:
        head += [f"{label} bits", f"{label} time(s)"]
    body = []
    for row in rows:
        by = {f["tag"]: f for f in row["files"]}
        cells = [
            str(row["algo"]),
            str(row["encoder"]),
            str(row["problem"]),
            cell("eps", row["eps"]),
        ]
        for label in labels:
            f = by.get(label, {})
            cells += [
                cell("bits_to_eps", f.get("bits_to_eps")),
                cell("time_to_eps_s", f.get("time_to_eps_s")),
            ]
        body.append(cells)
    return text_table(head, body)


def labels_of(logs: Sequence[Log]) -> list[str]:
    """Each log's label, unique across ``logs``."""
    labels: list[str] = []
    for log in logs:
        labels.append(file_label(log, labels))
    return labels


def plot_compare(
    rows: Sequence[dict[str, Any]], labels: Sequence[str], out_dir: Path
) -> list[Path]:
    """Per kernel: t_avg vs size, one line per (file, algorithm); returns PNG and SVG paths."""
    from hpcopt.analysis.plots import STYLES, new_figure, save, size_axis

    paths: list[Path] = []
    for kernel in dict.fromkeys(r["kernel"] for r in rows):
        mine = [r for r in rows if r["kernel"] == kernel]
        fig, (ax,) = new_figure()
        algos = list(dict.fromkeys((r["algo"], r["encoder"], r["variant"]) for r in mine))
        for a, (algo, encoder, kind) in enumerate(algos):
            name = algo if encoder in ("none", None) else f"{algo}/{encoder}"
            name = f"{name} ({kind})" if kind else name
            for i, label in enumerate(labels):
                pts = sorted(
                    (r["size_bytes"], f["t_avg_s"] * 1e6)
                    for r in mine
                    if (r["algo"], r["encoder"], r["variant"]) == (algo, encoder, kind)
                    for f in r["files"]
                    if f["tag"] == label
                )
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    style = STYLES[i % len(STYLES)]
                    ax.plot(
                        xs,
                        ys,
                        style,
                        color=f"C{a % 10}",
                        marker="o",
                        ms=3,
                        label=f"{name} · {label}",
                    )
        ax.set_yscale("log")
        size_axis(ax, [r["size_bytes"] for r in mine])
        ax.set_ylabel("time (µs, mean over ranks)")
        ax.grid(True, alpha=0.3)
        if len(ax.lines) > 8:  # many series: legend to the right of the axes
            fig.set_size_inches(10.5, 4.8)
            fig.subplots_adjust(right=0.7)
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.legend(fontsize="small")
        ax.set_title(f"{kernel}: {' vs '.join(labels)}")
        paths += save(fig, out_dir, f"compare_{kernel}")
    return paths
